-- End-to-end encryption: one Olm account (device) per identity and its sessions,
-- every secret pickled (encrypted) with the gateway's pickle key, never in clear.
CREATE TABLE crypto_accounts (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    -- The device keys were uploaded (a crash before that uploads them at start).
    published INTEGER NOT NULL DEFAULT 0
);
-- Olm sessions with other devices, by the other device's curve25519 key.
CREATE TABLE crypto_olm_sessions (
    user_id TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, sender_key, session_id)
);
-- Megolm room keys received (and this identity's own, to read its own messages).
CREATE TABLE crypto_inbound_groups (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    pickle TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, session_id)
);
-- The Megolm session this identity sends with in a room, and to whom it was shared.
CREATE TABLE crypto_outbound_groups (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    shared_with TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
-- Encrypted events whose room key has not arrived yet: retried when it does,
-- dropped (with a log line and a metric) when it never does.
CREATE TABLE crypto_pending (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX crypto_pending_session ON crypto_pending (user_id, room_id, session_id);
