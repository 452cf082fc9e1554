-- Per-agent cron: one row per run of a job at one scheduled time. The primary key is
-- the claim: whoever inserts the row runs that time, so each scheduled time runs once
-- however many schedulers (restarts, processes) look at it. The run itself is the
-- ledgered turn `turn_id` (closed, failed or resumed like any other turn).
CREATE TABLE cron_runs (
    agent_id     TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    scheduled_ts INTEGER NOT NULL,          -- the scheduled time, epoch seconds
    state        TEXT NOT NULL,             -- claimed (the turn tells how it went)
    catch_up     INTEGER NOT NULL DEFAULT 0, -- 1: a time missed while the gateway was down
    claimed_at   INTEGER NOT NULL,          -- ms epoch
    turn_id      TEXT NOT NULL,
    PRIMARY KEY (agent_id, job_id, scheduled_ts)
);
