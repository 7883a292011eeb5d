-- SQLite twin of migrations/postgres/0010_approvals.sql.
CREATE TABLE approval_requests (
    id                 BLOB PRIMARY KEY,
    agent_id           TEXT NOT NULL REFERENCES agents (id),
    principal_subject  TEXT NOT NULL,
    principal_issuer   TEXT NOT NULL,
    binding_message    TEXT NOT NULL,
    gated              TEXT NOT NULL CHECK (json_valid(gated)),
    held               TEXT NOT NULL CHECK (json_valid(held)),
    state              TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'issued')),
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    decided_at         TEXT,
    mandate_id         BLOB UNIQUE REFERENCES mandates (id)
);
CREATE INDEX approval_requests_pending ON approval_requests (state, expires_at);

CREATE TABLE approval_decisions (
    approval_id       BLOB NOT NULL REFERENCES approval_requests (id),
    approver_subject  TEXT NOT NULL,
    approver_issuer   TEXT NOT NULL,
    verdict           TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    reason            TEXT NOT NULL,
    counts_for        TEXT NOT NULL CHECK (json_valid(counts_for)),
    decided_at        TEXT NOT NULL,
    PRIMARY KEY (approval_id, approver_issuer, approver_subject)
);

CREATE TABLE approval_uses (
    approval_id       BLOB NOT NULL REFERENCES approval_requests (id),
    tool              TEXT NOT NULL,
    operation         TEXT NOT NULL,
    mandate_id        BLOB NOT NULL REFERENCES mandates (id),
    reporter_id       TEXT NOT NULL REFERENCES reporters (id),
    arguments_sha256  TEXT NOT NULL,
    used_at           TEXT NOT NULL,
    PRIMARY KEY (approval_id, tool, operation)
);
