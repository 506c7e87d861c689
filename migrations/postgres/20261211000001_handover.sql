-- A hand-over's successor, resolved once per chain and recorded before anything moves, and
-- what the step moved and left so far (JSON, written after every batch): README, "Hand-over
-- before removal".
ALTER TABLE jobs ADD COLUMN successor_account_id TEXT;
ALTER TABLE jobs ADD COLUMN handover TEXT;
