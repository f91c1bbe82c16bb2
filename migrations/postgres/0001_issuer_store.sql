-- The issuer's store on PostgreSQL. Keep in step with migrations/sqlite: the
-- same tables, columns and indexes; only the types differ (BIGINT for INTEGER,
-- BYTEA for BLOB, an identity column for AUTOINCREMENT). Times are unix
-- seconds; lists and maps are JSON text, read and written only by the store.

CREATE TABLE api_resources (
    identifier  TEXT PRIMARY KEY,
    scopes      TEXT NOT NULL
);

CREATE TABLE clients (
    client_id                     TEXT PRIMARY KEY,
    name                          TEXT NOT NULL,
    secret_hash                   TEXT,
    public                        BOOLEAN NOT NULL,
    require_pkce                  BOOLEAN NOT NULL,
    grant_types                   TEXT NOT NULL,
    redirect_uris                 TEXT NOT NULL,
    scopes                        TEXT NOT NULL,
    id_token_signed_response_alg  TEXT,
    created_at                    BIGINT NOT NULL
);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL UNIQUE,  -- the email lowercased by the store
    name            TEXT,
    picture         TEXT,
    email_verified  BOOLEAN NOT NULL,
    password_hash   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    roles       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_id ON memberships (user_id);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    grants      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    publish_at   BIGINT NOT NULL,
    activate_at  BIGINT NOT NULL,
    retire_at    BIGINT,
    expire_at    BIGINT
);

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id          TEXT,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    resource        TEXT,
    code_challenge  TEXT,
    nonce           TEXT,
    auth_time       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    family_id       TEXT
);
CREATE INDEX authorization_codes_client_id ON authorization_codes (client_id);
CREATE INDEX authorization_codes_user_id ON authorization_codes (user_id);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE refresh_families (
    id                   TEXT PRIMARY KEY,
    client_id            TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id               TEXT,
    scope                TEXT NOT NULL,
    resource             TEXT,
    auth_time            BIGINT NOT NULL,
    generation           BIGINT NOT NULL,
    current_hash         TEXT NOT NULL UNIQUE,
    previous_hash        TEXT,
    rotated_at           BIGINT,
    created_at           BIGINT NOT NULL,
    absolute_expires_at  BIGINT NOT NULL,
    idle_expires_at      BIGINT,
    revoked_at           BIGINT
);
CREATE INDEX refresh_families_client_id ON refresh_families (client_id);
CREATE INDEX refresh_families_user_id ON refresh_families (user_id);
CREATE INDEX refresh_families_absolute_expires_at ON refresh_families (absolute_expires_at);

-- Every hash a rotation replaced, so that replaying any old token is recognised.
CREATE TABLE retired_refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE
);
CREATE INDEX retired_refresh_tokens_family_id ON retired_refresh_tokens (family_id);

CREATE TABLE revoked_jtis (
    jti         TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_jtis_expires_at ON revoked_jtis (expires_at);

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT,  -- NULL: every event
    created_at  BIGINT NOT NULL
);

CREATE TABLE event_outbox (
    id               TEXT PRIMARY KEY,
    event            TEXT NOT NULL,
    created_at       TEXT NOT NULL,  -- RFC 3339, as delivered
    data             TEXT NOT NULL,
    enqueued_at      BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX event_outbox_due ON event_outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX event_outbox_delivered_at ON event_outbox (delivered_at);

CREATE TABLE audit_log (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at, seq);
