-- Appservice mode: transactions pushed while the gateway is still starting. Each is
-- kept here (durably, before its 200) and admitted in arrival order once the
-- gateway is ready: held unanswered instead, a long start made the homeserver time
-- out, mark the appservice down and back off for minutes.
CREATE TABLE appservice_parked (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    txn_id  TEXT NOT NULL UNIQUE,
    seq     BIGINT,
    body    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
-- The homeserver's own number of each admitted transaction (Synapse: one sequence for
-- all its appservices), to notice one that never came.
ALTER TABLE appservice_txns ADD COLUMN seq BIGINT;
CREATE INDEX appservice_txns_seq ON appservice_txns (seq);
