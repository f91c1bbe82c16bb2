//! The JSON shapes administration answers with, shared by the CLI
//! (`portcullis admin …`) and the REST API (`/admin/v1/`), so both print the
//! same thing. Each shape is a type that serializes to exactly what is sent
//! and describes itself to the admin API's OpenAPI document
//! ([`utoipa::ToSchema`]), so the document cannot say one thing while the
//! API sends another; the `*_json` functions are the same values as JSON.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{KeyReport, RotatedSecret, WebhookEntry};
use crate::issuer::store::{
    ApiResource, Client, EventStatus, Membership, Organization, Role, ScopeMap, StoredEvent, User,
    Webhook, WebhookStatus,
};

/// An API resource (an audience tokens are issued for) and its scopes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Api)]
pub struct ApiView {
    /// The audience URL, unique; the `aud` of its tokens.
    pub identifier: String,
    /// The scopes the API defines.
    pub scopes: Vec<String>,
}

/// A client as shown: everything but the secret and its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Client)]
pub struct ClientView {
    /// The public identifier, unique.
    pub client_id: String,
    /// A human-readable name.
    pub name: String,
    /// A public client has no secret and must use PKCE.
    pub public: bool,
    /// Whether the authorization-code grant requires PKCE.
    pub require_pkce: bool,
    /// The grant types the client may use.
    pub grant_types: Vec<String>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// The scopes the client may obtain, per API identifier.
    #[schema(inline)]
    pub scopes: ScopeMap,
    /// The APIs whose access tokens the client may introspect besides its own.
    pub introspection: Vec<String>,
    /// When the client was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A client just created: the client, and its secret, shown this once
/// (absent for a public client).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedClient)]
pub struct CreatedClientView {
    /// The client.
    #[serde(flatten)]
    pub client: ClientView,
    /// The secret; store it now, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// A user as shown: the profile, never the password or its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// The identifier, `usr_…`; the `sub` of the user's tokens.
    pub id: String,
    /// The email address; null for an anonymous or anonymized user.
    pub email: Option<String>,
    /// The full name.
    pub name: Option<String>,
    /// A picture URL.
    pub picture: Option<String>,
    /// Whether the email address has been verified.
    pub email_verified: bool,
    /// Created by the anonymous grant and not promoted yet.
    pub anonymous: bool,
    /// When the user's personal data was removed (RFC 3339); null for a user
    /// never anonymized.
    #[schema(format = DateTime)]
    pub anonymized_at: Option<String>,
    /// When the user was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the user was last changed (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A user with their memberships.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UserDetail)]
pub struct UserDetailView {
    /// The user.
    #[serde(flatten)]
    pub user: UserView,
    /// The organizations the user belongs to, by organization id.
    pub memberships: Vec<MembershipView>,
}

/// An organization (a tenant).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Organization)]
pub struct OrganizationView {
    /// The identifier, `org_…`.
    pub id: String,
    /// The display name.
    pub name: String,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A role: its name and the scopes it grants per API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Role)]
pub struct RoleView {
    /// The name, unique.
    pub name: String,
    /// The scopes the role grants, per API identifier.
    #[schema(inline)]
    pub grants: ScopeMap,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A user's membership of an organization, with its roles there.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Membership)]
pub struct MembershipView {
    /// The organization.
    pub org_id: String,
    /// The member.
    pub user_id: String,
    /// Role names.
    pub roles: Vec<String>,
    /// When the membership was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A webhook as shown: never its secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookView {
    /// The identifier: `whk_…` for a webhook created through the API or the
    /// CLI, `cfg_…` (derived from its URL) for one of the configuration.
    pub id: String,
    /// Where events are delivered (a configured webhook's without its query).
    pub url: String,
    /// The events delivered; null for every event.
    pub events: Option<Vec<String>>,
    /// When it was created (RFC 3339); null for a configured webhook.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Whether it comes from the configuration file (`issuer.webhooks`),
    /// where alone it changes.
    pub configured: bool,
    /// During a secret rotation's overlap, when the previous secret stops
    /// signing deliveries (RFC 3339); null otherwise.
    #[schema(format = DateTime)]
    pub previous_secret_until: Option<String>,
    /// How deliveries to it went lately.
    pub status: DeliveryStatusView,
}

/// How deliveries to one webhook went lately.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeliveryStatus)]
pub struct DeliveryStatusView {
    /// When a delivery last succeeded (RFC 3339); null if none did yet.
    #[schema(format = DateTime)]
    pub last_success_at: Option<String>,
    /// When a delivery last failed (RFC 3339); null if none did.
    #[schema(format = DateTime)]
    pub last_failure_at: Option<String>,
    /// Why the last failed delivery failed (no URL, no secret).
    pub last_error: Option<String>,
    /// Failed deliveries since the last success.
    #[schema(minimum = 0)]
    pub consecutive_failures: i64,
}

/// A webhook whose secret was just rotated, with the new secret, shown this
/// once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RotatedWebhook)]
pub struct RotatedWebhookView {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The new Standard Webhooks secret (`whsec_…`).
    pub secret: String,
}

/// Where an event of the outbox stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = EventStatus)]
pub enum EventStatusView {
    /// Waiting for its first delivery or a retry.
    Pending,
    /// Every webhook that takes it got it.
    Delivered,
    /// Its attempts ran out (a dead letter); it waits for a redelivery.
    Failed,
}

/// An event of the outbox: what webhooks receive, and how its delivery went.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    /// The identifier, `evt_…`: the `webhook-id` of its deliveries.
    pub id: String,
    /// The event name (`user.created`, …).
    pub event: String,
    /// When it happened (RFC 3339), as its payload says.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The payload's `data`.
    pub data: Value,
    /// Where it stands.
    pub status: EventStatusView,
    /// Failed delivery rounds since it was enqueued or last redelivered.
    #[schema(minimum = 0)]
    pub attempts: i64,
    /// When it entered the outbox (RFC 3339).
    #[schema(format = DateTime)]
    pub enqueued_at: String,
    /// When its next round is due (RFC 3339), while it is pending.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// When it was delivered (RFC 3339).
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    /// When its attempts ran out (RFC 3339), while it is failed.
    #[schema(format = DateTime)]
    pub failed_at: Option<String>,
    /// Why its last round failed, per webhook id, without URLs.
    pub last_error: Option<String>,
    /// The ids of the webhooks it reached (it never goes to them again).
    pub delivered_to: Vec<String>,
    /// After a redelivery to one webhook, that webhook's id.
    pub only_to: Option<String>,
}

/// A webhook just created, with its signing secret (given or generated),
/// shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedWebhook)]
pub struct CreatedWebhookView {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The Standard Webhooks secret (`whsec_…`).
    pub secret: String,
}

/// The outcome of a key rotation: every published key and when it signs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyRotation)]
pub struct KeysView {
    /// Whether this rotation created keys (false: successors were already
    /// waiting).
    pub rotated: bool,
    /// The `kid` of every key in the JWKS.
    pub published: Vec<String>,
    /// Every published key and its schedule.
    pub keys: Vec<KeyView>,
}

/// One published signing key and its schedule.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SigningKey)]
pub struct KeyView {
    /// The JWS `kid`.
    pub kid: String,
    /// The JWS algorithm.
    pub alg: String,
    /// Whether it signs its algorithm's tokens now.
    pub signing: bool,
    /// Whether this rotation created it.
    pub new: bool,
    /// When it appeared in the JWKS (RFC 3339).
    #[schema(format = DateTime)]
    pub published_at: String,
    /// When it starts (or started) signing (RFC 3339).
    #[schema(format = DateTime)]
    pub signs_from: String,
    /// When it stops signing, if scheduled (RFC 3339).
    #[schema(format = DateTime)]
    pub signs_until: Option<String>,
    /// When it leaves the JWKS, if scheduled (RFC 3339).
    #[schema(format = DateTime)]
    pub published_until: Option<String>,
}

// === conversions ===

impl From<&ApiResource> for ApiView {
    fn from(a: &ApiResource) -> Self {
        ApiView {
            identifier: a.identifier.clone(),
            scopes: a.scopes.clone(),
        }
    }
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            public: c.public,
            require_pkce: c.require_pkce,
            grant_types: c.grant_types.clone(),
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            introspection: c.introspection.clone(),
            created_at: time(c.created_at),
        }
    }
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            picture: u.picture.clone(),
            email_verified: u.email_verified,
            anonymous: u.anonymous,
            anonymized_at: u.anonymized_at.map(time),
            created_at: time(u.created_at),
            updated_at: time(u.updated_at),
        }
    }
}

