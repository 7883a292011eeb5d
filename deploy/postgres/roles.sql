-- Two roles for mandate on Postgres: an owner that holds the schema and applies migrations,
-- and the application role the service runs as, which may only append to and read the audit
-- trail. Run as a superuser, in the mandate database, with psql:
--
--   psql -v owner=mandate_owner -v app=mandate_app -d mandate -f deploy/postgres/roles.sql
--
-- Give both roles passwords (ALTER ROLE ... PASSWORD) or certificates as your site does. Then
-- apply the migrations as the owner (`MANDATE_DATABASE_URL=postgres://mandate_owner@…/mandate
-- mandate migrate`), run `grants.sql` as the owner, and run the service as the app role.
CREATE ROLE :"owner" LOGIN;
CREATE ROLE :"app" LOGIN;
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO :"app";
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
