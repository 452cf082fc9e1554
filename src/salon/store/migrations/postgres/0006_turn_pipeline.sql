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

-- (SQLite's version also rebuilds the spec of turns an older version left open, from
-- their inbox rows; a PostgreSQL store starts at this version and has none.)
