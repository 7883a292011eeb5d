-- Every audit event carries a MAC keyed with a key derived from a root signing key, which the
-- database does not hold (see src/server/audit_seal.rs): a row the database alone could have
-- written is reported as forged. Events written before this migration carry none; the seq they
-- end at is recorded once, here, and the chain and signed checkpoints cover them as before.
ALTER TABLE audit_events ADD COLUMN mac BYTEA;
ALTER TABLE audit_events ADD COLUMN mac_kid BIGINT;

CREATE TABLE audit_mac_start (
    seq BIGINT NOT NULL
);
INSERT INTO audit_mac_start (seq) SELECT COALESCE(MAX(seq), 0) FROM audit_events;
CREATE TRIGGER audit_mac_start_append_only BEFORE INSERT OR UPDATE OR DELETE ON audit_mac_start
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
