-- Reporters: the verifiers and gateways that report calls made with mandates. Only a
-- registered reporter may post receipts, with its credential (stored as a SHA-256 hash), and
-- each receipt records which one reported it.
CREATE TABLE reporters (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('verifier', 'gateway')),
    owner         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    secret_hash   BYTEA NOT NULL UNIQUE,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
ALTER TABLE receipts ADD COLUMN reporter_id TEXT REFERENCES reporters (id);
