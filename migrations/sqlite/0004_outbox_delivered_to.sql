-- The webhooks an event already reached (hashes of their URLs, a JSON list),
-- so that a retry goes only to those that failed. Keep in step with
-- migrations/postgres.
ALTER TABLE event_outbox ADD COLUMN delivered_to TEXT;
