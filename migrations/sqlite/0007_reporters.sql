-- SQLite twin of migrations/postgres/0007_reporters.sql.
CREATE TABLE reporters (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('verifier', 'gateway')),
    owner         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    secret_hash   BLOB NOT NULL UNIQUE,
    version       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
ALTER TABLE receipts ADD COLUMN reporter_id TEXT REFERENCES reporters (id);
