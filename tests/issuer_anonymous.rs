//! Anonymous users end to end: the anonymous grant at the token endpoint
//! (tokens saying `"anonymous": true` for a new user whose `sub` survives
//! refresh), who may use it, its per-source throttle, and the purge of
//! anonymous users who outlived their refresh tokens across a restart. The
//! promotion and the anonymization of users through the admin API, with
//! their webhook events, are in `issuer_anonymous/users.rs`; the CLI's in
//! `issuer_anonymous/cli.rs`. The gateway runs on a manual clock; every case
//! runs on a temporary SQLite file and on a fresh PostgreSQL schema
//! (skipped, and said so, without one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use portcullis::clock::ManualClock;
use portcullis::server::Options;
use serde_json::Value;
use support::oauth::{enc, post};
use support::*;

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const GRANT: &str = "urn:portcullis:params:oauth:grant-type:anonymous";
const OPS: (&str, &str) = ("ops", "ops-secret-0123456789");
const RS: (&str, &str) = ("rs", "rs-secret-0123456789");
const PASSWORD: &str = "correct horse battery";

/// A gateway with the built-in issuer on a manual clock, and what it runs on.
struct Env {
    gw: Gateway,
    clock: Arc<ManualClock>,
    up: Upstream,
    yaml: String,
    /// Last, so that the schema is dropped after everything that uses it.
    db: TestDb,
}

/// The configuration: `mobile` may create anonymous users (and sign them in
/// later), `web` may not; `ops` holds the admin scope, `rs` introspects the
/// API's tokens. `hooks` is the YAML list under `issuer.webhooks` (may be
/// empty).
fn yaml(db: &TestDb, up: &Upstream, hooks: &str) -> String {
    let webhooks = match hooks.is_empty() {
        true => String::new(),
        false => format!("  webhooks:\n{hooks}"),
    };
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  webhook_address_policy: {{ allow_private: true }}  # receivers on 127.0.0.1
  signing_algs: [ES256, RS256]
  access_token_ttl: 15m
  refresh_token_ttl: 30d
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: mobile
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token, anonymous]
      scopes: {{ "{API}": [read:data, write:data] }}
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
    - client_id: ops
      client_secret: "{ops}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
    - client_id: rs
      client_secret: "{rs}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
      introspection: ["{API}"]
{webhooks}issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
    scopes: [read:data]
"#,
        db = db.url(),
        ops = OPS.1,
        rs = RS.1,
        up = up.url(),
    )
}

async fn env(db: TestDb) -> Env {
    env_with_hooks(db, "").await
}

async fn env_with_hooks(db: TestDb, hooks: &str) -> Env {
    let up = Upstream::start().await;
    let yaml = yaml(&db, &up, hooks);
    let clock = Arc::new(ManualClock::new(now()));
    let gw = start(&yaml, &clock).await;
    Env {
        gw,
        clock,
        up,
        yaml,
        db,
    }
}

async fn start(yaml: &str, clock: &Arc<ManualClock>) -> Gateway {
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    Gateway::start_with(yaml, options).await
}

impl Env {
    fn base(&self) -> String {
        self.gw.url("").trim_end_matches('/').to_owned()
    }

    /// The anonymous grant for `client_id` with `extra` form fields (each
    /// `&name=value`), from `from` (a loopback address) or the default:
    /// status, headers and JSON.
    async fn anonymous_from(
        &self,
        from: Option<std::net::IpAddr>,
        client_id: &str,
        extra: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let body = format!("grant_type={}&client_id={client_id}{extra}", enc(GRANT));
        let req = Request::post(self.gw.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, headers, text) = send_from(from, req).await;
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, headers, json)
    }

    async fn anonymous(&self, client_id: &str, extra: &str) -> (StatusCode, Value) {
        let (status, _, json) = self.anonymous_from(None, client_id, extra).await;
        (status, json)
    }

    /// A new anonymous user's tokens (asserted 200).
    async fn new_anonymous(&self) -> Value {
        let (status, body) = self.anonymous("mobile", "").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        support::oauth::refresh(&self.base(), "mobile", refresh_token).await
    }

    /// The number of users in the database.
    async fn users(&self) -> usize {
        let rows = self
            .db
            .rows("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM users", &["n"])
            .await;
        rows[0][0].parse().unwrap()
    }
}

fn sub_of(tokens: &Value) -> String {
    let claims = claims_of(tokens["access_token"].as_str().unwrap());
    claims["sub"].as_str().unwrap().to_owned()
}

