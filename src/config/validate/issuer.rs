//! Cross-checks of the built-in issuer's `issuer:` section: lifetimes within their
//! bounds, resources (the admin scope reserved to the admin API), clients
//! (`clients.rs`), webhooks and blocking hooks without duplicates and at
//! addresses the address policy allows.

use std::collections::HashSet;
use std::time::Duration;

use super::Checker;
use crate::config::raw::{RawHook, RawIssuerSection, RawResource, RawRevocation, RawWebhook};
use crate::config::value::{ADMIN_SCOPE, absolute_uri, admin_audience, scope_token};
use crate::config::{
    HookConfig, IssuerSection, ResourceConfig, RevocationConfig, SigningAlg, WebhookAddressPolicy,
    WebhookConfig,
};

const DEFAULT_DATABASE: &str = "sqlite://portcullis.db";
const DEFAULT_SIGNING_ALGS: [SigningAlg; 2] = [SigningAlg::ES256, SigningAlg::RS256];
const DEFAULT_KEY_ROTATION: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_ID_TTL: Duration = Duration::from_secs(3_600);
const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_KEY_SYNC: Duration = Duration::from_secs(60);
const MIN_ACCESS_TTL: Duration = Duration::from_secs(1);
const MAX_ACCESS_TTL: Duration = Duration::from_secs(24 * 3_600);
const MAX_REUSE_GRACE: Duration = Duration::from_secs(60);
/// Below this, keys would churn faster than JWKS caches refresh.
const MIN_KEY_ROTATION: Duration = Duration::from_secs(3_600);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// A token request or an admin call waits this long at most for one hook.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_REVOCATION_ENTRIES: usize = 100_000;
const REVOCATION_ENTRIES: std::ops::RangeInclusive<usize> = 100..=10_000_000;
const DEFAULT_REVOCATION_SYNC: Duration = Duration::from_secs(5);
mod clients;

use clients::client;

