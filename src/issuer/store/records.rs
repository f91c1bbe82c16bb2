//! The records the issuer keeps, as plain Rust values: what [`super::Store`]
//! takes and returns. No SQL and no HTTP types live here.
//!
//! Times are whole seconds since the Unix epoch, always passed in by the caller
//! (from `crate::clock::Clock`). Token-like secrets (authorization codes, refresh
//! tokens) never reach the store: the caller hashes them (SHA-256, encoded as
//! text) and the store compares those hashes as opaque strings.

use std::collections::BTreeMap;
use std::fmt;

mod debug;

/// Scopes of API resources, keyed by the resource identifier (the audience URL).
pub type ScopeMap = BTreeMap<String, Vec<String>>;

/// Stands in for a secret in `Debug` output: `<redacted>`. Secret-bearing
/// types print this (or nothing) in place of the value, so that no log line,
/// panic message or error chain ever carries one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// [`Redacted`] for a value that is there, `None` for one that is not.
pub fn redacted<T>(value: &Option<T>) -> Option<Redacted> {
    value.as_ref().map(|_| Redacted)
}

/// An API resource: an audience that tokens can be issued for, and its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    /// The audience URL, unique; becomes `aud`.
    pub identifier: String,
    /// The scopes this API defines.
    pub scopes: Vec<String>,
}

/// An OAuth client. Its `Debug` hides the secret's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    /// The public identifier, unique.
    pub client_id: String,
    /// A human-readable name.
    pub name: String,
    /// The hashed secret (an argon2id PHC string, opaque here); `None` for a
    /// public client.
    pub secret_hash: Option<String>,
    /// A public client has no secret and must use PKCE.
    pub public: bool,
    /// Whether the authorization-code grant requires PKCE for this client.
    pub require_pkce: bool,
    /// The grant types the client may use (`client_credentials`, …).
    pub grant_types: Vec<String>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// The scopes the client may obtain, per API resource identifier.
    pub scopes: ScopeMap,
    /// The algorithm for this client's ID tokens (`RS256` when `None`).
    pub id_token_signed_response_alg: Option<String>,
    /// The API resources whose access tokens the client may introspect
    /// although they were issued to other clients (a resource server's
    /// client); empty for most. A client may always introspect its own.
    pub introspection: Vec<String>,
    /// When the client was created; an upsert keeps the first value.
    pub created_at: i64,
}

/// An organization (a tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// The identifier, `org_…`.
    pub id: String,
    /// The display name.
    pub name: String,
    /// When it was created.
    pub created_at: i64,
}

/// A user. Its `Debug` hides the password's hash.
///
/// A user is one of three kinds: a normal user (an email, and usually a
/// password to sign in with), an anonymous user (`anonymous`: created
/// without credentials by the anonymous grant, no email until promoted), or
/// an anonymized one (`anonymized_at`: personal data removed, only the id
/// and times left; never signs in again).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The identifier, `usr_…`; becomes `sub`.
    pub id: String,
    /// The email address, unique regardless of letter case; `None` for an
    /// anonymous or anonymized user.
    pub email: Option<String>,
    /// The full name, for the `name` claim.
    pub name: Option<String>,
    /// A picture URL, for the `picture` claim.
    pub picture: Option<String>,
    /// Whether the email address has been verified.
    pub email_verified: bool,
    /// The argon2id PHC string (opaque here); `None` when the user has no password.
    pub password_hash: Option<String>,
    /// When the user was created; updates keep it.
    pub created_at: i64,
    /// When the user was last changed.
    pub updated_at: i64,
    /// Created by the anonymous grant and not promoted yet: their access
    /// tokens say `"anonymous": true`.
    pub anonymous: bool,
    /// When the user's personal data was removed; `None` for a user who was
    /// never anonymized.
    pub anonymized_at: Option<i64>,
}

/// A user's membership of an organization, with the roles it carries there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organization.
    pub org_id: String,
    /// The member.
    pub user_id: String,
    /// Role names (see [`Role`]).
    pub roles: Vec<String>,
    /// When the membership was created.
    pub created_at: i64,
}

/// A role: a name and the API scopes it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The name, unique.
    pub name: String,
    /// The scopes the role grants, per API resource identifier.
    pub grants: ScopeMap,
    /// When the role was created.
    pub created_at: i64,
}

/// A signing key, generated and persisted by the issuer. Its `Debug` hides
/// the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key identifier, unique; the JWS `kid`.
    pub kid: String,
    /// The JWS algorithm (`ES256`, `RS256`, `EdDSA`).
    pub alg: String,
    /// The private key as PKCS#8 DER, possibly encrypted by the caller.
    pub private_key: Vec<u8>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// When the key was generated.
    pub created_at: i64,
    /// When the key appears in the JWKS.
    pub publish_at: i64,
    /// When the key starts signing.
    pub activate_at: i64,
    /// When the key stops signing.
    pub retire_at: Option<i64>,
    /// When the key leaves the JWKS (every token it signed has expired).
    pub expire_at: Option<i64>,
}

