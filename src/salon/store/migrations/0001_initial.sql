-- Identities: one row per Matrix user Salon acts as (router, agents).
CREATE TABLE identities (
    user_id       TEXT PRIMARY KEY,
    device_id     TEXT,
    access_token  TEXT,
    sync_token    TEXT,
    created_at    INTEGER NOT NULL      -- ms; events older than this are history, never answered
);

-- Inbox: every admitted event, keyed by event id so a replayed batch is a no-op.
CREATE TABLE inbox (
    event_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    sender        TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    event_json    TEXT NOT NULL,
    origin_ts     INTEGER NOT NULL,
    received_by   TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'new',   -- new | done | dropped
    reason        TEXT
);
CREATE INDEX inbox_state ON inbox (state, received_at);

-- Turn ledger: one row per (event, agent): admitted -> running -> replied | failed.
CREATE TABLE turns (
    event_id        TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    reply_event_id  TEXT,
    error           TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (event_id, agent_id)
);
CREATE INDEX turns_state ON turns (state);

-- Rooms Salon knows: the space, the lobby, agent rooms (bound to their agent), chats.
CREATE TABLE rooms (
    room_id     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,          -- space | lobby | agent | chat
    agent_id    TEXT,
    alias       TEXT,
    owner       TEXT,
    archived    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE INDEX rooms_agent ON rooms (agent_id);

-- Small durable counters and facts.
CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
