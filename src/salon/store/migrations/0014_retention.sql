-- The retention janitor deletes finished rows older than store.retention_days in
-- small batches; each batch finds its rows through one of these indexes.
-- (state, updated_at) serves every query the state-only indexes served.
DROP INDEX turns_state;
CREATE INDEX turns_state_updated ON turns (state, updated_at);
DROP INDEX delegations_state;
CREATE INDEX delegations_state_updated ON delegations (state, updated_at);
CREATE INDEX decisions_created ON decisions (created_at);
CREATE INDEX invites_state_updated ON invites (state, updated_at);
CREATE INDEX session_messages_created ON session_messages (created_at);
CREATE INDEX cron_runs_claimed ON cron_runs (claimed_at);
-- A closed turn is kept while a kept cron run names it.
CREATE INDEX cron_runs_turn ON cron_runs (turn_id, agent_id);
