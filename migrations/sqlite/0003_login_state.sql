-- The login flow's state, shared by every replica (it lived in one process's
-- memory before): pending sign-in transactions, browser sessions and failed
-- logins per account. Transactions and sessions are keyed by the hash of the
-- identifier their cookie or URL carries, never the identifier itself. Keep in
-- step with migrations/postgres.

CREATE TABLE login_transactions (
    id_hash     TEXT PRIMARY KEY,
    csrf        TEXT NOT NULL,  -- rendered into the form; useless without the id
    request     TEXT NOT NULL,  -- the checked authorization request, JSON
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    auth_time   INTEGER,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX login_transactions_expires_at ON login_transactions (expires_at);

CREATE TABLE login_sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX login_sessions_user_id ON login_sessions (user_id);
CREATE INDEX login_sessions_expires_at ON login_sessions (expires_at);

CREATE TABLE login_failures (
    account         TEXT PRIMARY KEY,  -- the email, lowercased
    failures        INTEGER NOT NULL,
    window_ends_at  INTEGER NOT NULL
);
CREATE INDEX login_failures_window_ends_at ON login_failures (window_ends_at);
