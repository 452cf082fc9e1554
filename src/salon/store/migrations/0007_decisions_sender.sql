-- Who sent each routed message. Agents' own replies are routed (and recorded) too,
-- so `!why` needs the sender to explain the newest message from a person.
ALTER TABLE decisions ADD COLUMN sender TEXT;

-- Every decision so far was made for an admitted event: the inbox knows its sender.
UPDATE decisions SET sender = (SELECT sender FROM inbox WHERE inbox.event_id = decisions.event_id);