impl From<&Organization> for OrganizationView {
    fn from(o: &Organization) -> Self {
        OrganizationView {
            id: o.id.clone(),
            name: o.name.clone(),
            created_at: time(o.created_at),
        }
    }
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        RoleView {
            name: r.name.clone(),
            grants: r.grants.clone(),
            created_at: time(r.created_at),
        }
    }
}

impl From<&Membership> for MembershipView {
    fn from(m: &Membership) -> Self {
        MembershipView {
            org_id: m.org_id.clone(),
            user_id: m.user_id.clone(),
            roles: m.roles.clone(),
            created_at: time(m.created_at),
        }
    }
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        // Just created or read for its creation: no overlap, no status.
        WebhookView::from(&super::webhooks::stored_entry(w, &[], i64::MAX))
    }
}

impl From<&WebhookEntry> for WebhookView {
    fn from(w: &WebhookEntry) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: w.created_at.map(time),
            configured: w.configured,
            previous_secret_until: w.previous_secret_until.map(time),
            status: DeliveryStatusView::from(&w.status),
        }
    }
}

impl From<&WebhookStatus> for DeliveryStatusView {
    fn from(s: &WebhookStatus) -> Self {
        DeliveryStatusView {
            last_success_at: s.last_success_at.map(time),
            last_failure_at: s.last_failure_at.map(time),
            last_error: s.last_error.clone(),
            consecutive_failures: s.consecutive_failures,
        }
    }
}

