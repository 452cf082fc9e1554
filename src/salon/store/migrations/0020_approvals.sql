-- Tool calls waiting for (or decided by) a person's OK. ``id`` is derived from the turn
-- and the call, so a turn re-run after a crash finds its request (and decision) again.
-- ``ignored`` is a JSON list of reactions/commands that could not decide it, and why.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    turn_id           TEXT NOT NULL,
    agent_id          TEXT NOT NULL,
    tool              TEXT NOT NULL,
    arguments         TEXT NOT NULL,
    room_id           TEXT NOT NULL,
    for_user          TEXT,
    request_event_id  TEXT,
    state             TEXT NOT NULL,
    decided_by        TEXT,
    reason            TEXT,
    ignored           TEXT,
    created_at        INTEGER NOT NULL,
    deadline_at       INTEGER NOT NULL,
    decided_at        INTEGER
);
CREATE INDEX approvals_request ON approvals (request_event_id);
CREATE INDEX approvals_state ON approvals (state, created_at);
CREATE INDEX approvals_turn ON approvals (turn_id, agent_id);
