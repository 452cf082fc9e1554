-- Session agents: temporary agents started from an existing one's config
-- (`salon agent spawn`); the janitor ends them after their TTL or idle limit.
CREATE TABLE session_agents (
    agent_id      TEXT PRIMARY KEY,
    template      TEXT NOT NULL,          -- the agent whose config it copies
    label         TEXT,
    created_at    INTEGER NOT NULL,       -- ms
    expires_at    INTEGER NOT NULL,       -- ms: ends then at the latest
    idle_s        INTEGER,                -- ends after this long without a turn (NULL: never)
    ended_at      INTEGER,                -- ms, once the janitor ended it
    ended_reason  TEXT                    -- ttl | idle | removed
);
CREATE INDEX session_agents_active ON session_agents (ended_at);