impl From<&RotatedSecret> for RotatedWebhookView {
    fn from(r: &RotatedSecret) -> Self {
        RotatedWebhookView {
            webhook: WebhookView::from(&r.webhook),
            secret: r.secret.clone(),
        }
    }
}

impl From<EventStatus> for EventStatusView {
    fn from(s: EventStatus) -> Self {
        match s {
            EventStatus::Pending => EventStatusView::Pending,
            EventStatus::Delivered => EventStatusView::Delivered,
            EventStatus::Failed => EventStatusView::Failed,
        }
    }
}

impl From<EventStatusView> for EventStatus {
    fn from(s: EventStatusView) -> Self {
        match s {
            EventStatusView::Pending => EventStatus::Pending,
            EventStatusView::Delivered => EventStatus::Delivered,
            EventStatusView::Failed => EventStatus::Failed,
        }
    }
}

impl From<&StoredEvent> for EventView {
    fn from(e: &StoredEvent) -> Self {
        let status = e.status();
        EventView {
            id: e.event.id.clone(),
            event: e.event.event.clone(),
            created_at: e.event.created_at.clone(),
            data: serde_json::from_str(&e.event.data).unwrap_or(Value::Null),
            status: status.into(),
            attempts: e.event.attempts,
            enqueued_at: time(e.enqueued_at),
            next_attempt_at: (status == EventStatus::Pending).then(|| time(e.next_attempt_at)),
            delivered_at: e.delivered_at.map(time),
            failed_at: e
                .failed_at
                .filter(|_| status == EventStatus::Failed)
                .map(time),
            last_error: e.last_error.clone(),
            delivered_to: e.event.delivered_to.clone(),
            only_to: e.event.only_to.clone(),
        }
    }
}

impl From<&KeyReport> for KeysView {
    fn from(report: &KeyReport) -> Self {
        let keys = report
            .keys
            .iter()
            .map(|k| KeyView {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                signing: k.signing,
                new: k.new,
                published_at: time(k.publish_at),
                signs_from: time(k.activate_at),
                signs_until: k.retire_at.map(time),
                published_until: k.expire_at.map(time),
            })
            .collect();
        let published = report.keys.iter().map(|k| k.kid.clone()).collect();
        KeysView {
            rotated: report.rotated,
            published,
            keys,
        }
    }
}

// === the same, as JSON values ===

/// A client as shown: everything but the secret hash.
pub fn client_json(c: &Client) -> Value {
    to_json(ClientView::from(c))
}

/// A user as shown: the profile, never the password hash. `email` is null
/// for an anonymous or anonymized user; `anonymized_at` is null for a user
/// who was never anonymized.
pub fn user_json(u: &User) -> Value {
    to_json(UserView::from(u))
}

/// A user as shown by `user show` and `GET /users/{id}`: the profile and the
/// user's memberships.
pub fn user_detail_json(u: &User, memberships: &[Membership]) -> Value {
    to_json(UserDetailView {
        user: u.into(),
        memberships: memberships.iter().map(MembershipView::from).collect(),
    })
}

/// An organization as shown.
pub fn organization_json(o: &Organization) -> Value {
    to_json(OrganizationView::from(o))
}

/// A role as shown: its name and the scopes it grants per API.
pub fn role_json(r: &Role) -> Value {
    to_json(RoleView::from(r))
}

/// A membership as shown.
pub fn membership_json(m: &Membership) -> Value {
    to_json(MembershipView::from(m))
}

/// A webhook as shown: never its secret (`events` is `null` for every event).
pub fn webhook_json(w: &Webhook) -> Value {
    to_json(WebhookView::from(w))
}

/// A webhook as listed: stored or configured, with its delivery status.
pub fn webhook_entry_json(w: &WebhookEntry) -> Value {
    to_json(WebhookView::from(w))
}

/// A webhook after a secret rotation, with its new secret.
pub fn rotated_webhook_json(r: &RotatedSecret) -> Value {
    to_json(RotatedWebhookView::from(r))
}

/// An event of the outbox and how its delivery went.
pub fn event_json(e: &StoredEvent) -> Value {
    to_json(EventView::from(e))
}

/// The outcome of a key rotation: every published key and when it signs.
pub fn keys_json(report: &KeyReport) -> Value {
    to_json(KeysView::from(report))
}

/// A view as a JSON value. The views hold strings, booleans, lists and maps
/// keyed by strings, which always serialize.
fn to_json(view: impl Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// Seconds since the epoch as RFC 3339 text.
pub fn time(secs: i64) -> String {
    let mut out = String::with_capacity(27);
    crate::telemetry::access::rfc3339(&mut out, secs, 0);
    out
}