/// Checks the section and returns it with every default filled in; problems go
/// to `c`.
pub(super) fn section(c: &mut Checker<'_>, raw: RawIssuerSection) -> IssuerSection {
    let database = raw.database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    if !["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| database.starts_with(p))
    {
        c.error(
            "issuer.database",
            "`database` must be a `sqlite:` or `postgres://` URL",
        );
    }
    let signing_algs = match raw.signing_algs {
        Some(list) => list.into_iter().map(|a| a.0).collect(),
        None => DEFAULT_SIGNING_ALGS.to_vec(),
    };
    if signing_algs.is_empty() {
        c.error("issuer.signing_algs", "`signing_algs` must not be empty");
    }
    if has_duplicates(&signing_algs) {
        c.error(
            "issuer.signing_algs",
            "`signing_algs` names an algorithm twice",
        );
    }
    let ttl = |d: Option<crate::config::value::Parsed<Duration>>, default| {
        d.map(|d| d.0).unwrap_or(default)
    };
    let key_rotation = ttl(raw.key_rotation, DEFAULT_KEY_ROTATION);
    let access_token_ttl = ttl(raw.access_token_ttl, DEFAULT_ACCESS_TTL);
    let id_token_ttl = ttl(raw.id_token_ttl, DEFAULT_ID_TTL);
    let refresh_token_ttl = ttl(raw.refresh_token_ttl, DEFAULT_REFRESH_TTL);
    let refresh_token_idle_ttl = raw.refresh_token_idle_ttl.map(|d| d.0);
    let refresh_reuse_grace = ttl(raw.refresh_reuse_grace, Duration::ZERO);
    let key_sync_interval = ttl(raw.key_sync_interval, DEFAULT_KEY_SYNC);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&key_sync_interval) {
        c.error(
            "issuer.key_sync_interval",
            "`key_sync_interval` must be between 1s and 1h",
        );
    }
    if key_rotation < MIN_KEY_ROTATION {
        c.error("issuer.key_rotation", "`key_rotation` must be at least 1h");
    }
    if !(MIN_ACCESS_TTL..=MAX_ACCESS_TTL).contains(&access_token_ttl) {
        c.error(
            "issuer.access_token_ttl",
            "`access_token_ttl` must be between 1s and 24h",
        );
    }
    for (key, d) in [
        ("issuer.id_token_ttl", Some(id_token_ttl)),
        ("issuer.refresh_token_ttl", Some(refresh_token_ttl)),
        ("issuer.refresh_token_idle_ttl", refresh_token_idle_ttl),
    ] {
        if d.is_some_and(|d| d.is_zero()) {
            c.error(key, "a token lifetime must be longer than zero");
        }
    }
    if refresh_token_idle_ttl.is_some_and(|idle| idle > refresh_token_ttl) {
        c.error(
            "issuer.refresh_token_idle_ttl",
            "`refresh_token_idle_ttl` must not be longer than `refresh_token_ttl`",
        );
    }
    if refresh_reuse_grace > MAX_REUSE_GRACE {
        c.error(
            "issuer.refresh_reuse_grace",
            "`refresh_reuse_grace` must be at most 60s",
        );
    }
    let admin = admin_audience(&raw.url.0.0);
    let resources = resources(c, raw.resources, &admin);
    let mut ids = HashSet::new();
    let clients = raw
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if !ids.insert(r.client_id.clone()) {
                c.error(
                    &format!("issuer.clients[{i}].client_id"),
                    format!("client `{}` is declared twice", r.client_id),
                );
            }
            client(c, i, r, &resources, &signing_algs, &admin)
        })
        .collect();
    // The built-in ranges are refused by default outside development: an
    // issuer whose public URL is on loopback is a development one, whose
    // receivers are on the same machine.
    let development = loopback_url(&raw.url.0.0);
    let webhook_address_policy = match raw.webhook_address_policy {
        Some(p) => WebhookAddressPolicy {
            allow_private: p.allow_private.unwrap_or(development),
            allow: p.allow.into_iter().map(|c| c.0).collect(),
            deny: p.deny.into_iter().map(|c| c.0).collect(),
        },
        None => WebhookAddressPolicy {
            allow_private: development,
            ..WebhookAddressPolicy::default()
        },
    };
    let webhooks = webhooks(c, raw.webhooks, &webhook_address_policy);
    let hooks = hooks(c, raw.hooks, &webhook_address_policy);
    let revocation = revocation(c, raw.revocation);
    IssuerSection {
        url: raw.url.0.0,
        database,
        signing_algs,
        key_rotation,
        access_token_ttl,
        id_token_ttl,
        refresh_token_ttl,
        refresh_token_idle_ttl,
        refresh_reuse_grace,
        key_sync_interval,
        resources,
        clients,
        webhooks,
        webhook_address_policy,
        hooks,
        revocation,
    }
}

fn revocation(c: &mut Checker<'_>, raw: Option<RawRevocation>) -> RevocationConfig {
    let raw = raw.unwrap_or(RawRevocation {
        max_entries: None,
        sync_interval: None,
    });
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_REVOCATION_ENTRIES);
    if !REVOCATION_ENTRIES.contains(&max_entries) {
        c.error(
            "issuer.revocation.max_entries",
            "`max_entries` must be between 100 and 10000000",
        );
    }
    let sync_interval = raw
        .sync_interval
        .map(|d| d.0)
        .unwrap_or(DEFAULT_REVOCATION_SYNC);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&sync_interval) {
        c.error(
            "issuer.revocation.sync_interval",
            "`sync_interval` must be between 1s and 1h",
        );
    }
    RevocationConfig {
        max_entries,
        sync_interval,
    }
}

fn has_duplicates<T: Eq + std::hash::Hash>(items: &[T]) -> bool {
    let mut seen = HashSet::new();
    !items.iter().all(|i| seen.insert(i))
}