/// A pending authorization code, stored under the hash of the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    /// The SHA-256 hash of the code (the caller's text encoding), unique.
    pub code_hash: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: String,
    /// The organization chosen for the session, if any.
    pub org_id: Option<String>,
    /// The redirect URI of the authorization request, matched exactly later.
    pub redirect_uri: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The API resource (RFC 8707) the tokens are for, if any.
    pub resource: Option<String>,
    /// The PKCE S256 challenge, if one was sent.
    pub code_challenge: Option<String>,
    /// The OIDC nonce, if one was sent.
    pub nonce: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// When the code stops being redeemable.
    pub expires_at: i64,
}

/// A stored authorization code and whether it was redeemed
/// ([`super::Store::find_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeState {
    /// Not redeemed yet.
    Unused(AuthCode),
    /// Redeemed before: presenting it again is a replay.
    Used {
        /// The code as stored.
        code: AuthCode,
        /// The token family its redemption started (the `family_id` of its
        /// tokens, and of its refresh family when it has one), recorded in
        /// the redemption's transaction ([`super::StoreTx::redeem_code`]);
        /// `None` for a code redeemed before families were recorded so.
        family_id: Option<String>,
    },
}

/// A refresh-token family: the chain of refresh tokens that one authorization
/// produced, rotated one generation at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// The identifier, unique.
    pub id: String,
    /// The client the tokens belong to.
    pub client_id: String,
    /// The user the tokens act for.
    pub user_id: String,
    /// The organization of the session, if any.
    pub org_id: Option<String>,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The API resource the tokens are for, if any.
    pub resource: Option<String>,
    /// When the user authenticated (for `auth_time` in refreshed ID tokens).
    pub auth_time: i64,
    /// Counts rotations; starts at 0.
    pub generation: i64,
    /// The hash of the one refresh token that is valid now.
    pub current_hash: String,
    /// The hash of the token the last rotation replaced.
    pub previous_hash: Option<String>,
    /// When the last rotation happened.
    pub rotated_at: Option<i64>,
    /// When the family was created.
    pub created_at: i64,
    /// The absolute end of the family.
    pub absolute_expires_at: i64,
    /// The sliding end, moved by each rotation; `None` without an idle limit.
    pub idle_expires_at: Option<i64>,
    /// When the family was revoked; a revoked family never rotates again.
    pub revoked_at: Option<i64>,
}

/// Which token of a family a presented hash matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedToken {
    /// The current token: the only one that may rotate.
    Current,
    /// The token the last rotation replaced (a replay; maybe inside the grace).
    Previous,
    /// An older token: a replay.
    Retired,
}

/// A family found by the hash of one of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMatch {
    /// The family as stored now.
    pub family: RefreshFamily,
    /// Which of its tokens was presented.
    pub presented: PresentedToken,
    /// Whether the family's user is anonymous now (read with the family, so
    /// that a promotion shows in the next refresh without another query).
    pub anonymous: bool,
}

/// One revocation fact (the `revocations` table), which the gateway's
/// revocation set is loaded from and kept in step with. Rows are only added
/// (and purged once expired), each in the transaction of the revocation it
/// records; ids grow in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Assigned by the store on insert (ignored when recording).
    pub id: i64,
    /// `jti`, `family`, `subject` or `client`.
    pub kind: String,
    /// The `jti`, family id, user id or client id.
    pub value: String,
    /// Every token it matches was issued at or before this time (for a
    /// subject or client: the cutoff).
    pub issued_before: i64,
    /// Every token it matches has expired by then; the purge removes it later.
    pub expires_at: i64,
    /// When it was recorded.
    pub created_at: i64,
}

/// What a check against the stored revocations needs of an access token
/// ([`super::Store::is_revoked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    /// The `family_id` claim, when the token has one.
    pub family_id: Option<&'a str>,
    pub sub: &'a str,
    pub client_id: Option<&'a str>,
    pub iat: i64,
}

/// A webhook endpoint. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The identifier, unique.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The Standard Webhooks secret as stored: sealed (`pcws1:…`) under the
    /// master key when one is set, else as it is (`whsec_…`). Opened with
    /// `signing::seal::open_secret` for the context `webhook:<id>`.
    pub secret: String,
    /// The event names delivered; `None` for all events.
    pub events: Option<Vec<String>>,
    /// When the webhook was created.
    pub created_at: i64,
    /// The secret the last rotation replaced, stored as `secret` is (same
    /// context), while deliveries are still signed with it too.
    pub previous_secret: Option<String>,
    /// Until when `previous_secret` signs deliveries beside `secret`.
    pub previous_secret_until: Option<i64>,
}

/// An event to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The identifier, `evt_…`, unique; the `webhook-id`.
    pub id: String,
    /// The event name (`user.created`, …).
    pub event: String,
    /// The creation time as RFC 3339 text, as the payload carries it.
    pub created_at: String,
    /// The payload's `data` (JSON text).
    pub data: String,
    /// When the event is first due for delivery (normally now).
    pub due_at: i64,
}

