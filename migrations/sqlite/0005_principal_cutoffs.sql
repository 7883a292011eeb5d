-- SQLite twin of migrations/postgres/0005_principal_cutoffs.sql.
CREATE TABLE principal_cutoffs (
    issuer_url  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    PRIMARY KEY (issuer_url, subject)
);
