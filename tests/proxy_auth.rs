//! The spec's "Tokens", "Decisions and responses (RFC 6750)" and the identity part
//! of "Forwarding", end to end: every row of the decision table, every token
//! rejection rule with the attack token built for real, route policies and auth
//! modes, identity headers and their anti-spoofing, and the verified-token cache.
//!
//! Not here: JWKS refresh and rotation (`jwks.rs`), path normalisation (`paths.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis::clock::ManualClock;
use serde_json::{Value, json};
use support::*;

const OTHER_ISSUER: &str = "https://other.test";
const IDENTITY_HEADERS: [&str; 5] = [
    "x-auth-subject",
    "x-auth-issuer",
    "x-auth-org",
    "x-auth-scopes",
    "x-auth-roles",
];

// === configuration ===

/// One `issuers:` entry for `jwks`, with `extra` lines (indented by four).
fn issuer_yaml(id: &str, iss: &str, jwks: &JwksServer, extra: &str) -> String {
    format!(
        "  - id: {id}\n    issuer: \"{iss}\"\n    jwks_uri: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n{extra}",
        jwks.url()
    )
}

/// A whole configuration: `issuers` and `routes` blocks, then `extra` top-level YAML.
fn gateway_yaml(issuers: &str, up: &Upstream, routes: &str, extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuers:
{issuers}upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
{routes}{extra}"#,
        up = up.url()
    )
}

