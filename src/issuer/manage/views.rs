//! The JSON shapes administration answers with, shared by the CLI
//! (`portcullis admin …`) and the REST API (`/admin/v1/`), so both print the
//! same thing. Each shape is a type that serializes to exactly what is sent
//! and describes itself to the admin API's OpenAPI document
//! ([`utoipa::ToSchema`]), so the document cannot say one thing while the
//! API sends another; the `*_json` functions are the same values as JSON.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::KeyReport;
use crate::issuer::store::{
    ApiResource, Client, Membership, Organization, Role, ScopeMap, User, Webhook,
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
    /// The identifier, `whk_…`.
    pub id: String,
    /// Where events are delivered.
    pub url: String,
    /// The events delivered; null for every event.
    pub events: Option<Vec<String>>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
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
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: time(w.created_at),
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
