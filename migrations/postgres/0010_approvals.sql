-- Human approvals. A mint asking for an operation a policy gates behind approval records an
-- approval request holding the mint (never the principal's token); approvers' decisions are
-- rows of their own, one per approver; the mandate issued on an approved request names it, and
-- an approval for one call records the call that used it.
CREATE TABLE approval_requests (
    id                 UUID PRIMARY KEY,
    agent_id           TEXT NOT NULL REFERENCES agents (id),
    principal_subject  TEXT NOT NULL,
    principal_issuer   TEXT NOT NULL,
    binding_message    TEXT NOT NULL,
    gated              JSONB NOT NULL,
    held               JSONB NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'issued')),
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    decided_at         TIMESTAMPTZ,
    mandate_id         UUID UNIQUE REFERENCES mandates (id)
);
CREATE INDEX approval_requests_pending ON approval_requests (state, expires_at);

CREATE TABLE approval_decisions (
    approval_id       UUID NOT NULL REFERENCES approval_requests (id),
    approver_subject  TEXT NOT NULL,
    approver_issuer   TEXT NOT NULL,
    verdict           TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    reason            TEXT NOT NULL,
    counts_for        JSONB NOT NULL,
    decided_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (approval_id, approver_issuer, approver_subject)
);

CREATE TABLE approval_uses (
    approval_id       UUID NOT NULL REFERENCES approval_requests (id),
    tool              TEXT NOT NULL,
    operation         TEXT NOT NULL,
    mandate_id        UUID NOT NULL REFERENCES mandates (id),
    reporter_id       TEXT NOT NULL REFERENCES reporters (id),
    arguments_sha256  TEXT NOT NULL,
    used_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (approval_id, tool, operation)
);
