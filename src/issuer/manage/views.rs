//! The JSON shapes administration answers with, shared by the CLI
//! (`portcullis admin …`) and the REST API (`/admin/v1/`), so both print the
//! same thing.

use serde_json::{Value, json};

use super::KeyReport;
use crate::issuer::store::{Client, Membership, Organization, Role, User, Webhook};

/// A client as shown: everything but the secret hash.
pub fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "public": c.public,
        "require_pkce": c.require_pkce,
        "grant_types": c.grant_types,
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes,
        "introspection": c.introspection,
        "created_at": time(c.created_at),
    })
}

/// A user as shown: the profile, never the password hash. `email` is null
/// for an anonymous or anonymized user; `anonymized_at` is null for a user
/// who was never anonymized.
pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "picture": u.picture,
        "email_verified": u.email_verified,
        "anonymous": u.anonymous,
        "anonymized_at": u.anonymized_at.map(time),
        "created_at": time(u.created_at),
        "updated_at": time(u.updated_at),
    })
}

/// A user as shown by `user show` and `GET /users/{id}`: the profile and the
/// user's memberships.
pub fn user_detail_json(u: &User, memberships: &[Membership]) -> Value {
    let mut out = user_json(u);
    if let Some(map) = out.as_object_mut() {
        let list = memberships.iter().map(membership_json).collect();
        map.insert("memberships".into(), Value::Array(list));
    }
    out
}

/// An organization as shown.
pub fn organization_json(o: &Organization) -> Value {
    json!({ "id": o.id, "name": o.name, "created_at": time(o.created_at) })
}

/// A role as shown: its name and the scopes it grants per API.
pub fn role_json(r: &Role) -> Value {
    json!({ "name": r.name, "grants": r.grants, "created_at": time(r.created_at) })
}

/// A membership as shown.
pub fn membership_json(m: &Membership) -> Value {
    json!({
        "org_id": m.org_id,
        "user_id": m.user_id,
        "roles": m.roles,
        "created_at": time(m.created_at),
    })
}

/// A webhook as shown: never its secret (`events` is `null` for every event).
pub fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "created_at": time(w.created_at),
    })
}

/// The outcome of a key rotation: every published key and when it signs.
pub fn keys_json(report: &KeyReport) -> Value {
    let keys: Vec<Value> = report
        .keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "alg": k.alg,
                "signing": k.signing,
                "new": k.new,
                "published_at": time(k.publish_at),
                "signs_from": time(k.activate_at),
                "signs_until": k.retire_at.map(time),
                "published_until": k.expire_at.map(time),
            })
        })
        .collect();
    let published: Vec<&str> = report.keys.iter().map(|k| k.kid.as_str()).collect();
    json!({ "rotated": report.rotated, "published": published, "keys": keys })
}

/// Seconds since the epoch as RFC 3339 text.
pub fn time(secs: i64) -> String {
    let mut out = String::with_capacity(27);
    crate::telemetry::access::rfc3339(&mut out, secs, 0);
    out
}
