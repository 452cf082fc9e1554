-- A closing turn looks up the delegations it made that were never handed back.
CREATE INDEX delegations_origin ON delegations (origin_event, from_agent);
