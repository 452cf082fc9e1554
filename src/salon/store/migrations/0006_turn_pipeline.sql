-- One turn pipeline: every turn (a message, a delegated task, a delegation report…)
-- is a ledger row that carries what is needed to run it again after a crash.
ALTER TABLE turns ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE turns ADD COLUMN spec TEXT;              -- JSON TurnSpec (room, sender, text, reply target…)
-- The finished outcome (JSON: state, text, notice), stored before the final send, so
-- a re-run after a crash re-sends the same final text instead of running the backend again.
ALTER TABLE turns ADD COLUMN output TEXT;
ALTER TABLE turns ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;

-- A transient failure (store busy, homeserver down) leaves an inbox row pending, to
-- be tried again at next_at; only a permanent error drops it (with its reason).
ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN last_error TEXT;
CREATE INDEX inbox_due ON inbox (state, next_at);

-- Turns left open by a version that stored no spec: rebuild it from the message
-- that started them, so they resume like any other turn.
UPDATE turns SET spec = (
    SELECT json_object(
        'turn_id', turns.event_id,
        'agent_id', turns.agent_id,
        'kind', 'message',
        'room_id', turns.room_id,
        'sender', inbox.sender,
        'text', COALESCE(json_extract(inbox.event_json, '$.content.body'), ''),
        'session_key', 'agent:' || turns.agent_id || ':matrix:' || turns.room_id
            || COALESCE(':thread:' || CASE
                WHEN json_extract(inbox.event_json, '$.content."m.relates_to".rel_type') = 'm.thread'
                THEN json_extract(inbox.event_json, '$.content."m.relates_to".event_id') END, ''),
        'reply_to', json_object(
            'event_id', turns.event_id,
            'thread_root', CASE
                WHEN json_extract(inbox.event_json, '$.content."m.relates_to".rel_type') = 'm.thread'
                THEN json_extract(inbox.event_json, '$.content."m.relates_to".event_id') END,
            'hop', 0
        )
    )
    FROM inbox WHERE inbox.event_id = turns.event_id
)
WHERE state IN ('admitted', 'running') AND spec IS NULL;
