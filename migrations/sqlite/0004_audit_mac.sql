-- SQLite twin of migrations/postgres/0004_audit_mac.sql.
ALTER TABLE audit_events ADD COLUMN mac BLOB;
ALTER TABLE audit_events ADD COLUMN mac_kid INTEGER;

CREATE TABLE audit_mac_start (
    seq INTEGER NOT NULL
);
INSERT INTO audit_mac_start (seq) SELECT COALESCE(MAX(seq), 0) FROM audit_events;
CREATE TRIGGER audit_mac_start_no_insert BEFORE INSERT ON audit_mac_start
BEGIN
    SELECT RAISE(ABORT, 'the start of audit MACs is recorded once');
END;
CREATE TRIGGER audit_mac_start_no_update BEFORE UPDATE ON audit_mac_start
BEGIN
    SELECT RAISE(ABORT, 'the start of audit MACs is recorded once');
END;
CREATE TRIGGER audit_mac_start_no_delete BEFORE DELETE ON audit_mac_start
BEGIN
    SELECT RAISE(ABORT, 'the start of audit MACs is recorded once');
END;
