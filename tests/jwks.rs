//! The spec's "JWKS" section end to end: the three remote and file key sources,
//! readiness, rotation, the single-flight and rate-limited unknown-`kid` refetch,
//! outages (stale keys keep serving), key removal voiding cached verdicts, the
//! Cache-Control driven background refresh, and the metrics that report on it all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::*;
use tokio::task::JoinSet;

const ROUTES: &str = "  - path: /*\n    upstream: api\n";
const FETCHES: &str = "portcullis_jwks_fetches_total{issuer=\"main\"}";
const FAILURES: &str = "portcullis_jwks_fetch_failures_total{issuer=\"main\"}";
const CACHE_HITS: &str = "portcullis_verification_cache_hits_total";
const CACHE_MISSES: &str = "portcullis_verification_cache_misses_total";

fn jwks_uri(jwks: &JwksServer) -> String {
    format!("jwks_uri: \"{}\"", jwks.url())
}

/// `key` published under another `kid`.
fn with_kid(key: &TestKey, kid: &str) -> TestKey {
    let mut k = key.clone();
    k.kid = kid.to_owned();
    k.jwk["kid"] = json!(kid);
    k
}

/// A valid token for `key` that no earlier request has sent (so no cache holds it).
fn fresh_token(key: &TestKey, sub: &str) -> String {
    token(key, &claims_with(json!({ "sub": sub })))
}

async fn status(gw: &Gateway, token: &str) -> StatusCode {
    get(&gw.url("/r"), Some(token)).await.0
}