/// Routes for the decision table and the policies: one per requirement.
const POLICY_ROUTES: &str = r#"  - path: /orgs/{org}/items/*
    methods: [GET, HEAD]
    upstream: api
    scopes: [read:data]
    org_param: org
  - path: /scoped/*
    upstream: api
    scopes: [read:data, write:data]
  - path: /any/*
    upstream: api
    any_scopes: [admin, support]
  - path: /admin/*
    upstream: api
    roles: [admin]
  - path: /main-only/*
    upstream: api
    issuers: [main]
  - path: /other-only/*
    upstream: api
    issuers: [other]
  - path: /optional/*
    upstream: api
    auth: optional
  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /no-forward/*
    upstream: api
    forward_token: false
  - path: /open/*
    upstream: api
"#;

/// Two issuers (`main`, and `other` whose org and roles live in `tenant` and
/// `groups`) in front of one recording upstream, with [`POLICY_ROUTES`].
struct Policies {
    main: TestKey,
    other: TestKey,
    up: Upstream,
    gw: Gateway,
    _jwks: (JwksServer, JwksServer),
}

impl Policies {
    async fn start() -> Policies {
        let main = rsa();
        let other = key("rsa-b", Algorithm::RS256, "other-1");
        let (main_jwks, other_jwks) = (
            JwksServer::start(&[&main]).await,
            JwksServer::start(&[&other]).await,
        );
        let up = Upstream::start().await;
        let issuers = issuer_yaml("main", ISSUER, &main_jwks, "")
            + &issuer_yaml(
                "other",
                OTHER_ISSUER,
                &other_jwks,
                "    org_claim: tenant\n    roles_claim: groups\n",
            );
        let gw = Gateway::start(&gateway_yaml(&issuers, &up, POLICY_ROUTES, "")).await;
        Policies {
            main,
            other,
            up,
            gw,
            _jwks: (main_jwks, other_jwks),
        }
    }

    /// A `main` token: [`claims`] with `changes`.
    fn main_token(&self, changes: Value) -> String {
        token(&self.main, &claims_with(changes))
    }

    /// An `other` token: [`claims`] with its `iss`, then `changes`.
    fn other_token(&self, changes: Value) -> String {
        let claims = merge(claims_with(json!({ "iss": OTHER_ISSUER })), changes);
        token(&self.other, &claims)
    }
}

// === tokens ===

/// `base` with `changes` applied (`null` removes a claim).
fn merge(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// Valid claims at token time `t` (the manual clock's).
fn claims_at(t: i64, changes: Value) -> Value {
    let base = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": t,
        "exp": t + 3600,
        "scope": "read:data write:data",
        "org_id": "org-1",
    });
    merge(base, changes)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with any header and any signature text (for `alg: none`).
fn unsigned(header: Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(&header), b64(claims))
}

fn fixture_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The classic confusion attack: HS256 keyed with the issuer's RSA public key PEM.
fn hs256_with_public_pem(header: Value, claims: &Value) -> String {
    let pem = std::fs::read(fixture_path("rsa.pub.pem")).expect("rsa.pub.pem");
    let hmac = TestKey {
        kid: String::new(),
        alg: Algorithm::HS256,
        enc: EncodingKey::from_secret(&pem),
        jwk: Value::Null,
    };
    token_with_header(&hmac, &header, claims)
}

/// Runs `openssl` with `input` on stdin; `None` when it is not installed.
fn openssl(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// The RSA-1024 fixture as a JWK, and an RS256 signer for it. aws-lc refuses to
/// sign with keys under 2048 bits, so the signature comes from `openssl`.
fn rsa_1024(kid: &str) -> Option<(Value, impl Fn(Value, &Value) -> String)> {
    let path = fixture_path("rsa-1024.pem");
    let modulus = openssl(&["rsa", "-in", &path, "-noout", "-modulus"], b"")?;
    let hex = String::from_utf8(modulus).ok()?;
    let hex = hex.trim().strip_prefix("Modulus=")?;
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB",
    });
    let sign = move |header: Value, claims: &Value| {
        let input = format!("{}.{}", b64(&header), b64(claims));
        let sig =
            openssl(&["dgst", "-sha256", "-sign", &path], input.as_bytes()).expect("openssl signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    Some((jwk, sign))
}

// === requests and assertions ===

/// One answer from the gateway.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

async fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, headers, body) = send(req.body(Full::new(Bytes::new())).unwrap()).await;
    Answer {
        status: status.as_u16(),
        headers,
        body,
    }
}

/// GET `path` with `Authorization: Bearer <token>`.
async fn with_token(gw: &Gateway, path: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    call(gw, "GET", path, &[("authorization", &auth)]).await
}

/// The value of a Prometheus sample (0 when absent).
async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A refusal with `status` and JSON error `code`, carrying `X-Request-Id` and no
/// trace of `token` in its body or headers.
#[track_caller]
fn assert_refused(a: &Answer, status: u16, code: &str, token: Option<&str>, case: &str) {
    assert_eq!(a.status, status, "{case}: {}", a.body);
    assert!(
        a.headers.contains_key("x-request-id"),
        "{case}: no X-Request-Id"
    );
    let body: Value =
        serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("{case}: not JSON: {}", a.body));
    assert_eq!(body["error"], code, "{case}: {}", a.body);
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(!description.is_empty(), "{case}: {}", a.body);
    for part in token.into_iter().flat_map(|t| t.split('.')) {
        if part.len() < 8 {
            continue;
        }
        assert!(!a.body.contains(part), "{case}: the body echoes the token");
        for v in a.headers.values() {
            let v = String::from_utf8_lossy(v.as_bytes());
            assert!(!v.contains(part), "{case}: a header echoes the token");
        }
    }
}

/// 401 `invalid_token` with the RFC 6750 challenge.
#[track_caller]
fn assert_invalid_token(a: &Answer, token: &str, case: &str) {
    assert_refused(a, 401, "invalid_token", Some(token), case);
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    let prefix = r#"Bearer realm="portcullis", error="invalid_token", error_description=""#;
    assert!(
        challenge.starts_with(prefix)
            && challenge.ends_with('"')
            && challenge.len() > prefix.len() + 1,
        "{case}: {challenge}"
    );
}

/// 400 `invalid_request` with its challenge.
#[track_caller]
fn assert_invalid_request(a: &Answer, case: &str) {
    assert_refused(a, 400, "invalid_request", None, case);
    assert_eq!(
        a.headers["www-authenticate"], r#"Bearer error="invalid_request""#,
        "{case}"
    );
}

/// 403 `forbidden`, with no challenge.
#[track_caller]
fn assert_forbidden(a: &Answer, case: &str) {
    assert_refused(a, 403, "forbidden", None, case);
    assert!(!a.headers.contains_key("www-authenticate"), "{case}");
}

#[track_caller]
fn assert_passed(a: &Answer, case: &str) {
    assert_eq!(a.status, 200, "{case}: {}", a.body);
    assert!(
        a.headers.contains_key("x-request-id"),
        "{case}: no X-Request-Id"
    );
    assert_eq!(a.headers["x-upstream"], "yes", "{case}");
}

/// The value of `name` the upstream last received, if any.
fn upstream_header(up: &Upstream, name: &str) -> Option<String> {
    up.last()
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

// === the decision table ===

#[tokio::test]
async fn no_token_and_invalid_token_are_401_with_the_right_challenge() {
    let p = Policies::start().await;

    let a = call(&p.gw, "GET", "/open/x", &[("x-request-id", "client-id-1")]).await;
    assert_refused(&a, 401, "unauthorized", None, "no token");
    assert_eq!(
        a.headers["www-authenticate"],
        r#"Bearer realm="portcullis""#
    );
    assert_eq!(
        a.headers["x-request-id"], "client-id-1",
        "the client's id is kept"
    );

    let expired = p.main_token(json!({ "exp": now() - 3600 }));
    assert_invalid_token(
        &with_token(&p.gw, "/open/x", &expired).await,
        &expired,
        "expired",
    );
    for garbage in ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"] {
        let a = with_token(&p.gw, "/open/x", garbage).await;
        assert_refused(&a, 401, "invalid_token", None, garbage);
    }
    // Only the Authorization header carries a token (RFC 6750 §2.1).
    let good = p.main_token(json!({}));
    let in_query = format!("/open/x?access_token={good}");
    let a = call(&p.gw, "GET", &in_query, &[]).await;
    assert_refused(&a, 401, "unauthorized", Some(&good), "token in the query");
    assert_eq!(p.up.count(), 0, "no refusal reaches the upstream");

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {good}");
        let a = call(&p.gw, "GET", "/open/x", &[("authorization", &auth)]).await;
        assert_passed(&a, scheme);
    }
}

#[tokio::test]
async fn malformed_authorization_headers_are_400_invalid_request() {
    let p = Policies::start().await;
    let good = p.main_token(json!({}));
    let bearer = format!("Bearer {good}");
    let huge = format!("Bearer {}", "a".repeat(16 * 1024 + 1));

    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "two Authorization headers",
            vec![("authorization", &bearer), ("authorization", &bearer)],
        ),
        (
            "another scheme",
            vec![("authorization", "Basic dXNlcjpwYXNz")],
        ),
        ("Bearer and a space", vec![("authorization", "Bearer ")]),
        ("Bearer alone", vec![("authorization", "Bearer")]),
        ("over 16 KiB", vec![("authorization", &huge)]),
        (
            "two credentials in one header",
            vec![("authorization", "Bearer abc, Bearer def")],
        ),
    ];
    for (case, headers) in &cases {
        let a = call(&p.gw, "GET", "/open/x", headers).await;
        assert_invalid_request(&a, case);
        assert!(!a.body.contains(&good), "{case}: the body echoes the token");
    }
    assert_eq!(p.up.count(), 0);
}

#[tokio::test]
async fn a_route_refuses_issuers_it_does_not_list() {
    let p = Policies::start().await;
    let (main, other) = (p.main_token(json!({})), p.other_token(json!({})));

    assert_passed(
        &with_token(&p.gw, "/main-only/x", &main).await,
        "main on main-only",
    );
    assert_passed(
        &with_token(&p.gw, "/other-only/x", &other).await,
        "other on other-only",
    );
    assert_eq!(
        upstream_header(&p.up, "x-auth-issuer").as_deref(),
        Some(OTHER_ISSUER)
    );
    assert_passed(
        &with_token(&p.gw, "/open/x", &other).await,
        "other where all are accepted",
    );
    let before = p.up.count();

    let a = with_token(&p.gw, "/main-only/x", &other).await;
    assert_invalid_token(&a, &other, "other on main-only");
    let a = with_token(&p.gw, "/other-only/x", &main).await;
    assert_invalid_token(&a, &main, "main on other-only");
    assert_eq!(p.up.count(), before);
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope_naming_the_route_scopes() {
    let p = Policies::start().await;

    let read_only = p.main_token(json!({ "scope": "read:data" }));
    let a = with_token(&p.gw, "/scoped/x", &read_only).await;
    assert_refused(
        &a,
        403,
        "insufficient_scope",
        Some(&read_only),
        "one of two",
    );
    assert_eq!(
        a.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="read:data write:data""#
    );

    let none = p.main_token(json!({ "scope": null }));
    let a = with_token(&p.gw, "/scoped/x", &none).await;
    assert_refused(&a, 403, "insufficient_scope", Some(&none), "no scope claim");

    let a = with_token(&p.gw, "/any/x", &read_only).await;
    assert_refused(
        &a,
        403,
        "insufficient_scope",
        Some(&read_only),
        "none of any_scopes",
    );
    assert_eq!(
        a.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="admin support""#
    );
    assert_eq!(p.up.count(), 0);
}

#[tokio::test]
async fn org_mismatch_and_missing_role_are_403_forbidden_without_challenge() {
    let p = Policies::start().await;
    let t = p.main_token(json!({ "roles": ["viewer"] }));

    assert_forbidden(
        &with_token(&p.gw, "/orgs/org-2/items/1", &t).await,
        "other org",
    );
    let no_org = p.main_token(json!({ "org_id": null }));
    assert_forbidden(
        &with_token(&p.gw, "/orgs/org-1/items/1", &no_org).await,
        "no org claim",
    );
    assert_forbidden(&with_token(&p.gw, "/admin/x", &t).await, "viewer on admin");
    let no_roles = p.main_token(json!({}));
    assert_forbidden(&with_token(&p.gw, "/admin/x", &no_roles).await, "no roles");
    assert_eq!(p.up.count(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let p = Policies::start().await;
    let t = p.main_token(json!({}));
    let auth = format!("Bearer {t}");

    let a = call(&p.gw, "GET", "/nowhere", &[("authorization", &auth)]).await;
    assert_refused(&a, 404, "not_found", Some(&t), "404");
    let a = call(&p.gw, "GET", "/nowhere", &[]).await;
    assert_refused(&a, 404, "not_found", None, "404 without token");

    let a = call(
        &p.gw,
        "POST",
        "/orgs/org-1/items/1",
        &[("authorization", &auth)],
    )
    .await;
    assert_refused(&a, 405, "method_not_allowed", Some(&t), "405");
    assert_eq!(a.headers["allow"], "GET, HEAD");
    assert_eq!(p.up.count(), 0);
}

// === token rules ===

/// A gateway whose token time is a manual clock at `t`, whose `main` issuer allows
/// only RS256 and ES256, with keys `rsa-1` (RS256), `rsa-noalg` (the same RSA key,
/// no `alg`) and `ec-1` (ES256).
struct Tokens {
    t: i64,
    clock: Arc<ManualClock>,
    rsa: TestKey,
    ec: TestKey,
    up: Upstream,
    gw: Gateway,
    _jwks: JwksServer,
}

impl Tokens {
    async fn start() -> Tokens {
        let (rsa, ec) = (rsa(), ec());
        let mut noalg = key("rsa", Algorithm::RS256, "rsa-noalg");
        noalg.jwk.as_object_mut().unwrap().remove("alg");
        let jwks = JwksServer::start(&[&rsa, &noalg, &ec]).await;
        let up = Upstream::start().await;
        let issuers = issuer_yaml("main", ISSUER, &jwks, "    algorithms: [RS256, ES256]\n");
        let routes = "  - path: /*\n    upstream: api\n";
        let t = now();
        let clock = Arc::new(ManualClock::new(t));
        let yaml = gateway_yaml(&issuers, &up, routes, "");
        let gw = Gateway::start_with_clock(&yaml, clock.clone()).await;
        Tokens {
            t,
            clock,
            rsa,
            ec,
            up,
            gw,
            _jwks: jwks,
        }
    }

    /// Signed with `rsa-1` under `header` (alg RS256 and kid added when absent).
    fn rsa_token(&self, header: Value, claims: &Value) -> String {
        let header = merge(
            json!({ "alg": "RS256", "kid": "rsa-1", "typ": "JWT" }),
            header,
        );
        token_with_header(&self.rsa, &header, claims)
    }

    async fn check(&self, accepted: &[(&str, String)], refused: &[(&str, String)]) {
        for (case, t) in accepted {
            let a = with_token(&self.gw, "/x", t).await;
            assert_passed(&a, case);
            assert_eq!(
                upstream_header(&self.up, "x-auth-subject").as_deref(),
                Some("user-1")
            );
        }
        let before = self.up.count();
        for (case, t) in refused {
            assert_invalid_token(&with_token(&self.gw, "/x", t).await, t, case);
        }
        assert_eq!(
            self.up.count(),
            before,
            "a refused token reached the upstream"
        );
    }
}

#[tokio::test]
async fn unsigned_confused_and_foreign_tokens_are_refused() {
    let k = Tokens::start().await;
    let c = claims_at(k.t, json!({}));
    let foreign = key("rsa-b", Algorithm::RS256, "rsa-1");
    let foreign_jwk = foreign.jwk.clone();
    // Somewhere a token could point the gateway to; it must never be asked.
    let attacker = Upstream::start().await;
    let jku = format!("{}/jwks.json", attacker.url());
    let x5u = format!("{}/cert.pem", attacker.url());

    let valid = k.rsa_token(json!({}), &c);
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims_at(k.t, json!({ "sub": "admin" }))),
        parts[2]
    );
    let refused = [
        (
            "alg none, empty signature",
            unsigned(json!({ "alg": "none", "typ": "JWT" }), &c, ""),
        ),
        (
            "alg none with a signature",
            unsigned(json!({ "alg": "none" }), &c, "c2ln"),
        ),
        (
            "alg None",
            unsigned(json!({ "alg": "None", "kid": "rsa-1" }), &c, ""),
        ),
        ("alg NONE", unsigned(json!({ "alg": "NONE" }), &c, "")),
        (
            "HS256 keyed with the RSA public key",
            hs256_with_public_pem(json!({ "alg": "HS256", "kid": "rsa-1", "typ": "JWT" }), &c),
        ),
        (
            "HS256 keyed with the RSA public key, no kid",
            hs256_with_public_pem(json!({ "alg": "HS256", "typ": "JWT" }), &c),
        ),
        (
            "foreign key, embedded jwk, the right kid",
            token_with_header(
                &foreign,
                &json!({ "alg": "RS256", "kid": "rsa-1", "jwk": foreign_jwk }),
                &c,
            ),
        ),
        (
            "foreign key, embedded jwk, a new kid",
            token_with_header(
                &foreign,
                &json!({ "alg": "RS256", "kid": "attacker", "jwk": foreign_jwk }),
                &c,
            ),
        ),
        (
            "foreign key, jku and x5u to the attacker",
            token_with_header(
                &foreign,
                &json!({ "alg": "RS256", "kid": "attacker", "jku": jku, "x5u": x5u }),
                &c,
            ),
        ),
        (
            "foreign key, jku, the right kid",
            token_with_header(
                &foreign,
                &json!({ "alg": "RS256", "kid": "rsa-1", "jku": jku }),
                &c,
            ),
        ),
        ("unknown kid", k.rsa_token(json!({ "kid": "nobody" }), &c)),
        ("payload changed after signing", tampered),
        ("one segment", "abcdefghijk".to_owned()),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("five segments (JWE)", format!("{valid}.a.b")),
        (
            "header not JSON",
            format!("bm90anNvbg.{}.{}", parts[1], parts[2]),
        ),
    ];
    let accepted = [
        (
            "jku, x5u, x5c and jwk on a genuine token",
            k.rsa_token(
                json!({ "jku": jku, "x5u": x5u, "x5c": ["AAAA"], "jwk": foreign_jwk }),
                &c,
            ),
        ),
        ("baseline", valid.clone()),
    ];
    k.check(&accepted, &refused).await;
    assert_eq!(
        attacker.count(),
        0,
        "something was fetched from a token header"
    );
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let k = Tokens::start().await;
    let t = k.t;
    let at = |changes: Value| k.rsa_token(json!({}), &claims_at(t, changes));
    let accepted = [
        ("exp within the leeway", at(json!({ "exp": t - 10 }))),
        ("nbf within the leeway", at(json!({ "nbf": t + 10 }))),
        ("nbf in the past", at(json!({ "nbf": t - 100 }))),
        ("iat within the leeway", at(json!({ "iat": t + 10 }))),
        ("no iat", at(json!({ "iat": null }))),
    ];
    let refused = [
        ("expired an hour ago", at(json!({ "exp": t - 3600 }))),
        (
            "expired just beyond the leeway",
            at(json!({ "exp": t - 31 })),
        ),
        ("nbf in the future", at(json!({ "nbf": t + 120 }))),
        ("iat in the future", at(json!({ "iat": t + 120 }))),
        ("no exp", at(json!({ "exp": null }))),
        ("exp not a number", at(json!({ "exp": "tomorrow" }))),
    ];
    k.check(&accepted, &refused).await;
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let k = Tokens::start().await;
    let at = |changes: Value| k.rsa_token(json!({}), &claims_at(k.t, changes));
    let accepted = [
        (
            "aud array with one good entry",
            at(json!({ "aud": ["https://else.test", AUDIENCE] })),
        ),
        ("aud string", at(json!({}))),
    ];
    let refused = [
        ("wrong aud", at(json!({ "aud": "https://else.test" }))),
        (
            "aud array without a good entry",
            at(json!({ "aud": ["https://else.test"] })),
        ),
        ("no aud", at(json!({ "aud": null }))),
        ("wrong iss", at(json!({ "iss": "https://evil.test" }))),
        (
            "iss differs in case",
            at(json!({ "iss": ISSUER.to_uppercase() })),
        ),
        ("no iss", at(json!({ "iss": null }))),
    ];
    k.check(&accepted, &refused).await;
}

#[tokio::test]
async fn header_rules_typ_crit_and_algorithms() {
    let k = Tokens::start().await;
    let c = claims_at(k.t, json!({}));
    let hdr = |h: Value| k.rsa_token(h, &c);
    let no_typ = token_with_header(&k.rsa, &json!({ "alg": "RS256", "kid": "rsa-1" }), &c);
    let accepted = [
        ("typ at+jwt", hdr(json!({ "typ": "at+jwt" }))),
        ("typ AT+JWT", hdr(json!({ "typ": "AT+JWT" }))),
        ("typ jwt", hdr(json!({ "typ": "jwt" }))),
        ("no typ", no_typ),
        (
            "a key without alg, RS256",
            hdr(json!({ "kid": "rsa-noalg" })),
        ),
        ("ES256", token(&k.ec, &c)),
    ];
    let ps256 = key("rsa", Algorithm::PS256, "rsa-noalg");
    let refused = [
        ("typ JOSE", hdr(json!({ "typ": "JOSE" }))),
        ("typ dpop+jwt", hdr(json!({ "typ": "dpop+jwt" }))),
        (
            "crit with an unknown entry",
            hdr(json!({ "crit": ["x-unknown"], "x-unknown": 1 })),
        ),
        ("PS256 is not in the allowlist", token(&ps256, &c)),
        (
            "ES256 header with the RSA key's kid",
            token_with_header(&k.ec, &json!({ "alg": "ES256", "kid": "rsa-1" }), &c),
        ),
        (
            "RS256 header with the EC key's kid",
            token_with_header(&k.rsa, &json!({ "alg": "RS256", "kid": "ec-1" }), &c),
        ),
        ("an unknown alg", hdr(json!({ "alg": "XS256" }))),
    ];
    k.check(&accepted, &refused).await;
}

#[tokio::test]
async fn every_allowed_algorithm_verifies() {
    let mut keys = Vec::new();
    for (alg, kid) in [
        (Algorithm::RS256, "rs256"),
        (Algorithm::RS384, "rs384"),
        (Algorithm::RS512, "rs512"),
        (Algorithm::PS256, "ps256"),
        (Algorithm::PS384, "ps384"),
        (Algorithm::PS512, "ps512"),
    ] {
        keys.push(key("rsa", alg, kid));
    }
    keys.push(key("ec256", Algorithm::ES256, "es256"));
    keys.push(key("ec384", Algorithm::ES384, "es384"));
    keys.push(ed25519_key("eddsa"));
    let jwks = JwksServer::start(&keys.iter().collect::<Vec<_>>()).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, "  - path: /*\n    upstream: api\n")).await;

    for k in &keys {
        let t = token(k, &claims_with(json!({ "sub": k.kid })));
        assert_passed(&with_token(&gw, "/x", &t).await, &k.kid);
        assert_eq!(
            upstream_header(&up, "x-auth-subject").as_deref(),
            Some(k.kid.as_str())
        );
    }
}

#[tokio::test]
async fn weak_and_encryption_keys_are_ignored_and_kid_is_optional() {
    let Some((small_jwk, sign_small)) = rsa_1024("small") else {
        skip("needs the openssl command to sign with the RSA-1024 fixture");
        return;
    };
    let (rsa, ec, ed) = (rsa(), ec(), ed25519_key("ed-1"));
    let mut enc = key("rsa-b", Algorithm::RS256, "enc-1");
    enc.jwk["use"] = json!("enc");
    let jwks = JwksServer::start(&[&rsa, &ec, &ed]).await;
    // The RSA-1024 key and the `use: enc` key are published too: were either
    // used, a kid-less RS256 token would have two candidate keys.
    jwks.set_body(&json!({ "keys": [rsa.jwk, ec.jwk, ed.jwk, small_jwk, enc.jwk] }).to_string());
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, "  - path: /*\n    upstream: api\n")).await;
    let c = claims();

    let rs256_no_kid = json!({ "alg": "RS256", "typ": "JWT" });
    let accepted = [
        (
            "RS256 without kid",
            token_with_header(&rsa, &rs256_no_kid, &c),
        ),
        (
            "ES256 without kid",
            token_with_header(&ec, &json!({ "alg": "ES256" }), &c),
        ),
        (
            "EdDSA without kid",
            token_with_header(&ed, &json!({ "alg": "EdDSA" }), &c),
        ),
    ];
    for (case, t) in &accepted {
        assert_passed(&with_token(&gw, "/x", t).await, case);
    }
    let refused = [
        (
            "RSA-1024, by kid",
            sign_small(json!({ "alg": "RS256", "kid": "small" }), &c),
        ),
        ("RSA-1024, no kid", sign_small(rs256_no_kid.clone(), &c)),
        (
            "use: enc, by kid",
            token_with_header(&enc, &json!({ "alg": "RS256", "kid": "enc-1" }), &c),
        ),
        (
            "use: enc, no kid",
            token_with_header(&enc, &rs256_no_kid, &c),
        ),
    ];
    let before = up.count();
    for (case, t) in &refused {
        assert_invalid_token(&with_token(&gw, "/x", t).await, t, case);
    }
    assert_eq!(up.count(), before);

    // Two keys of the right type and no kid: there is no "one key" to choose.
    let ec_b = key("ec256-b", Algorithm::ES256, "ec-2");
    let jwks = JwksServer::start(&[&ec, &ec_b]).await;
    let gw = Gateway::start(&config(&jwks, &up, "  - path: /*\n    upstream: api\n")).await;
    let ambiguous = token_with_header(&ec_b, &json!({ "alg": "ES256" }), &c);
    assert_invalid_token(
        &with_token(&gw, "/x", &ambiguous).await,
        &ambiguous,
        "ambiguous",
    );
    assert_passed(
        &with_token(&gw, "/x", &token(&ec_b, &c)).await,
        "ec-2 by kid",
    );
}

// === policies ===

#[tokio::test]
async fn scopes_come_from_scope_or_scp_and_policies_combine() {
    let p = Policies::start().await;
    let cases = [
        ("scope string, all scopes", "/scoped/x", json!({})),
        (
            "scp array, all scopes",
            "/scoped/x",
            json!({ "scope": null, "scp": ["read:data", "write:data"] }),
        ),
        ("one of any_scopes", "/any/x", json!({ "scope": "support" })),
        (
            "org matches",
            "/orgs/org-1/items/7",
            json!({ "scope": "read:data" }),
        ),
        (
            "roles array",
            "/admin/x",
            json!({ "roles": ["viewer", "admin"] }),
        ),
        ("role string", "/admin/x", json!({ "role": "admin" })),
    ];
    for (case, path, changes) in cases {
        assert_passed(&with_token(&p.gw, path, &p.main_token(changes)).await, case);
    }
    let scp = p.main_token(json!({ "scope": null, "scp": ["read:data", "write:data"] }));
    with_token(&p.gw, "/scoped/x", &scp).await;
    assert_eq!(
        upstream_header(&p.up, "x-auth-scopes").as_deref(),
        Some("read:data write:data")
    );
    let roles = p.main_token(json!({ "roles": ["viewer", "admin"] }));
    with_token(&p.gw, "/admin/x", &roles).await;
    assert_eq!(
        upstream_header(&p.up, "x-auth-roles").as_deref(),
        Some("viewer,admin")
    );

    // The `other` issuer keeps its org in `tenant` and its roles in `groups`.
    let other = p.other_token(json!({ "org_id": null, "tenant": "acme", "groups": ["admin"] }));
    assert_passed(
        &with_token(&p.gw, "/orgs/acme/items/1", &other).await,
        "org_claim",
    );
    assert_eq!(
        upstream_header(&p.up, "x-auth-org").as_deref(),
        Some("acme")
    );
    assert_passed(&with_token(&p.gw, "/admin/x", &other).await, "roles_claim");
    let wrong_claim = p.other_token(json!({ "tenant": "acme", "roles": ["admin"] }));
    assert_forbidden(
        &with_token(&p.gw, "/admin/x", &wrong_claim).await,
        "roles outside roles_claim",
    );
    assert_forbidden(
        &with_token(&p.gw, "/orgs/org-1/items/1", &wrong_claim).await,
        "org_id outside org_claim",
    );
}

#[tokio::test]
async fn optional_routes_verify_a_token_only_when_one_is_sent() {
    let p = Policies::start().await;

    assert_passed(&call(&p.gw, "GET", "/optional/x", &[]).await, "no token");
    for h in IDENTITY_HEADERS {
        assert_eq!(upstream_header(&p.up, h), None, "{h} without a token");
    }
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    assert_passed(&call(&p.gw, "GET", "/optional/x", &basic).await, "Basic");
    assert_eq!(upstream_header(&p.up, "x-auth-subject"), None);

    let good = p.main_token(json!({}));
    assert_passed(
        &with_token(&p.gw, "/optional/x", &good).await,
        "valid token",
    );
    assert_eq!(
        upstream_header(&p.up, "x-auth-subject").as_deref(),
        Some("user-1")
    );

    let before = p.up.count();
    let expired = p.main_token(json!({ "exp": now() - 3600 }));
    assert_invalid_token(
        &with_token(&p.gw, "/optional/x", &expired).await,
        &expired,
        "expired",
    );
    let forged = token(&p.other, &claims());
    assert_invalid_token(
        &with_token(&p.gw, "/optional/x", &forged).await,
        &forged,
        "forged",
    );
    let bearer = format!("Bearer {good}");
    let twice = [
        ("authorization", bearer.as_str()),
        ("authorization", bearer.as_str()),
    ];
    assert_invalid_request(
        &call(&p.gw, "GET", "/optional/x", &twice).await,
        "two headers",
    );
    assert_eq!(p.up.count(), before);
}

#[tokio::test]
async fn anonymous_routes_never_examine_authorization() {
    let p = Policies::start().await;
    let expired = format!("Bearer {}", p.main_token(json!({ "exp": now() - 3600 })));
    let huge = format!("Bearer {}", "a".repeat(20 * 1024));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("none", vec![]),
        ("garbage", vec![("authorization", "!!garbage!! \"x\"")]),
        (
            "two headers",
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
        ),
        ("Basic", vec![("authorization", "Basic dXNlcjpwYXNz")]),
        ("empty bearer", vec![("authorization", "Bearer ")]),
        ("over 16 KiB", vec![("authorization", &huge)]),
        ("expired token", vec![("authorization", &expired)]),
    ];
    for (case, headers) in &cases {
        assert_passed(&call(&p.gw, "GET", "/public/x", headers).await, case);
        for h in IDENTITY_HEADERS {
            assert_eq!(upstream_header(&p.up, h), None, "{case}: {h}");
        }
    }
    assert_eq!(
        upstream_header(&p.up, "authorization").as_deref(),
        Some(expired.as_str()),
        "forwarded unchanged"
    );
}

#[tokio::test]
async fn forward_token_false_removes_authorization_before_the_upstream() {
    let p = Policies::start().await;
    let t = p.main_token(json!({}));

    assert_passed(&with_token(&p.gw, "/open/x", &t).await, "default");
    assert_eq!(
        upstream_header(&p.up, "authorization"),
        Some(format!("Bearer {t}"))
    );
    let lower = format!("bearer {t}");
    assert_passed(
        &call(&p.gw, "GET", "/open/x", &[("authorization", &lower)]).await,
        "lower",
    );
    assert_eq!(
        upstream_header(&p.up, "authorization"),
        Some(lower),
        "unchanged"
    );

    assert_passed(
        &with_token(&p.gw, "/no-forward/x", &t).await,
        "forward_token: false",
    );
    assert_eq!(upstream_header(&p.up, "authorization"), None);
    assert_eq!(
        upstream_header(&p.up, "x-auth-subject").as_deref(),
        Some("user-1")
    );
}

// === identity headers ===

/// A raw HTTP/1.1 GET with `headers` written exactly as given (letter case kept).
async fn raw_get(gw: &Gateway, path: &str, headers: &[String]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    raw(gw.addr, req.as_bytes()).await
}

/// No header the upstream last received carries the word `spoofed`.
#[track_caller]
fn assert_nothing_spoofed(up: &Upstream, case: &str) {
    for (name, value) in &up.last().headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !v.contains("spoofed"),
            "{case}: {name}: {v} reached the upstream"
        );
    }
}

#[tokio::test]
async fn clients_cannot_spoof_identity_headers_on_any_route() {
    let p = Policies::start().await;
    let spoofs: Vec<String> = [
        "X-Auth-Subject: spoofed-1",
        "x-auth-subject: spoofed-2",
        "X-AUTH-ORG: spoofed",
        "x-Auth-Roles: spoofed-admin",
        "X-Auth-Scopes: spoofed",
        "x-auth-ISSUER: https://spoofed.test",
        // CGI, WSGI and Rack read `X_Auth_Subject` as `X-Auth-Subject`.
        "X_Auth_Subject: spoofed-underscore",
        "x_auth_roles: spoofed-underscore",
    ]
    .map(str::to_owned)
    .to_vec();
    // No org and no roles: those headers must be absent, not the client's.
    let t = p.main_token(json!({ "org_id": null }));
    let with_auth = [vec![format!("Authorization: Bearer {t}")], spoofs.clone()].concat();

    let cases = [
        ("required route, token", "/open/x", &with_auth),
        ("optional route, token", "/optional/x", &with_auth),
        ("optional route, no token", "/optional/x", &spoofs),
        ("anonymous route", "/public/x", &spoofs),
        ("anonymous route, token", "/public/x", &with_auth),
    ];
    for (case, path, headers) in cases {
        let resp = raw_get(&p.gw, path, headers).await;
        assert_eq!(raw_status(&resp), 200, "{case}: {resp}");
        assert_nothing_spoofed(&p.up, case);
        let got = &p.up.last().headers;
        assert!(got.get_all("x-auth-subject").iter().count() <= 1, "{case}");
        assert_eq!(got.get("x-auth-org"), None, "{case}");
        assert_eq!(got.get("x-auth-roles"), None, "{case}");
    }
    assert_eq!(
        upstream_header(&p.up, "x-auth-subject"),
        None,
        "anonymous sets none"
    );
    raw_get(&p.gw, "/open/x", &with_auth).await;
    assert_eq!(
        upstream_header(&p.up, "x-auth-subject").as_deref(),
        Some("user-1")
    );
    assert_eq!(
        upstream_header(&p.up, "x-auth-issuer").as_deref(),
        Some(ISSUER)
    );

    // A trailer named like an identity header is dropped too.
    let req = "POST /public/t HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\
               Trailer: X-Auth-Subject\r\nConnection: close\r\n\r\n\
               5\r\nhello\r\n0\r\nX-AUTH-SUBJECT: spoofed\r\n\r\n";
    let resp = raw(p.gw.addr, req.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = p.up.last();
    assert_eq!(got.body, "hello");
    let trailers = got.trailers.unwrap_or_default();
    assert_eq!(
        trailers.get("x-auth-subject"),
        None,
        "spoofed trailer forwarded"
    );
}

/// A role or scope that the comma- or space-separated identity header could not
/// carry as one item (`viewer,admin` would read as two roles upstream) is left
/// out, for the gateway's policy and the upstream alike: both see one set.
#[tokio::test]
async fn list_items_that_would_split_upstream_are_left_out_for_policy_and_header() {
    let p = Policies::start().await;
    // The only `admin` is hidden in a role that would split upstream: refused.
    let split = p.main_token(json!({ "roles": ["viewer,admin", "editor"] }));
    assert_forbidden(&with_token(&p.gw, "/admin/x", &split).await, "viewer,admin");
    let quoted = p.main_token(json!({ "roles": ["\"x", "admin\""] }));
    assert_forbidden(&with_token(&p.gw, "/admin/x", &quoted).await, "quotes");
    // Elsewhere the token passes, and the header lists only whole roles.
    assert_passed(&with_token(&p.gw, "/open/x", &split).await, "open route");
    assert_eq!(
        upstream_header(&p.up, "x-auth-roles").as_deref(),
        Some("editor")
    );
    let role = p.main_token(json!({ "role": "viewer,admin" }));
    assert_passed(&with_token(&p.gw, "/open/x", &role).await, "role string");
    assert_eq!(upstream_header(&p.up, "x-auth-roles"), None);

    // An `scp` item with a space would read as two scopes upstream.
    let scp = p.main_token(json!({ "scope": null, "scp": ["read:data write:data", "read:data"] }));
    let got = with_token(&p.gw, "/scoped/x", &scp).await;
    assert_eq!(got.status, 403, "{}", got.body);
    assert_passed(&with_token(&p.gw, "/open/x", &scp).await, "scp");
    assert_eq!(
        upstream_header(&p.up, "x-auth-scopes").as_deref(),
        Some("read:data")
    );
}

#[tokio::test]
async fn custom_identity_headers_replace_the_defaults() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let routes = [
        "  - path: /public/*\n    upstream: api\n    auth: anonymous\n",
        "  - path: /*\n    upstream: api\n",
    ]
    .concat();
    let mapping = [
        "identity_headers:",
        "  sub: X-User",
        "  email: X-Email",
        "  groups: X-Groups",
        "  age: X-Age",
        "  meta: X-Meta",
        "  verified: X-Verified",
        "  scope: X-Scopes",
        "  nick: X-Nick",
        "  name: X-Name",
        "  bio: X-Bio",
        // Named with `_`: the same field as the client's `-` spelling to a
        // CGI-style upstream, so neither spelling of the client's gets through.
        "  tenant: X_Tenant",
        "  team: X_Team",
        "",
    ]
    .join("\n");
    let issuers = issuer_yaml("main", ISSUER, &jwks, "");
    let gw = Gateway::start(&gateway_yaml(&issuers, &up, &routes, &mapping)).await;

    let t = token(
        &key,
        &claims_with(json!({
            "email": "a@example.test",
            "groups": ["g1", "g2"],
            "age": 42,
            "meta": { "a": 1, "b": [true, "x"] },
            "verified": true,
            "name": "José Núñez",
            "bio": "line\r\nX-Injected: 1",
            "scope": null,
            "scp": ["read:data", "write:data"],
            "tenant": "t-1",
        })),
    );
    let headers = [
        format!("Authorization: Bearer {t}"),
        "X-EMAIL: spoofed@evil.test".to_owned(),
        "x-nick: spoofed".to_owned(),
        "X_Tenant: spoofed".to_owned(),
        "x-tenant: spoofed".to_owned(),
        "X-TEAM: spoofed".to_owned(),
        "x_team: spoofed".to_owned(),
    ];
    let resp = raw_get(&gw, "/x", &headers).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_nothing_spoofed(&up, "custom mapping");
    let expected = [
        ("x-user", Some("user-1")),
        ("x-email", Some("a@example.test")),
        ("x-groups", Some("g1,g2")),
        ("x-age", Some("42")),
        ("x-meta", Some(r#"{"a":1,"b":[true,"x"]}"#)),
        ("x-verified", Some("true")),
        ("x-scopes", Some("read:data write:data")),
        ("x-nick", None),
        ("x_tenant", Some("t-1")),
        ("x-tenant", None),
        ("x_team", None),
        ("x-team", None),
        ("x-bio", None),
        ("x-injected", None),
        ("x-auth-subject", None),
        ("x-auth-scopes", None),
    ];
    for (name, value) in expected {
        assert_eq!(upstream_header(&up, name).as_deref(), value, "{name}");
    }
    assert_eq!(up.last().headers.get_all("x-email").iter().count(), 1);
    let name = up
        .last()
        .headers
        .get("x-name")
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(
        name.as_deref(),
        Some("José Núñez".as_bytes()),
        "sent as it is"
    );

    let resp = raw_get(&gw, "/public/x", &headers[1..]).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_nothing_spoofed(&up, "custom mapping, anonymous");
}

// === the verified-token cache ===

const HITS: &str = "portcullis_verification_cache_hits_total";

#[tokio::test]
async fn a_repeated_token_is_a_cache_hit_and_policy_still_applies() {
    let p = Policies::start().await;
    let t = p.main_token(json!({}));

    assert_passed(&with_token(&p.gw, "/open/x", &t).await, "first");
    let hits = metric(&p.gw, HITS).await;
    assert_passed(&with_token(&p.gw, "/open/y", &t).await, "second");
    assert_eq!(metric(&p.gw, HITS).await, hits + 1.0);
    assert_eq!(
        upstream_header(&p.up, "x-auth-subject").as_deref(),
        Some("user-1")
    );

    // A cached identity is still checked against each route's policy.
    assert_forbidden(&with_token(&p.gw, "/admin/x", &t).await, "cached, no role");
    let a = with_token(&p.gw, "/other-only/x", &t).await;
    assert_invalid_token(&a, &t, "cached, issuer not accepted");

    // A forgery stays refused however often it is replayed.
    let forged = token(&p.other, &claims());
    for _ in 0..3 {
        assert_invalid_token(
            &with_token(&p.gw, "/open/x", &forged).await,
            &forged,
            "replay",
        );
    }
}

#[tokio::test]
async fn a_cached_token_that_expires_is_refused() {
    let k = Tokens::start().await;
    let exp = k.t + 3600;
    let t = token(&k.rsa, &claims_at(k.t, json!({ "exp": exp })));

    assert_passed(&with_token(&k.gw, "/x", &t).await, "fresh");
    assert_passed(&with_token(&k.gw, "/x", &t).await, "cached");
    // The default leeway is 30 s: still good one second before it runs out.
    k.clock.set(exp + 29);
    assert_passed(
        &with_token(&k.gw, "/x", &t).await,
        "cached, within the leeway",
    );
    let hits = metric(&k.gw, HITS).await;
    k.clock.set(exp + 30);
    let a = with_token(&k.gw, "/x", &t).await;
    assert_invalid_token(&a, &t, "cached, expired");
    assert_eq!(
        metric(&k.gw, HITS).await,
        hits + 1.0,
        "answered from the cache"
    );
}
