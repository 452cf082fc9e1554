-- Appservice mode: the transaction ids the homeserver pushed whose events were all
-- admitted into the inbox. A transaction id seen again (the homeserver retrying after
-- a lost answer, also across a restart) is answered at once, without work.
CREATE TABLE appservice_txns (
    txn_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
-- The retention janitor deletes old ids by this.
CREATE INDEX appservice_txns_at ON appservice_txns (at);
