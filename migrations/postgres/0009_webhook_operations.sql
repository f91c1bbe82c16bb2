-- Webhook operations: dead letters, secret rotation with an overlap, and each
-- webhook's delivery status. Keep in step with migrations/sqlite.

-- An event whose attempts ran out is failed (a dead letter): `failed_at` is
-- set, it is never due again, and an operator may redeliver it (which clears
-- `failed_at`, and may restrict the next rounds to one webhook, `only_to`).
-- `last_error` says why the last round failed, per webhook, without URLs.
ALTER TABLE event_outbox ADD COLUMN failed_at BIGINT;
ALTER TABLE event_outbox ADD COLUMN last_error TEXT;
ALTER TABLE event_outbox ADD COLUMN only_to TEXT;

-- The listing of events, newest first, and of the failed ones.
CREATE INDEX event_outbox_enqueued ON event_outbox (enqueued_at, id);
CREATE INDEX event_outbox_failed ON event_outbox (enqueued_at, id) WHERE failed_at IS NOT NULL;

-- The secret a rotation replaced, stored as `secret` is (sealed under the
-- master key when one is set), and until when deliveries are signed with it
-- too.
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until BIGINT;

-- Delivery status per receiver: a stored webhook's id (`whk_…`), or the id
-- derived from a configured webhook's URL (`cfg_…`).
CREATE TABLE webhook_status (
    receiver              TEXT PRIMARY KEY,
    last_success_at       BIGINT,
    last_failure_at       BIGINT,
    last_error            TEXT,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0
);
