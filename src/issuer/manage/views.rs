//! The JSON shapes administration answers with, shared by the CLI
//! (`portcullis admin …`) and the REST API (`/admin/v1/`), so both print the
//! same thing.

use serde_json::{Value, json};

use super::KeyReport;
use crate::issuer::store::Client;

/// A client as shown: everything but the secret hash.
pub fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "public": c.public,
        "grant_types": c.grant_types,
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes,
        "created_at": time(c.created_at),
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
