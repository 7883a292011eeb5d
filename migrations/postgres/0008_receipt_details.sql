-- What a reporter adds about a call: the SHA-256 of its canonical arguments, why it was
-- denied, what became of its output (redacted, blocked), how long it took.
ALTER TABLE receipts ADD COLUMN details JSONB NOT NULL DEFAULT '{}';
