-- What the application role may do, run by the owner after every `mandate migrate`:
--
--   psql -v app=mandate_app -d mandate -f deploy/postgres/grants.sql
--
-- Everything on the inventory and mandate tables; on the audit trail (events, checkpoints, the
-- start of MACs) only SELECT and INSERT, so the role the service runs as cannot change or delete
-- what it recorded even with the append-only triggers out of the way; and nothing on the
-- migration history, which only the owner writes.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, audit_mac_start FROM :"app";
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