async fn the_grant_issues_anonymous_tokens_with_a_stable_sub(db: TestDb) {
    let env = env(db).await;
    let (status, headers, body) = env.anonymous_from(None, "mobile", "&scope=read:data").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read:data");
    assert!(body.get("id_token").is_none(), "{body}");
    let access = body["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    let sub = claims["sub"].as_str().unwrap().to_owned();
    assert!(sub.starts_with("usr_"), "{claims}");
    assert_eq!(claims["anonymous"], true);
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["client_id"], "mobile");
    assert_eq!(claims["scope"], "read:data");
    assert_eq!(header_of(access)["typ"], "at+jwt");
    let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(first_refresh.len() >= 43, "256 bits: {first_refresh}");

    // The gateway takes the token like any other of the issuer's.
    let (status, _, text) = get(&env.gw.url("/api/items"), Some(access)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.up.last().headers["x-auth-subject"], sub.as_str());

    // A resource server learns that the user is anonymous.
    let info = support::oauth::introspect(&env.base(), RS, access).await;
    assert_eq!(
        (info["active"].clone(), info["anonymous"].clone()),
        (true.into(), true.into())
    );

    // Refreshing keeps the sub and rotates the refresh token.
    env.clock.advance(60);
    let (status, refreshed) = env.refresh(&first_refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(sub_of(&refreshed), sub);
    assert_eq!(
        claims_of(refreshed["access_token"].as_str().unwrap())["anonymous"],
        true
    );
    let second_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);

    // Reuse detection holds as for any family: the replay revokes it.
    let (status, body) = env.refresh(&first_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = env.refresh(&second_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Each call makes a new user; without `scope`, every scope the client may
    // obtain.
    let other = env.new_anonymous().await;
    assert_ne!(sub_of(&other), sub);
    assert_eq!(other["scope"], "read:data write:data");
    assert_eq!(env.users().await, 2);

    // Discovery says the grant exists, and the claim.
    let (_, _, doc) = get(&env.gw.url("/.well-known/openid-configuration"), None).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == GRANT),
        "{doc}"
    );
    assert!(
        doc["claims_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "anonymous")
    );
    env.gw.shutdown().await;
}

async fn only_clients_allowed_the_grant_get_it(db: TestDb) {
    let env = env(db).await;
    // A public client without the grant.
    let (status, body) = env.anonymous("web", "").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client")),
        "{body}"
    );
    // A confidential client, authenticated, without the grant.
    let form = format!("grant_type={}", enc(GRANT));
    let (status, body) = post(&env.base(), "/oauth/token", Some(RS), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client")),
        "{body}"
    );
    // An unknown client, and none at all.
    let (status, body) = env.anonymous("nobody", "").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = post(&env.base(), "/oauth/token", None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
    // The allowed client, for an API it has no scopes on (the admin API
    // among them), or with scopes it may not have.
    let admin = format!("&resource={}", enc(ADMIN_API));
    let (status, body) = env.anonymous("mobile", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = env.anonymous("mobile", "&scope=portcullis:admin").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{body}"
    );
    // None of these made a user.
    assert_eq!(env.users().await, 0);
    env.gw.shutdown().await;
}

async fn creations_are_slowed_down_per_source(db: TestDb) {
    let env = env(db).await;
    let here = loopback(11);
    for n in 0..20 {
        let (status, _, body) = env.anonymous_from(here, "mobile", "").await;
        assert_eq!(status, 200, "creation {n}: {body}");
    }
    // The clock stands still: the twentieth creation set a one-second wait.
    let (status, headers, body) = env.anonymous_from(here, "mobile", "").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("slow_down")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(env.users().await, 20);
    // Another address is not slowed down; this one is, once the wait is over,
    // allowed one more, which doubles the wait.
    let (status, _, body) = env.anonymous_from(loopback(12), "mobile", "").await;
    assert_eq!(status, 200, "{body}");
    env.clock.advance(1);
    let (status, _, body) = env.anonymous_from(here, "mobile", "").await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, _) = env.anonymous_from(here, "mobile", "").await;
    assert_eq!(
        (status, &headers["retry-after"]),
        (StatusCode::TOO_MANY_REQUESTS, &"2".parse().unwrap())
    );
    env.gw.shutdown().await;
}

/// An anonymous user lasts as long as their refresh-token family: once it
/// expired and was purged, the next purge (here: the one at start) removes
/// them too, with a `user.deleted` event. A promoted user, and a user whose
/// family lives on, stay; a restart loses nothing else.
async fn anonymous_users_leave_with_their_refresh_tokens(db: TestDb) {
    let env = env(db).await;
    let stale = env.new_anonymous().await;
    let promoted = env.new_anonymous().await;
    let (status, _, user) = users::promote(&env, &sub_of(&promoted), "pat@example.test").await;
    assert_eq!(status, 200, "{user}");
    env.gw.shutdown().await;

    // 30 days (the family's end) and the purge's day of retention later,
    // one more anonymous user arrives before the restart.
    env.clock.advance(31 * 86400 + 60);
    let gw = start(&env.yaml, &env.clock).await;
    let env = Env { gw, ..env };
    let fresh = env.new_anonymous().await;
    let gone = sub_of(&stale);
    let ids = || async {
        env.db
            .rows("SELECT id FROM users ORDER BY id", &["id"])
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>()
    };
    eventually("the purge of the stale anonymous user", || async {
        !ids().await.contains(&gone)
    })
    .await;
    let left = ids().await;
    assert!(
        left.contains(&sub_of(&promoted)) && left.contains(&sub_of(&fresh)),
        "{left:?}"
    );
    let deleted = env
        .db
        .rows(
            "SELECT data FROM event_outbox WHERE event = 'user.deleted'",
            &["data"],
        )
        .await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    let data: Value = serde_json::from_str(&deleted[0][0]).unwrap();
    assert_eq!(
        (data["id"].as_str(), data["anonymous"].as_bool()),
        (Some(gone.as_str()), Some(true))
    );

    // The promoted user signs in after the restart; the fresh one refreshes.
    let tokens = support::oauth::code_flow(
        &env.base(),
        "mobile",
        CALLBACK,
        "openid read:data",
        ("pat@example.test", PASSWORD),
    )
    .await;
    assert_eq!(sub_of(&tokens), sub_of(&promoted));
    let (status, body) = env.refresh(fresh["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    env.gw.shutdown().await;
}

on_both_databases!(
    the_grant_issues_anonymous_tokens_with_a_stable_sub,
    only_clients_allowed_the_grant_get_it,
    creations_are_slowed_down_per_source,
    anonymous_users_leave_with_their_refresh_tokens,
);

#[path = "issuer_anonymous/cli.rs"]
mod cli;
#[path = "issuer_anonymous/users.rs"]
mod users;
