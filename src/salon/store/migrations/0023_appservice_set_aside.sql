-- Appservice mode: a parked transaction whose admission fails (not for a transient
-- reason such as the store being down) counts its tries here; after a few it is set
-- aside with the last error, kept for the operator (`salon status`, `salon appservice
-- retry`), and the start goes on without it instead of failing every time.
ALTER TABLE appservice_parked ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE appservice_parked ADD COLUMN reason TEXT;
ALTER TABLE appservice_parked ADD COLUMN set_aside_at BIGINT;
