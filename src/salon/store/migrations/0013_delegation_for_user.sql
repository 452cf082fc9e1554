-- The Matrix user id of the person a delegation's work is done for (the request's
-- `for_user`), kept so a request re-sent or a task re-run after a crash says the same.
-- NULL: for nobody in particular (an operator's delegation, a cron run, older rows).
ALTER TABLE delegations ADD COLUMN for_user TEXT;
