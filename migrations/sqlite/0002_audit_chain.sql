-- SQLite twin of migrations/postgres/0002_audit_chain.sql.
ALTER TABLE audit_events ADD COLUMN prev_hash BLOB NOT NULL DEFAULT x'';
ALTER TABLE audit_events ADD COLUMN hash BLOB NOT NULL DEFAULT x'';

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    kid        INTEGER NOT NULL,
    signature  BLOB NOT NULL,
    signed_at  TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TABLE receipts (
    id                BLOB PRIMARY KEY,
    mandate_id        BLOB NOT NULL REFERENCES mandates (id),
    revocation_id     BLOB NOT NULL,
    hops              TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(hops)),
    tool              TEXT NOT NULL,
    operation         TEXT NOT NULL,
    resource          TEXT,
    outcome           TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    occurred_at       TEXT NOT NULL,
    recorded_at       TEXT NOT NULL
);
CREATE INDEX receipts_mandate ON receipts (mandate_id);
CREATE INDEX receipts_time ON receipts (occurred_at);
