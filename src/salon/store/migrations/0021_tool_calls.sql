-- Every tool call of a turn (an MCP tool) is a step of it, with its arguments and
-- result: a turn run again after a crash reuses a recorded result instead of calling
-- the tool twice. Deleted with nothing else: kept as the turn's record.
CREATE TABLE tool_calls (
    event_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    ok INTEGER NOT NULL,
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, agent_id, step)
);