/// An event in the outbox, awaiting delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The identifier, `evt_…`.
    pub id: String,
    /// The event name.
    pub event: String,
    /// The creation time as RFC 3339 text.
    pub created_at: String,
    /// The payload's `data` (JSON text).
    pub data: String,
    /// Failed delivery attempts so far.
    pub attempts: i64,
    /// The webhooks an earlier attempt reached (opaque keys the deliverer
    /// chose), which a retry skips.
    pub delivered_to: Vec<String>,
    /// After a redelivery to one webhook: the only receiver (its key) the
    /// event goes to.
    pub only_to: Option<String>,
}

/// Where an event of the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Waiting for its first delivery or for a retry.
    Pending,
    /// Every webhook that wants it got it.
    Delivered,
    /// Its attempts ran out before every webhook got it (a dead letter); it
    /// waits for a redelivery.
    Failed,
}

/// An event of the outbox as listed: what it carries and how its delivery
/// went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event, as a claim returns it.
    pub event: OutboxEvent,
    /// When it entered the outbox.
    pub enqueued_at: i64,
    /// When it is next due (pending events).
    pub next_attempt_at: i64,
    /// When it was delivered, if it was.
    pub delivered_at: Option<i64>,
    /// When its attempts ran out, if they did (and no redelivery followed).
    pub failed_at: Option<i64>,
    /// Why the last round failed, per webhook, without URLs.
    pub last_error: Option<String>,
}

/// Where an event stands in the listing's order (newest first): when it
/// entered the outbox, then its id, which breaks ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPosition {
    /// When the event entered the outbox.
    pub enqueued_at: i64,
    /// The event's id.
    pub id: String,
}

/// How deliveries to one webhook went lately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookStatus {
    /// The receiver: a stored webhook's id, or a configured webhook's
    /// derived id.
    pub receiver: String,
    /// When a delivery last succeeded.
    pub last_success_at: Option<i64>,
    /// When a delivery last failed.
    pub last_failure_at: Option<i64>,
    /// Why it failed (no URL, no secret).
    pub last_error: Option<String>,
    /// Failed deliveries since the last success.
    pub consecutive_failures: i64,
}

// === impl EventStatus ===

impl EventStatus {
    /// The name in the admin API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Failed => "failed",
        }
    }

    /// The status named `name`.
    pub fn from_name(name: &str) -> Option<EventStatus> {
        [
            EventStatus::Pending,
            EventStatus::Delivered,
            EventStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

// === impl StoredEvent ===

impl StoredEvent {
    /// Where the event stands.
    pub fn status(&self) -> EventStatus {
        match (self.delivered_at, self.failed_at) {
            (Some(_), _) => EventStatus::Delivered,
            (None, Some(_)) => EventStatus::Failed,
            (None, None) => EventStatus::Pending,
        }
    }
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The identifier, unique.
    pub id: String,
    /// When it happened.
    pub at: i64,
    /// Who did it (a client id, a user id, `cli`, `system`).
    pub actor: String,
    /// What was done (`client.created`, `token.reuse_detected`, …).
    pub action: String,
    /// What it was done to, if anything.
    pub target: Option<String>,
    /// Further detail (JSON text).
    pub detail: String,
}

/// A pending sign-in at the hosted login page: what the authorization request
/// asked for, its CSRF token, and the user once their password was checked
/// (while they choose an organization). Keyed by the hash of the identifier the
/// login URL carries. Its `Debug` hides the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginTransaction {
    /// The hash of the transaction identifier.
    pub id_hash: String,
    /// The transaction's CSRF token (rendered into the form; of no use without
    /// the identifier, which is stored only hashed).
    pub csrf: String,
    /// The checked authorization request, JSON text opaque to the store.
    pub request: String,
    /// The user who signed in, and when; `None` until the password is checked.
    pub user: Option<(String, i64)>,
    /// When the transaction stops being usable.
    pub expires_at: i64,
}

/// A browser session: a user who signed in at the login page. Keyed by the hash
/// of the session cookie's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// The hash of the session identifier.
    pub id_hash: String,
    /// Who signed in.
    pub user_id: String,
    /// When they checked their password.
    pub auth_time: i64,
    /// When the session began.
    pub created_at: i64,
    /// When it ends.
    pub expires_at: i64,
}

/// How failed attempts under one key are slowed down (the caller's policy,
/// passed to [`super::Store::take_attempt`]). All times are seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRule {
    /// Attempts counted before the first delay.
    pub free: i64,
    /// The first delay; each further counted attempt doubles it.
    pub first_delay: i64,
    /// The longest delay.
    pub max_delay: i64,
    /// How long after its last delay ends a key is remembered; then it starts
    /// over.
    pub memory: i64,
}

/// What [`super::Store::take_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt is counted (as a failure, until forgiven) and may be
    /// checked. `failures` includes it; the next attempt under the key is
    /// refused before `delayed_until`.
    Counted {
        /// Counted attempts under the key, this one included.
        failures: i64,
        /// When the next attempt may be counted (`now` when not delayed).
        delayed_until: i64,
    },
    /// The key is in a delay: the attempt is refused and not counted, so the
    /// delay does not grow.
    Delayed {
        /// When the delay ends.
        until: i64,
    },
}