fn resources(c: &mut Checker<'_>, raw: Vec<RawResource>, admin: &str) -> Vec<ResourceConfig> {
    let mut seen = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("issuer.resources[{i}]");
        if r.identifier == admin {
            c.error(
                &format!("{key}.identifier"),
                format!("`{admin}` is the admin API's resource, which the issuer declares itself (with `{ADMIN_SCOPE}`); leave it out"),
            );
        }
        for (j, s) in r.scopes.iter().enumerate() {
            if s == ADMIN_SCOPE && r.identifier != admin {
                c.error(
                    &format!("{key}.scopes[{j}]"),
                    format!("`{ADMIN_SCOPE}` exists only on the admin API's resource `{admin}`: a token for any other API would carry it to that API's upstreams"),
                );
            }
        }
        if let Err(e) = absolute_uri(&r.identifier) {
            c.error(
                &format!("{key}.identifier"),
                format!("a resource identifier must be an absolute URI: {e}"),
            );
        }
        if !seen.insert(r.identifier.as_str()) {
            c.error(
                &format!("{key}.identifier"),
                format!("resource `{}` is declared twice", r.identifier),
            );
        }
        scopes(c, &format!("{key}.scopes"), &r.scopes);
    }
    raw.into_iter()
        .map(|r| ResourceConfig {
            identifier: r.identifier,
            scopes: r.scopes,
        })
        .collect()
}

fn scopes(c: &mut Checker<'_>, key: &str, list: &[String]) {
    for (j, s) in list.iter().enumerate() {
        if !scope_token(s) {
            c.error(
                &format!("{key}[{j}]"),
                format!(
                    "`{s}` is not a valid scope (printable ASCII without spaces, `\"` or `\\`)"
                ),
            );
        }
    }
    if has_duplicates(list) {
        c.error(key, "a scope is listed twice");
    }
}

fn webhooks(
    c: &mut Checker<'_>,
    raw: Vec<RawWebhook>,
    policy: &WebhookAddressPolicy,
) -> Vec<WebhookConfig> {
    let mut urls = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = format!("issuer.webhooks[{i}]");
            let url = r.url.0.0;
            if !urls.insert(url.to_string()) {
                c.error(
                    &format!("{key}.url"),
                    format!("webhook `{url}` is configured twice"),
                );
            }
            if let Some(what) = url.host().and_then(|h| policy.refuses_host(h)) {
                c.error(
                    &format!("{key}.url"),
                    format!("webhook `{url}` points at a {what} address, which `issuer.webhook_address_policy` refuses (set `allow_private: true` for development, or `allow` the range)"),
                );
            }
            let events: Option<Vec<_>> = r.events.map(|e| e.into_iter().map(|e| e.0).collect());
            match &events {
                Some(list) if list.is_empty() => c.error(
                    &format!("{key}.events"),
                    "`events` must not be empty (leave it out for every event)",
                ),
                Some(list) if has_duplicates(list) => {
                    c.error(&format!("{key}.events"), "`events` names an event twice")
                }
                _ => {}
            }
            let previous_secret = r.previous_secret.map(|p| p.0);
            if previous_secret.as_ref() == Some(&r.secret.0) {
                c.error(
                    &format!("{key}.previous_secret"),
                    "`previous_secret` is the same as `secret` (during a rotation it holds the old one)",
                );
            }
            WebhookConfig {
                url,
                secret: r.secret.0,
                previous_secret,
                events,
            }
        })
        .collect()
}

fn hooks(c: &mut Checker<'_>, raw: Vec<RawHook>, policy: &WebhookAddressPolicy) -> Vec<HookConfig> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = format!("issuer.hooks[{i}]");
            let event = r.event.0;
            let url = r.url.0.0;
            if !seen.insert((event, url.to_string())) {
                c.error(
                    &format!("{key}.url"),
                    format!("hook `{url}` is configured twice for {}", event.as_str()),
                );
            }
            if let Some(what) = url.host().and_then(|h| policy.refuses_host(h)) {
                c.error(
                    &format!("{key}.url"),
                    format!("hook `{url}` points at a {what} address, which `issuer.webhook_address_policy` refuses (set `allow_private: true` for development, or `allow` the range)"),
                );
            }
            let timeout = r.timeout.map(|d| d.0).unwrap_or(DEFAULT_HOOK_TIMEOUT);
            if timeout.is_zero() || timeout > MAX_HOOK_TIMEOUT {
                c.error(
                    &format!("{key}.timeout"),
                    "`timeout` must be longer than zero and at most 30s",
                );
            }
            HookConfig {
                event,
                url,
                secret: r.secret.0,
                timeout,
                on_failure: r.on_failure.map(|f| f.0).unwrap_or_default(),
            }
        })
        .collect()
}

/// Whether an `http(s)://host[:port]…` URL names a loopback host (`localhost`,
/// `127.0.0.0/8`, `[::1]`).
fn loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
