-- Failed authentications, throttled with growing delays instead of hard
-- locks (replacing login_failures, whose window every attempt restarted).
-- One row per key: `login:<email>@<source>` and `login-source:<source>` for
-- the login page, `client:<client_id>@<source>` and `client-source:<source>`
-- for client authentication (a source is an IPv4 address or an IPv6 /64).
-- Attempts are counted as they start and forgiven when they succeed; an
-- attempt before blocked_until is refused and not counted, so waiting
-- attackers cannot extend a delay. Keep in step with migrations/sqlite.

CREATE TABLE auth_throttle (
    key            TEXT PRIMARY KEY,
    failures       BIGINT NOT NULL,  -- counted attempts not yet forgiven
    delay_secs     BIGINT NOT NULL,  -- the delay the last counted attempt set
    blocked_until  BIGINT NOT NULL,  -- no attempt is counted or checked before
    forget_at      BIGINT NOT NULL   -- after this the row counts as absent
);
CREATE INDEX auth_throttle_forget_at ON auth_throttle (forget_at);

DROP TABLE login_failures;
