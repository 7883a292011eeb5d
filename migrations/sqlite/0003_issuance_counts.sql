-- Mandates issued to each agent, by the minute in which they expire (minutes since the epoch,
-- rounded down). The sum over an agent's buckets from the current minute on is an upper bound of
-- its live mandates (it also counts revoked ones), read in one short index range: the cap on
-- live mandates counts rows one by one only when that bound exceeds it. Buckets of past minutes
-- are pruned periodically.
CREATE TABLE agent_issuance_counts (
    agent_id        TEXT NOT NULL REFERENCES agents (id),
    expires_minute  INTEGER NOT NULL,
    issued          INTEGER NOT NULL CHECK (issued > 0),
    PRIMARY KEY (agent_id, expires_minute)
);

INSERT INTO agent_issuance_counts (agent_id, expires_minute, issued)
SELECT agent_id, CAST(unixepoch(expires_at) / 60 AS INTEGER), count(*)
FROM mandates WHERE unixepoch(expires_at) > unixepoch('now')
GROUP BY 1, 2;
