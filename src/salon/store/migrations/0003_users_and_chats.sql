-- People: their selected agent, personal Space and language.
CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    selected_agent  TEXT,
    space_id        TEXT,
    locale          TEXT,
    created_at      INTEGER NOT NULL
);

-- Chat rooms get a name and the index they were given (`Chat N`).
ALTER TABLE rooms ADD COLUMN name TEXT;

-- Snapshots of sessions saved with !save.
CREATE TABLE saved_contexts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    snapshot     TEXT NOT NULL,          -- JSON list of {role, content, tokens, turn_id}
    created_at   INTEGER NOT NULL
);
CREATE INDEX saved_contexts_owner ON saved_contexts (user_id, agent_id, id);

-- Why each message went where it went (for !why and metrics).
CREATE TABLE decisions (
    event_id    TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    agents      TEXT NOT NULL,           -- comma-separated agent ids, '' for nobody
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX decisions_room ON decisions (room_id, created_at);
