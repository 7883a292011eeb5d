-- Revoking a principal's mandates also refuses new mints whose subject token was issued at or
-- before the revocation: the same still-valid JWT cannot mint again. One row per principal,
-- the latest cut-off; read with the inventory mints decide on.
CREATE TABLE principal_cutoffs (
    issuer_url  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issuer_url, subject)
);