async fn assert_temporarily_unavailable(gw: &Gateway, token: &str) {
    let (status, headers, body) = get(&gw.url("/r"), Some(token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(error_code(&body), "temporarily_unavailable");
}

async fn assert_invalid_token(gw: &Gateway, token: &str) {
    let (status, headers, body) = get(&gw.url("/r"), Some(token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

// === key sources ===

#[tokio::test]
async fn jwks_uri_keys_verify_tokens() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    assert_eq!(status(&gw, &token(&key, &claims())).await, 200);
    assert_eq!(jwks.fetches(), 1);
    assert_eq!(gw.metric(FETCHES).await, 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn discovery_url_leads_to_the_key_set() {
    let key = ec();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let source = format!("discovery_url: \"{}\"", jwks.discovery_url());
    let gw = Gateway::start(&config_with_keys(&source, &up, ROUTES)).await;
    assert_eq!(status(&gw, &token(&key, &claims())).await, 200);
    // The key set came from the `jwks_uri` the discovery document named.
    assert_eq!(jwks.fetches(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_discovery_issuer("https://impostor.test");
    let up = Upstream::start().await;
    let source = format!("discovery_url: \"{}\"", jwks.discovery_url());
    let gw = Gateway::start_unready(&config_with_keys(&source, &up, ROUTES)).await;
    eventually("the start-up discovery to fail", || async {
        gw.metric(FAILURES).await >= 1.0
    })
    .await;
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);

    // Its tokens get 503, an on-demand fetch is refused the same way, and the
    // impostor's key set is never even fetched.
    assert_temporarily_unavailable(&gw, &token(&key, &claims())).await;
    assert_eq!(jwks.fetches(), 0);
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn discovery_naming_a_plain_http_key_set_elsewhere_is_refused() {
    // Anyone between the gateway and that host could hand it their own keys.
    // The address is this very server written as IPv4-mapped IPv6, which is
    // not spelled as loopback: were the rule not applied to the discovered
    // URL, the fetch would succeed and the token pass.
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_discovery_jwks_uri(&format!(
        "http://[::ffff:127.0.0.1]:{}/jwks.json",
        jwks.addr.port()
    ));
    let up = Upstream::start().await;
    let source = format!("discovery_url: \"{}\"", jwks.discovery_url());
    let gw = Gateway::start_unready(&config_with_keys(&source, &up, ROUTES)).await;
    eventually("the start-up discovery to fail", || async {
        gw.metric(FAILURES).await >= 1.0
    })
    .await;
    assert_temporarily_unavailable(&gw, &token(&key, &claims())).await;
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(jwks.fetches(), 0);
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn jwks_file_keys_verify_and_rotate() {
    let a = rsa();
    let b = ec();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), jwks(&[&a])).unwrap();
    let up = Upstream::start().await;
    let source = format!("jwks_file: \"{}\"", file.path().display());
    let gw = Gateway::start(&config_with_keys(&source, &up, ROUTES)).await;
    assert_eq!(status(&gw, &token(&a, &claims())).await, 200);

    // A new kid rereads the file.
    std::fs::write(file.path(), jwks(&[&a, &b])).unwrap();
    assert_eq!(status(&gw, &token(&b, &claims())).await, 200);
    assert_eq!(gw.metric(FETCHES).await, 2.0);
    gw.shutdown().await;
}

// === readiness ===

#[tokio::test]
async fn not_ready_until_keys_load_then_a_request_fetches_them() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_status(500);
    let up = Upstream::start().await;
    let gw = Gateway::start_unready(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    eventually("the start-up fetch to fail", || async {
        gw.metric(FAILURES).await >= 1.0
    })
    .await;
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = get(&format!("http://{}/healthz", gw.admin), None).await;
    assert_eq!(status, 200, "healthz is about the process, not the keys");

    // The issuer recovers: the next token fetches the keys on demand.
    jwks.set_status(200);
    let (status, _, body) = get(&gw.url("/r"), Some(&token(&key, &claims()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.readyz().await, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn tokens_get_503_while_the_issuer_has_no_keys() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_status(503);
    let up = Upstream::start().await;
    let gw = Gateway::start_unready(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    assert_temporarily_unavailable(&gw, &token(&key, &claims())).await;
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.count(), 0);
    // A route's auth needs no keys to refuse a request without a token.
    assert_eq!(get(&gw.url("/r"), None).await.0, 401);
    gw.shutdown().await;
}

// === rotation and the unknown-kid refetch ===

#[tokio::test]
async fn a_new_kid_triggers_one_refetch_and_verifies() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let ta = token(&a, &claims());
    assert_eq!(status(&gw, &ta).await, 200);
    // Neither the start-up fetch nor a scheduled refresh counts against the
    // unknown-kid budget.
    gw.issuer(0).refresh().await.unwrap();
    let before = jwks.fetches();

    jwks.set_keys(&[&a, &b]);
    assert_eq!(status(&gw, &token(&b, &claims())).await, 200);
    assert_eq!(jwks.fetches(), before + 1);
    // The old key still verifies, without any further fetch.
    assert_eq!(status(&gw, &ta).await, 200);
    assert_eq!(status(&gw, &fresh_token(&a, "user-2")).await, 200);
    assert_eq!(jwks.fetches(), before + 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_kid_refetches_are_single_flight_and_rate_limited() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let before = jwks.fetches();

    let mut requests = JoinSet::new();
    for i in 0..50 {
        let t = token(&with_kid(&b, &format!("unknown-{i}")), &claims());
        let url = gw.url("/r");
        requests.spawn(async move { get(&url, Some(&t)).await });
    }
    while let Some(res) = requests.join_next().await {
        let (status, _, body) = res.unwrap();
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), "invalid_token");
    }
    // The first unknown kid fetched; the other 49 shared it or were rate-limited.
    assert_eq!(jwks.fetches(), before + 1);

    // Within the 30 s window even a kid the issuer now publishes is not refetched.
    let late = with_kid(&b, "late");
    jwks.set_keys(&[&a, &late]);
    assert_invalid_token(&gw, &token(&late, &claims())).await;
    assert_eq!(jwks.fetches(), before + 1);
    assert_eq!(
        gw.metric("portcullis_rejections_total{reason=\"unknown_kid\"}")
            .await,
        51.0
    );
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

// === outages and removal ===

#[tokio::test]
async fn during_an_outage_the_last_good_keys_keep_serving() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let t = token(&key, &claims());
    assert_eq!(status(&gw, &t).await, 200);

    jwks.set_status(500);
    // A scheduled refresh fails…
    assert!(gw.issuer(0).refresh().await.is_err());
    // …and so does an unknown-kid refetch.
    assert_invalid_token(&gw, &token(&with_kid(&key, "other"), &claims())).await;
    assert_eq!(gw.metric(FAILURES).await, 2.0);
    assert_eq!(gw.metric(FETCHES).await, 3.0);

    // The stale set still verifies cached and never-seen tokens alike.
    assert_eq!(status(&gw, &t).await, 200);
    let misses = gw.metric(CACHE_MISSES).await;
    assert_eq!(status(&gw, &fresh_token(&key, "user-2")).await, 200);
    assert_eq!(gw.metric(CACHE_MISSES).await, misses + 1.0);
    assert_eq!(gw.readyz().await, StatusCode::OK);

    // A document that is not a key set is a failure too, and changes nothing.
    jwks.set_status(200);
    jwks.set_body("{\"not\": \"keys\"}");
    assert!(gw.issuer(0).refresh().await.is_err());
    assert_eq!(gw.metric(FAILURES).await, 3.0);
    assert_eq!(status(&gw, &fresh_token(&key, "user-3")).await, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_removed_key_stops_verifying_at_once_cached_tokens_included() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a, &b]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let ta = token(&a, &claims());
    let tb = token(&b, &claims());
    assert_eq!(status(&gw, &tb).await, 200);
    let hits = gw.metric(CACHE_HITS).await;
    assert_eq!(status(&gw, &tb).await, 200);
    assert_eq!(
        gw.metric(CACHE_HITS).await,
        hits + 1.0,
        "the second use is served from the cache"
    );
    assert_eq!(status(&gw, &ta).await, 200);

    // The issuer drops key B; the next refresh learns of it.
    jwks.set_keys(&[&a]);
    gw.issuer(0).refresh().await.unwrap();
    assert_invalid_token(&gw, &tb).await;
    assert_invalid_token(&gw, &fresh_token(&b, "user-2")).await;
    assert_eq!(status(&gw, &ta).await, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_removed_key_learned_through_an_unknown_kid_refetch_stops_verifying() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a, &b]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let tb = token(&b, &claims());
    assert_eq!(status(&gw, &tb).await, 200);

    jwks.set_keys(&[&a]);
    assert_invalid_token(&gw, &token(&with_kid(&a, "rotated"), &claims())).await;
    assert_invalid_token(&gw, &tb).await;
    assert_eq!(status(&gw, &token(&a, &claims())).await, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_signature_verdicts_are_dropped_when_the_keys_change() {
    let a = rsa();
    // Key B's material under A's kid: verified against A, its signature is bad.
    let b_as_a = key("rsa-b", jsonwebtoken::Algorithm::RS256, &a.kid);
    let jwks = JwksServer::start(&[&a]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let forged = token(&b_as_a, &claims());
    assert_invalid_token(&gw, &forged).await;
    let misses = gw.metric(CACHE_MISSES).await;
    assert_invalid_token(&gw, &forged).await;
    assert_eq!(
        gw.metric(CACHE_MISSES).await,
        misses,
        "the replay is answered from the rejection cache"
    );
    assert_eq!(
        gw.metric("portcullis_rejections_total{reason=\"bad_signature\"}")
            .await,
        2.0
    );

    // The issuer rotates A's kid to B's material; an unknown kid brings the new set.
    jwks.set_keys(&[&b_as_a]);
    assert_invalid_token(&gw, &token(&with_kid(&a, "nope"), &claims())).await;
    let (status, _, body) = get(&gw.url("/r"), Some(&forged)).await;
    assert_eq!(
        status, 200,
        "the cached rejection outlived the key set: {body}"
    );
    gw.shutdown().await;
}

// === background refresh ===

#[tokio::test]
async fn refresh_interval_follows_cache_control_within_bounds() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let issuer = gw.issuer(0);
    let cases = [
        (Some("max-age=120"), 120),
        (Some("public, max-age=7200, must-revalidate"), 7200),
        (Some("max-age=5"), 60),
        (Some("max-age=0"), 60),
        (Some("max-age=999999"), 24 * 3600),
        (Some("no-cache"), 600),
        (None, 600),
    ];
    for (header, secs) in cases {
        jwks.set_cache_control(header);
        let asked = issuer.refresh().await.unwrap();
        assert_eq!(asked, Duration::from_secs(secs), "{header:?}");
    }
    gw.shutdown().await;
}

/// Yields to the runtime until `condition` holds, without letting paused time
/// auto-advance (the task is always runnable); wall-clock bounded.
async fn spin_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Lets every task that can run, run (paused time stays where it is).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn background_refresh_runs_when_max_age_elapses() {
    let a = rsa();
    let b = ec();
    let c = key("rsa-b", jsonwebtoken::Algorithm::RS256, "rsa-c");
    let jwks = JwksServer::start(&[&a]).await;
    jwks.set_cache_control(Some("max-age=120"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let issuer = gw.issuer(0);
    let verifier = gw.running().snapshot().verifier.clone();
    assert_eq!(jwks.fetches(), 1);

    // From here on the refresher's timers run on paused time; the checks below
    // avoid network round trips of their own so that time only moves when told.
    tokio::time::pause();
    jwks.set_keys(&[&a, &b]);
    jwks.set_cache_control(Some("max-age=300"));
    let generation = issuer.generation();
    tokio::time::advance(Duration::from_secs(115)).await;
    settle().await;
    assert_eq!(jwks.fetches(), 1, "refreshed before max-age elapsed");

    tokio::time::advance(Duration::from_secs(10)).await;
    spin_until("the scheduled refresh", || {
        issuer.generation() != generation
    })
    .await;
    assert_eq!(jwks.fetches(), 2);
    // The new key verifies without an unknown-kid refetch.
    verifier.verify(&token(&b, &claims())).await.unwrap();
    assert_eq!(jwks.fetches(), 2);

    // The next refresh follows the new max-age (300 s).
    jwks.set_keys(&[&a, &b, &c]);
    let generation = issuer.generation();
    tokio::time::advance(Duration::from_secs(290)).await;
    settle().await;
    assert_eq!(
        jwks.fetches(),
        2,
        "refreshed before the new max-age elapsed"
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    spin_until("the second refresh", || issuer.generation() != generation).await;
    assert_eq!(jwks.fetches(), 3);
    verifier.verify(&token(&c, &claims())).await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failed_background_refresh_is_retried_and_counted() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a]).await;
    jwks.set_cache_control(Some("max-age=60"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let issuer = gw.issuer(0);
    let verifier = gw.running().snapshot().verifier.clone();

    tokio::time::pause();
    jwks.set_status(500);
    tokio::time::advance(Duration::from_secs(61)).await;
    spin_until("the failing refresh", || jwks.fetches() == 2).await;
    // That fetch has been answered 500 (the server decides as it counts), so the
    // issuer can recover now. Stale keys keep serving meanwhile.
    jwks.set_status(200);
    jwks.set_keys(&[&a, &b]);
    let generation = issuer.generation();
    verifier.verify(&token(&a, &claims())).await.unwrap();

    // A retry comes within seconds (back-off), not after another full max-age.
    let mut waited = 0;
    while issuer.generation() == generation {
        assert!(
            waited < 30,
            "no retry within {waited} s of a failed refresh"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        waited += 1;
    }
    verifier.verify(&token(&b, &claims())).await.unwrap();

    tokio::time::resume();
    let failures = gw.metric(FAILURES).await;
    assert!(failures >= 1.0, "the failed refresh was not counted");
    assert_eq!(gw.metric(FETCHES).await, failures + 2.0);
    assert_eq!(jwks.fetches() as f64, failures + 2.0);
    gw.shutdown().await;
}

/// Runs `verify` to completion on paused time without letting the clock move.
async fn verify_now(
    verifier: &std::sync::Arc<portcullis::auth::Verifier>,
    token: String,
) -> Result<(), portcullis::auth::TokenError> {
    let verifier = verifier.clone();
    let task = tokio::spawn(async move { verifier.verify(&token).await.map(|_| ()) });
    spin_until("the verification", || task.is_finished()).await;
    task.await.unwrap()
}

#[tokio::test]
async fn the_unknown_kid_window_reopens_after_30_seconds() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let verifier = gw.running().snapshot().verifier.clone();

    tokio::time::pause();
    let unknown = token(&with_kid(&b, "unknown"), &claims());
    let err = verify_now(&verifier, unknown).await.unwrap_err();
    assert_eq!(err, portcullis::auth::TokenError::UnknownKey);
    assert_eq!(jwks.fetches(), 2);

    jwks.set_keys(&[&a, &b]);
    tokio::time::advance(Duration::from_secs(29)).await;
    let err = verify_now(&verifier, token(&b, &claims()))
        .await
        .unwrap_err();
    assert_eq!(err, portcullis::auth::TokenError::UnknownKey);
    assert_eq!(jwks.fetches(), 2, "refetched within the 30 s window");

    tokio::time::advance(Duration::from_secs(2)).await;
    verify_now(&verifier, token(&b, &claims())).await.unwrap();
    assert_eq!(jwks.fetches(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn keys_stale_for_more_than_24_hours_stop_serving() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_cache_control(Some("max-age=3600"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let issuer = gw.issuer(0);
    let verifier = gw.running().snapshot().verifier.clone();

    tokio::time::pause();
    jwks.set_status(500);
    // 23 h without a successful refresh: the last good set still serves.
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    spin_until("the failing refresh", || jwks.fetches() == 2).await;
    settle().await;
    assert!(issuer.is_ready());
    verify_now(&verifier, token(&key, &claims())).await.unwrap();

    // The retries keep failing; past 24 h the set is dropped.
    let mut steps = 0;
    while issuer.is_ready() {
        assert!(steps < 30, "keys still served 24 h after the last success");
        tokio::time::advance(Duration::from_secs(600)).await;
        settle().await;
        steps += 1;
    }
    assert!(steps > 1, "dropped before 24 h had passed");
    tokio::time::resume();
    assert_eq!(gw.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_temporarily_unavailable(&gw, &fresh_token(&key, "user-2")).await;

    // The issuer comes back: keys are fetched again and tokens verify.
    jwks.set_status(200);
    eventually("the keys to return", || async {
        status(&gw, &fresh_token(&key, "user-3")).await == 200
    })
    .await;
    assert_eq!(gw.readyz().await, StatusCode::OK);
    gw.shutdown().await;
}

// === metrics ===

#[tokio::test]
async fn metrics_report_fetches_caches_requests_rejections_and_latency() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let routes = "  - path: /public/*\n    upstream: api\n    auth: anonymous\n  - path: /*\n    upstream: api\n";
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, routes)).await;
    let t = token(&key, &claims());
    assert_eq!(status(&gw, &t).await, 200);
    assert_eq!(status(&gw, &t).await, 200);
    assert_eq!(get(&gw.url("/public/x"), None).await.0, 200);
    assert_eq!(get(&gw.url("/r"), None).await.0, 401);
    assert_eq!(status(&gw, "not-a-jwt").await, 401);

    let text = gw.metrics().await;
    let value = |series: &str| {
        metric_value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value(FETCHES), 1.0);
    assert_eq!(value(CACHE_HITS), 1.0);
    assert_eq!(value(CACHE_MISSES), 2.0);
    assert_eq!(
        value("portcullis_requests_total{route=\"/*\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value("portcullis_requests_total{route=\"/public/*\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_requests_total{route=\"/*\",status=\"401\"}"),
        2.0
    );
    assert_eq!(
        value("portcullis_rejections_total{reason=\"no_token\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_rejections_total{reason=\"malformed_token\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_upstream_duration_seconds_count{upstream=\"api\"}"),
        3.0
    );
    assert_eq!(
        value("portcullis_upstream_duration_seconds_bucket{le=\"+Inf\",upstream=\"api\"}"),
        3.0
    );
    assert!(value("portcullis_upstream_duration_seconds_sum{upstream=\"api\"}") >= 0.0);
    // Nothing failed yet, but the series is there (at zero) for `increase()`.
    assert_eq!(value(FAILURES), 0.0);

    // The Prometheus text format unless OpenMetrics is asked for.
    let scrape = |accept: Option<&'static str>| {
        let mut req = Request::get(format!("http://{}/metrics", gw.admin));
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        send(req.body(Full::new(Bytes::new())).unwrap())
    };
    let (_, headers, plain) = scrape(None).await;
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        plain.contains("# TYPE portcullis_requests_total counter"),
        "{plain}"
    );
    assert!(!plain.contains("# EOF"));
    let (_, headers, open) = scrape(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ))
    .await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.contains("# TYPE portcullis_requests counter") && open.ends_with("# EOF\n"));
    let (_, headers, _) = scrape(Some("application/openmetrics-text;q=0, text/plain")).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    jwks.set_status(500);
    assert!(gw.issuer(0).refresh().await.is_err());
    assert_eq!(gw.metric(FAILURES).await, 1.0);
    gw.shutdown().await;
}

// === a slow issuer ===

/// An issuer that does not answer: every request waits for the one fetch in
/// flight (never starting one of its own), for a bounded time, then gets 503 with
/// `Retry-After`; once the issuer answers, the keys serve without another fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_wait_for_the_one_fetch_in_flight_then_get_503() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    jwks.hold();
    let up = Upstream::start().await;
    let gw = Gateway::start_unready(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let mut requests = JoinSet::new();
    for i in 0..30 {
        let t = fresh_token(&key, &format!("user-{i}"));
        let url = gw.url("/r");
        requests.spawn(async move { get(&url, Some(&t)).await });
    }
    while let Some(res) = requests.join_next().await {
        let (status, headers, body) = res.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(headers.contains_key("retry-after"));
        assert_eq!(error_code(&body), "temporarily_unavailable");
    }
    // Thirty requests, one fetch (the start-up fetch they all joined).
    assert_eq!(jwks.fetches(), 1);
    assert_eq!(up.count(), 0);

    jwks.release();
    eventually("the keys to arrive", || async {
        gw.readyz().await == StatusCode::OK
    })
    .await;
    assert_eq!(status(&gw, &fresh_token(&key, "after")).await, 200);
    assert_eq!(jwks.fetches(), 1);
    assert_eq!(gw.metric(FETCHES).await, 1.0);
    gw.shutdown().await;
}

/// The same for an unknown `kid` while the issuer is slow: one refetch, joined
/// by everyone, 503 (try again) rather than 401 (your token is bad) while it
/// runs, and the new key serves once it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_unknown_kid_refetch_is_shared_and_bounded() {
    let a = rsa();
    let b = ec();
    let jwks = JwksServer::start(&[&a]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_with_keys(&jwks_uri(&jwks), &up, ROUTES)).await;
    let before = jwks.fetches();
    jwks.set_keys(&[&a, &b]);
    jwks.hold();
    let mut requests = JoinSet::new();
    for i in 0..30 {
        let t = fresh_token(&b, &format!("user-{i}"));
        let url = gw.url("/r");
        requests.spawn(async move { get(&url, Some(&t)).await });
    }
    while let Some(res) = requests.join_next().await {
        let (status, headers, body) = res.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(headers.contains_key("retry-after"));
    }
    assert_eq!(jwks.fetches(), before + 1);
    // Tokens of known keys do not wait for it.
    assert_eq!(status(&gw, &fresh_token(&a, "known")).await, 200);

    jwks.release();
    eventually("the new key to arrive", || async {
        status(&gw, &fresh_token(&b, "later")).await == 200
    })
    .await;
    assert_eq!(jwks.fetches(), before + 1);
    gw.shutdown().await;
}

/// Fetch errors, which are logged, show the URL without its query or userinfo.
#[tokio::test]
async fn fetch_errors_never_show_the_query_of_a_key_url() {
    let up = Upstream::start().await;
    let closed = closed_port().await;
    let source = format!("jwks_uri: \"http://user:pw@{closed}/jwks.json?api_key=s3cret\"");
    let gw = Gateway::start_unready(&config_with_keys(&source, &up, ROUTES)).await;
    let err = gw
        .issuer(0)
        .refresh()
        .await
        .expect_err("nothing listens there");
    let shown = portcullis::telemetry::events::chain(&err);
    assert!(
        shown.contains(&format!("http://{closed}/jwks.json")),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw"),
        "{shown}"
    );
    gw.shutdown().await;
}
