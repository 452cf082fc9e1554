-- The issues and merge requests a delegation's task names (metadata, never fetched):
-- a JSON list of {kind, number, project?, url?, forge?, text}, NULL when there are none.
ALTER TABLE delegations ADD COLUMN refs TEXT;
