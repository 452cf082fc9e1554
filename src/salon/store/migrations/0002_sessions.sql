-- Sessions: one conversation history per key agent:<id>:<surface>:<room>[:thread:<t>].
CREATE TABLE sessions (
    session_key  TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    chat_id      TEXT NOT NULL,          -- platform chat id from a durable sequence, never reused
    created_at   INTEGER NOT NULL
);
CREATE INDEX sessions_agent ON sessions (agent_id);

CREATE TABLE session_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key  TEXT NOT NULL REFERENCES sessions (session_key) ON DELETE CASCADE,
    turn_id      TEXT,                   -- the inbound event id: a turn's messages stay together
    role         TEXT NOT NULL,          -- user | assistant
    content      TEXT NOT NULL,
    tokens       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX session_messages_key ON session_messages (session_key, id);
CREATE UNIQUE INDEX session_messages_turn ON session_messages (session_key, turn_id, role);
