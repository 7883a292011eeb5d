-- SQLite twin of migrations/postgres/0001_foundation.sql: timestamps are RFC 3339 TEXT, UUIDs
-- 16-byte BLOBs, JSON columns TEXT checked by json_valid, booleans 0/1.
-- The tables every capability of mandate stands on. Ids are BLOBv7 (time-ordered) unless a row
-- is named by an administrator (agents, tools, issuers, policies use readable slugs).

-- Root signing keys, recorded the first time mandate publishes them. A kid is never re-bound to
-- another public key.
CREATE TABLE root_keys (
    kid         INTEGER PRIMARY KEY CHECK (kid BETWEEN 0 AND 4294967295),
    algorithm   TEXT NOT NULL CHECK (algorithm = 'ed25519'),
    public_key  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- Admin API tokens (`mnd_adm_…`), stored as SHA-256 hashes only.
CREATE TABLE admin_tokens (
    id            BLOB PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'auditor')),
    token_hash    BLOB NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);

-- One row whose generation every change to agents, tools, issuers or policies advances, in the
-- change's transaction and only if it still holds the generation read before the change was
-- checked. A change checked against a stale inventory (a policy naming an agent being retired
-- meanwhile) therefore fails instead of landing.
CREATE TABLE inventory_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL
);
INSERT INTO inventory_state (id, generation) VALUES (1, 0);

-- Registered agents: non-human identities with an accountable owner. `version` increases with
-- every change (optimistic concurrency for updates).
CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    display_name     TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('orchestrator', 'sub_agent')),
    owner            TEXT NOT NULL CHECK (owner <> ''),
    team             TEXT,
    description      TEXT,
    ceiling          TEXT NOT NULL DEFAULT '[]' CHECK (ceiling IS NULL OR json_valid(ceiling)),
    max_ttl_seconds  INTEGER NOT NULL CHECK (max_ttl_seconds > 0),
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'retired')),
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- Agent secrets (`mnd_agt_…`), stored as SHA-256 hashes only.
CREATE TABLE agent_secrets (
    id           BLOB PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id),
    secret_hash  BLOB NOT NULL UNIQUE,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
-- At most one active secret per agent.
CREATE UNIQUE INDEX agent_secrets_one_active ON agent_secrets (agent_id) WHERE revoked_at IS NULL;

-- Agents' Ed25519 public keys, used to attest delegation hops.
CREATE TABLE agent_keys (
    id          BLOB PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    algorithm   TEXT NOT NULL CHECK (algorithm = 'ed25519'),
    public_key  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    removed_at  TEXT
);
CREATE INDEX agent_keys_agent ON agent_keys (agent_id);
-- A key attests for one agent at a time; once removed it may be registered again.
CREATE UNIQUE INDEX agent_keys_live ON agent_keys (public_key) WHERE removed_at IS NULL;

-- Downstream APIs, MCP servers and tools, with the operations they offer.
CREATE TABLE tools (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('api', 'mcp_server', 'tool')),
    owner         TEXT NOT NULL CHECK (owner <> ''),
    description   TEXT,
    operations    TEXT NOT NULL DEFAULT '[]' CHECK (operations IS NULL OR json_valid(operations)),
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'retired')),
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Trusted OIDC identity providers.
CREATE TABLE issuers (
    id                  TEXT PRIMARY KEY,
    issuer_url          TEXT NOT NULL UNIQUE,
    audiences           TEXT NOT NULL DEFAULT '[]' CHECK (audiences IS NULL OR json_valid(audiences)),
    jwks_uri            TEXT,
    discovery           INTEGER NOT NULL DEFAULT 0 CHECK (discovery IN (0, 1)),
    allowed_algorithms  TEXT NOT NULL DEFAULT '[]' CHECK (allowed_algorithms IS NULL OR json_valid(allowed_algorithms)),
    subject_claim       TEXT NOT NULL DEFAULT 'sub',
    groups_claim        TEXT,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    version             INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

-- Delegation policies: which principals may delegate which tool operations to which agents.
CREATE TABLE policies (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    description      TEXT,
    issuer_id        TEXT NOT NULL REFERENCES issuers (id),
    subjects         TEXT NOT NULL DEFAULT '[]' CHECK (subjects IS NULL OR json_valid(subjects)),
    groups           TEXT NOT NULL DEFAULT '[]' CHECK (groups IS NULL OR json_valid(groups)),
    agents           TEXT CHECK (agents IS NULL OR json_valid(agents)),                -- NULL: any agent
    grants           TEXT NOT NULL DEFAULT '[]' CHECK (grants IS NULL OR json_valid(grants)),
    max_ttl_seconds  INTEGER NOT NULL CHECK (max_ttl_seconds > 0),
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

CREATE INDEX policies_issuer ON policies (issuer_id);

-- Every mandate issued, written before its token is returned.
CREATE TABLE mandates (
    id                 BLOB PRIMARY KEY,
    agent_id           TEXT NOT NULL REFERENCES agents (id),
    principal_subject  TEXT NOT NULL,
    principal_issuer   TEXT NOT NULL,
    task_id            TEXT NOT NULL,
    task_description   TEXT NOT NULL,
    task_digest        BLOB NOT NULL,
    scope              TEXT NOT NULL CHECK (scope IS NULL OR json_valid(scope)),
    root_kid           INTEGER NOT NULL REFERENCES root_keys (kid),
    revocation_id      BLOB NOT NULL UNIQUE,
    issued_at          TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    request_meta       TEXT NOT NULL DEFAULT '{}' CHECK (request_meta IS NULL OR json_valid(request_meta))
);
CREATE INDEX mandates_agent ON mandates (agent_id, expires_at);
CREATE INDEX mandates_principal ON mandates (principal_issuer, principal_subject, issued_at);
CREATE INDEX mandates_task ON mandates (task_id);
CREATE INDEX mandates_expiry ON mandates (expires_at);

-- Revoked revocation ids (a mandate's authority block or a derived token's last block).
CREATE TABLE revocations (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             BLOB NOT NULL UNIQUE,
    revocation_id  BLOB NOT NULL UNIQUE,
    mandate_id     BLOB REFERENCES mandates (id),
    reason         TEXT NOT NULL,
    revoked_by     TEXT NOT NULL,
    revoked_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);
CREATE INDEX revocations_expiry ON revocations (expires_at);

-- The audit trail: every issuance, denial, revocation, admin change and receipt.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL UNIQUE,
    occurred_at  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    details      TEXT NOT NULL DEFAULT '{}' CHECK (details IS NULL OR json_valid(details))
);
CREATE INDEX audit_events_time ON audit_events (occurred_at);
