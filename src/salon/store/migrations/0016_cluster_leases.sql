-- Several gateway processes on one database: an inbox row and an open turn are held
-- by one process (owner) until lease_until (ms), which it extends while it lives;
-- once a dead owner's lease runs out, another process claims them.
ALTER TABLE inbox ADD COLUMN owner TEXT;
ALTER TABLE inbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE turns ADD COLUMN owner TEXT;
ALTER TABLE turns ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX inbox_room ON inbox (room_id, state);
CREATE INDEX turns_owner ON turns (owner);

-- Named leases on work one process does for all (the leader: janitors, heartbeats).
CREATE TABLE leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    lease_until  INTEGER NOT NULL
);
