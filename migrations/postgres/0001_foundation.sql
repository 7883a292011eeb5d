-- The tables every capability of mandate stands on. Slug keys use the "C" collation so lists
-- page in byte order, as on SQLite, whatever the server's locale. Ids are UUIDv7 (time-ordered) unless a row
-- is named by an administrator (agents, tools, issuers, policies use readable slugs).

-- Root signing keys, recorded the first time mandate publishes them. A kid is never re-bound to
-- another public key.
CREATE TABLE root_keys (
    kid         BIGINT PRIMARY KEY CHECK (kid BETWEEN 0 AND 4294967295),
    algorithm   TEXT NOT NULL CHECK (algorithm = 'ed25519'),
    public_key  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Admin API tokens (`mnd_adm_…`), stored as SHA-256 hashes only.
CREATE TABLE admin_tokens (
    id            UUID PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'auditor')),
    token_hash    BYTEA NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

-- One row whose generation every change to agents, tools, issuers or policies advances, in the
-- change's transaction and only if it still holds the generation read before the change was
-- checked. A change checked against a stale inventory (a policy naming an agent being retired
-- meanwhile) therefore fails instead of landing.
CREATE TABLE inventory_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO inventory_state (id, generation) VALUES (1, 0);

-- Registered agents: non-human identities with an accountable owner. `version` increases with
-- every change (optimistic concurrency for updates).
CREATE TABLE agents (
    id               TEXT COLLATE "C" PRIMARY KEY,
    display_name     TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('orchestrator', 'sub_agent')),
    owner            TEXT NOT NULL CHECK (owner <> ''),
    team             TEXT,
    description      TEXT,
    ceiling          JSONB NOT NULL DEFAULT '[]',
    max_ttl_seconds  INTEGER NOT NULL CHECK (max_ttl_seconds > 0),
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'retired')),
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- Agent secrets (`mnd_agt_…`), stored as SHA-256 hashes only.
CREATE TABLE agent_secrets (
    id           UUID PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id),
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
-- At most one active secret per agent.
CREATE UNIQUE INDEX agent_secrets_one_active ON agent_secrets (agent_id) WHERE revoked_at IS NULL;

-- Agents' Ed25519 public keys, used to attest delegation hops.
CREATE TABLE agent_keys (
    id          UUID PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    algorithm   TEXT NOT NULL CHECK (algorithm = 'ed25519'),
    public_key  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    removed_at  TIMESTAMPTZ
);
CREATE INDEX agent_keys_agent ON agent_keys (agent_id);
-- A key attests for one agent at a time; once removed it may be registered again.
CREATE UNIQUE INDEX agent_keys_live ON agent_keys (public_key) WHERE removed_at IS NULL;

-- Downstream APIs, MCP servers and tools, with the operations they offer.
CREATE TABLE tools (
    id            TEXT COLLATE "C" PRIMARY KEY,
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('api', 'mcp_server', 'tool')),
    owner         TEXT NOT NULL CHECK (owner <> ''),
    description   TEXT,
    operations    JSONB NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'retired')),
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Trusted OIDC identity providers.
CREATE TABLE issuers (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    issuer_url          TEXT NOT NULL UNIQUE,
    audiences           JSONB NOT NULL DEFAULT '[]',
    jwks_uri            TEXT,
    discovery           BOOLEAN NOT NULL DEFAULT FALSE,
    allowed_algorithms  JSONB NOT NULL DEFAULT '[]',
    subject_claim       TEXT NOT NULL DEFAULT 'sub',
    groups_claim        TEXT,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    version             BIGINT NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

-- Delegation policies: which principals may delegate which tool operations to which agents.
CREATE TABLE policies (
    id               TEXT COLLATE "C" PRIMARY KEY,
    name             TEXT NOT NULL,
    description      TEXT,
    issuer_id        TEXT NOT NULL REFERENCES issuers (id),
    subjects         JSONB NOT NULL DEFAULT '[]',
    groups           JSONB NOT NULL DEFAULT '[]',
    agents           JSONB,                -- NULL: any agent
    grants           JSONB NOT NULL DEFAULT '[]',
    max_ttl_seconds  INTEGER NOT NULL CHECK (max_ttl_seconds > 0),
    enabled          BOOLEAN NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX policies_issuer ON policies (issuer_id);

-- Every mandate issued, written before its token is returned.
CREATE TABLE mandates (
    id                 UUID PRIMARY KEY,
    agent_id           TEXT NOT NULL REFERENCES agents (id),
    principal_subject  TEXT NOT NULL,
    principal_issuer   TEXT NOT NULL,
    task_id            TEXT NOT NULL,
    task_description   TEXT NOT NULL,
    task_digest        BYTEA NOT NULL,
    scope              JSONB NOT NULL,
    root_kid           BIGINT NOT NULL REFERENCES root_keys (kid),
    revocation_id      BYTEA NOT NULL UNIQUE,
    issued_at          TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    request_meta       JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX mandates_agent ON mandates (agent_id, expires_at);
CREATE INDEX mandates_principal ON mandates (principal_issuer, principal_subject, issued_at);
CREATE INDEX mandates_task ON mandates (task_id);
CREATE INDEX mandates_expiry ON mandates (expires_at);

-- Revoked revocation ids (a mandate's authority block or a derived token's last block).
CREATE TABLE revocations (
    seq            BIGSERIAL PRIMARY KEY,
    id             UUID NOT NULL UNIQUE,
    revocation_id  BYTEA NOT NULL UNIQUE,
    mandate_id     UUID REFERENCES mandates (id),
    reason         TEXT NOT NULL,
    revoked_by     TEXT NOT NULL,
    revoked_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX revocations_expiry ON revocations (expires_at);

-- The audit trail: every issuance, denial, revocation, admin change and receipt.
CREATE TABLE audit_events (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    occurred_at  TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    details      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time ON audit_events (occurred_at);
