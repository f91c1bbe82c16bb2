-- Revocation facts: one row per revocation (an access token by its jti, a
-- token family, a user's or a client's tokens issued up to a time), added in
-- the transaction of the revocation. Every process that keeps the gateway's
-- revocation set loads the live rows at start and then reads the rows with an
-- id above the last it applied (ids grow in commit order); the purge removes
-- rows once every token they match has expired. They replace revoked_jtis,
-- whose rows move here. Keep in step with migrations/sqlite.

CREATE TABLE revocations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           TEXT NOT NULL,  -- jti | family | subject | client
    value          TEXT NOT NULL,
    issued_before  BIGINT NOT NULL,  -- the tokens it matches were issued at or before this
    expires_at     BIGINT NOT NULL,  -- and have all expired by this
    created_at     BIGINT NOT NULL
);
CREATE INDEX revocations_kind_value ON revocations (kind, value);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

INSERT INTO revocations (kind, value, issued_before, expires_at, created_at)
    SELECT 'jti', jti, expires_at, expires_at, expires_at FROM revoked_jtis;
DROP TABLE revoked_jtis;
