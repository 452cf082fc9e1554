-- Delegations between agents, both ways: 'out' = one of our agents delegated,
-- 'in' = one of our agents was asked. When both agents live in this gateway the
-- same delegation id has one row per direction.
CREATE TABLE delegations (
    id                TEXT NOT NULL,
    direction         TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    from_agent        TEXT NOT NULL,
    to_agent          TEXT NOT NULL,
    task              TEXT NOT NULL,
    context           TEXT,
    parent            TEXT,                  -- the delegation this one continues, if any
    root              TEXT NOT NULL,         -- the first delegation of the chain (id for a root)
    chain             TEXT NOT NULL,         -- JSON list of agent ids, root delegator .. to_agent
    hop               INTEGER NOT NULL,
    origin_room       TEXT,                  -- where the delegating conversation happens
    origin_event      TEXT,                  -- the event whose turn delegated
    target_room       TEXT NOT NULL,         -- the target agent's room (request and statuses)
    request_event_id  TEXT,                  -- the request event, once sent (or received)
    state             TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'accepted', 'progress',
                                                     'completed', 'failed', 'rejected', 'timeout')),
    result            TEXT,
    error             TEXT,
    deadline_ts       INTEGER NOT NULL,      -- ms epoch
    reinjected        INTEGER NOT NULL DEFAULT 0,  -- result handed back to the delegator (once)
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (id, direction)
);
CREATE INDEX delegations_state ON delegations (state);
CREATE INDEX delegations_direction_state ON delegations (direction, state);
