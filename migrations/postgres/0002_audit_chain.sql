-- The audit trail is a hash chain: each event's hash covers the previous event's hash and its
-- own fields (see src/server/audit.rs), so changing, deleting, inserting or reordering any row
-- breaks the chain from there on. Signed checkpoints pin the chain's head.
ALTER TABLE audit_events ADD COLUMN prev_hash BYTEA NOT NULL DEFAULT '\x';
ALTER TABLE audit_events ADD COLUMN hash BYTEA NOT NULL DEFAULT '\x';

-- The database itself refuses to change or delete audit rows.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The chain's head at a point in time, signed by the active root key.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       BYTEA NOT NULL,
    kid        BIGINT NOT NULL,
    signature  BYTEA NOT NULL,
    signed_at  TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- What verifiers report was done with a mandate.
CREATE TABLE receipts (
    id                UUID PRIMARY KEY,
    mandate_id        UUID NOT NULL REFERENCES mandates (id),
    revocation_id     BYTEA NOT NULL,
    hops              JSONB NOT NULL DEFAULT '[]',
    tool              TEXT NOT NULL,
    operation         TEXT NOT NULL,
    resource          TEXT,
    outcome           TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    occurred_at       TIMESTAMPTZ NOT NULL,
    recorded_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX receipts_mandate ON receipts (mandate_id);
CREATE INDEX receipts_time ON receipts (occurred_at);
