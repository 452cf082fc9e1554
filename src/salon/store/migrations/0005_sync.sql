-- Gap-free sync: per (identity, room), the newest event already delivered to the
-- gateway, so a limited /sync timeline is backfilled down to it and no further.
CREATE TABLE sync_marks (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    origin_ts  INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- When each identity (last) joined each room: earlier events are never answered.
CREATE TABLE memberships (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    joined_at  INTEGER NOT NULL,        -- origin_server_ts of its own join event
    PRIMARY KEY (user_id, room_id)
);

-- Invitations, joined by a retrying task outside the sync loop.
CREATE TABLE invites (
    user_id      TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'joined', 'refused', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_try_at  INTEGER NOT NULL,      -- ms epoch; only for 'pending'
    reason       TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX invites_due ON invites (state, next_try_at);
