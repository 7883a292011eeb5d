-- An issuer may bind its subject tokens to the orchestrator presenting them (the claim naming
-- the OAuth client, `azp` or `client_id`, must be the orchestrator's id), and make each token
-- mint once (by `jti`, remembered until the token expires).
ALTER TABLE issuers ADD COLUMN client_claim TEXT;
ALTER TABLE issuers ADD COLUMN single_use_tokens BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE subject_token_uses (
    issuer_url  TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issuer_url, jti)
);
CREATE INDEX subject_token_uses_expiry ON subject_token_uses (expires_at);
