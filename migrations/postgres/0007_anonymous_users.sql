-- Anonymous users, created without credentials by the anonymous grant and
-- later promoted (given an email and a password, keeping their id), and
-- anonymized users (personal data removed, id kept). A user without an email
-- (either kind) stores '' as `email` and `NONE:<id>` as `email_key`: unique,
-- and never equal to an email lowercased by the store (it holds ASCII
-- capitals), so no sign-in or email lookup ever finds it. Keep in step with
-- migrations/sqlite.

ALTER TABLE users ADD COLUMN anonymous BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN anonymized_at BIGINT;

-- The purge looks for anonymous users that outlived their refresh tokens.
CREATE INDEX users_anonymous_created_at ON users (created_at) WHERE anonymous;

-- Anonymizing a user redacts the audit entries about them.
CREATE INDEX audit_log_target ON audit_log (target);
