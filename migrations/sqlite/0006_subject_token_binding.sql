-- SQLite twin of migrations/postgres/0006_subject_token_binding.sql.
ALTER TABLE issuers ADD COLUMN client_claim TEXT;
ALTER TABLE issuers ADD COLUMN single_use_tokens INTEGER NOT NULL DEFAULT 0;

CREATE TABLE subject_token_uses (
    issuer_url  TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (issuer_url, jti)
);
CREATE INDEX subject_token_uses_expiry ON subject_token_uses (expires_at);
