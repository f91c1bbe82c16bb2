//! The `issuer:` section and `builtin: true` issuers.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

const ISSUER: &str = r#"
upstreams:
  api: { url: "http://127.0.0.1:9000" }
routes:
  - path: /*
    upstream: api
issuers:
  - id: local
    builtin: true
    audiences: ["https://api.example.test"]
issuer:
  url: "http://127.0.0.1:8080"
  database: "sqlite://portcullis.db"
  signing_algs: [ES256, RS256]
  key_rotation: 30d
  access_token_ttl: 15m
  id_token_ttl: 1h
  refresh_token_ttl: 30d
  refresh_token_idle_ttl: 7d
  resources:
    - identifier: "https://api.example.test"
      scopes: [read:data, write:data]
  clients:
    - client_id: billing-service
      client_secret: "${BILLING_SECRET}"
      grant_types: [client_credentials]
      scopes: { "https://api.example.test": [read:data] }
    - client_id: web-app
      public: true
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token]
      scopes: { "https://api.example.test": [read:data, write:data] }
  webhooks:
    - url: "https://hooks.example.test/portcullis"
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
      events: [user.created, key.rotated]
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml_with_env(text, Path::new("gateway.yaml"), &|n| {
        (n == "BILLING_SECRET").then(|| "s3cret-from-env".to_owned())
    })
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse(text)
        .expect_err("config must be refused")
        .errors()
        .to_vec()
}

fn only_error(text: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].clone()
}

/// The line of the first occurrence of `needle` in `text` (1-based).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in text")
}

#[test]
fn the_contract_example_is_valid() {
    let c = parse(ISSUER).expect("valid");
    let s = c.issuer.as_ref().expect("issuer section");
    assert_eq!(s.url, "http://127.0.0.1:8080");
    assert_eq!(s.signing_algs, vec![SigningAlg::ES256, SigningAlg::RS256]);
    assert_eq!(s.access_token_ttl, Duration::from_secs(900));
    assert_eq!(
        s.refresh_token_idle_ttl,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(s.refresh_reuse_grace, Duration::ZERO);
    assert_eq!(s.key_sync_interval, Duration::from_secs(60));
    assert_eq!(s.revocation.max_entries, 100_000);
    assert_eq!(s.revocation.sync_interval, Duration::from_secs(5));
    let billing = &s.clients[0];
    assert!(!billing.public);
    assert_eq!(
        billing.client_secret.as_ref().map(Secret::expose),
        Some("s3cret-from-env")
    );
    assert_eq!(billing.grant_types, vec![GrantType::ClientCredentials]);
    let web = &s.clients[1];
    assert!(web.public && web.require_pkce && web.client_secret.is_none());
    assert_eq!(web.id_token_signed_response_alg, SigningAlg::RS256);
    assert_eq!(
        web.scopes,
        vec![(
            "https://api.example.test".to_owned(),
            vec!["read:data".to_owned(), "write:data".to_owned()]
        )]
    );
    assert_eq!(s.webhooks[0].secret.key().len(), 24);
    assert_eq!(
        s.webhooks[0].events,
        Some(vec![WebhookEvent::UserCreated, WebhookEvent::KeyRotated])
    );
    // The secret never shows in the configuration's Debug output.
    assert!(!format!("{c:?}").contains("s3cret-from-env"));
}

#[test]
fn builtin_issuer_takes_its_iss_and_algorithms_from_the_section() {
    let c = parse(ISSUER).expect("valid");
    let local = &c.issuers[0];
    assert_eq!(local.keys, KeySourceConfig::Builtin);
    assert_eq!(local.issuer, "http://127.0.0.1:8080");
    assert_eq!(local.algorithms, vec![Algorithm::ES256, Algorithm::RS256]);
}

#[test]
fn defaults_fill_a_minimal_section() {
    let text = "issuer:\n  url: \"https://id.example.test\"\n";
    let s = parse(text).expect("valid").issuer.expect("section");
    assert_eq!(s.database, "sqlite://portcullis.db");
    assert_eq!(s.signing_algs, vec![SigningAlg::ES256, SigningAlg::RS256]);
    assert_eq!(s.key_rotation, Duration::from_secs(30 * 86400));
    assert_eq!(s.access_token_ttl, Duration::from_secs(15 * 60));
    assert_eq!(s.id_token_ttl, Duration::from_secs(3600));
    assert_eq!(s.refresh_token_ttl, Duration::from_secs(30 * 86400));
    assert_eq!(s.refresh_token_idle_ttl, None);
    assert!(s.clients.is_empty() && s.resources.is_empty() && s.webhooks.is_empty());
    let gateway_only = "upstreams: { a: { url: \"http://127.0.0.1:1\" } }\nroutes: [{ path: /x, upstream: a, auth: anonymous }]\n";
    assert!(parse(gateway_only).expect("valid").issuer.is_none());
    // Neither routes nor an issuer: nothing to serve (an empty or cut file).
    let e = parse("server: { listen: \"127.0.0.1:0\" }\n").expect_err("serves nothing");
    assert_eq!(e.errors()[0].key.as_deref(), Some("routes"));
}

#[test]
fn builtin_without_the_section_is_still_refused() {
    let text = ISSUER
        .split("issuer:\n  url")
        .next()
        .expect("head")
        .to_owned();
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuers[0].builtin"));
}

#[test]
fn builtin_must_not_also_name_an_issuer() {
    let text = ISSUER.replace(
        "    builtin: true\n",
        "    builtin: true\n    issuer: \"http://127.0.0.1:8080\"\n",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuers[0].issuer"));
    assert_eq!(e.line, line_of(&text, "    issuer: \"http"));
}

#[test]
fn unknown_keys_and_bad_values_are_located_by_the_parser() {
    let text = ISSUER.replace("  id_token_ttl: 1h", "  id_token_ttl: 1h\n  colour: blue");
    let e = only_error(&text);
    assert_eq!(e.line, line_of(&text, "colour"), "{e}");
    assert!(e.message.contains("colour"), "{e}");
    for (from, to, key) in [
        ("[ES256, RS256]", "[ES256, PS256]", "issuer.signing_algs[1]"),
        (
            "[client_credentials]",
            "[password]",
            "issuer.clients[0].grant_types[0]",
        ),
        (
            "key.rotated]",
            "key.exploded]",
            "issuer.webhooks[0].events[1]",
        ),
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "issuer.webhooks[0].secret",
        ),
        ("\"http://127.0.0.1:8080\"", "\"ftp://x\"", "issuer.url"),
        (
            "access_token_ttl: 15m",
            "access_token_ttl: soon",
            "issuer.access_token_ttl",
        ),
    ] {
        let text = ISSUER.replace(from, to);
        let e = only_error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, line_of(&text, to), "{e}");
    }
}

#[test]
fn lifetimes_are_bounded() {
    for (from, to, key) in [
        (
            "access_token_ttl: 15m",
            "access_token_ttl: 0s",
            "issuer.access_token_ttl",
        ),
        (
            "access_token_ttl: 15m",
            "access_token_ttl: 25h",
            "issuer.access_token_ttl",
        ),
        (
            "id_token_ttl: 1h",
            "id_token_ttl: 0s",
            "issuer.id_token_ttl",
        ),
        (
            "key_rotation: 30d",
            "key_rotation: 10m",
            "issuer.key_rotation",
        ),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 31d",
            "issuer.refresh_token_idle_ttl",
        ),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  refresh_reuse_grace: 61s",
            "issuer.refresh_reuse_grace",
        ),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  key_sync_interval: 0s",
            "issuer.key_sync_interval",
        ),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  key_sync_interval: 2h",
            "issuer.key_sync_interval",
        ),
        ("sqlite://portcullis.db", "mysql://db", "issuer.database"),
        (
            "[ES256, RS256]",
            "[ES256, ES256, RS256]",
            "issuer.signing_algs",
        ),
        ("[ES256, RS256]", "[]", "issuer.signing_algs"),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  revocation: { max_entries: 99 }",
            "issuer.revocation.max_entries",
        ),
        (
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  revocation: { sync_interval: 500ms }",
            "issuer.revocation.sync_interval",
        ),
    ] {
        let e = only_error(&ISSUER.replace(from, to));
        assert_eq!(e.key.as_deref(), Some(key), "{to}: {e}");
    }
    let ok = ISSUER
        .replace(
            "refresh_token_idle_ttl: 7d",
            "refresh_token_idle_ttl: 7d\n  refresh_reuse_grace: 60s",
        )
        .replace("sqlite://portcullis.db", "postgres://u@127.0.0.1/test");
    let s = parse(&ok).expect("valid").issuer.expect("section");
    assert_eq!(s.refresh_reuse_grace, Duration::from_secs(60));
    let ok = ISSUER.replace(
        "refresh_token_idle_ttl: 7d",
        "refresh_token_idle_ttl: 7d\n  revocation:\n    max_entries: 1000\n    sync_interval: 1h",
    );
    let s = parse(&ok).expect("valid").issuer.expect("section");
    assert_eq!(s.revocation.max_entries, 1000);
    assert_eq!(s.revocation.sync_interval, Duration::from_secs(3600));
}

#[test]
fn public_and_confidential_clients() {
    let text = ISSUER.replace(
        "      public: true\n",
        "      public: true\n      client_secret: nope\n      require_pkce: false\n",
    );
    let errs = errors(&text);
    let keys: Vec<_> = errs.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        vec![
            "issuer.clients[1].client_secret",
            "issuer.clients[1].require_pkce"
        ]
    );
    let text = ISSUER.replace("      client_secret: \"${BILLING_SECRET}\"\n", "");
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[0]"));
    assert!(e.message.contains("client_secret"), "{e}");
    assert_eq!(e.line, line_of(&text, "client_id: billing-service"));
    // A confidential client needs PKCE unless it opts out.
    let c = parse(ISSUER).expect("valid");
    assert!(c.issuer.expect("section").clients[0].require_pkce);
}

#[test]
fn grant_types_must_fit_the_client() {
    for (from, to, needle) in [
        ("[client_credentials]", "[]", "required"),
        (
            "[authorization_code, refresh_token]",
            "[client_credentials]",
            "public client",
        ),
        (
            "[authorization_code, refresh_token]",
            "[refresh_token]",
            "refresh_token",
        ),
        (
            "[client_credentials]",
            "[client_credentials, client_credentials]",
            "twice",
        ),
    ] {
        let e = only_error(&ISSUER.replace(from, to));
        assert!(e.message.contains(needle), "{to}: {e}");
        assert!(
            e.key.as_deref().is_some_and(|k| k.ends_with("grant_types")),
            "{e}"
        );
    }
    let text = ISSUER.replace("      grant_types: [client_credentials]\n", "");
    assert_eq!(
        only_error(&text).key.as_deref(),
        Some("issuer.clients[0].grant_types")
    );
    // `authorization_code` without a redirect URI is valid (no sign-in can
    // complete until one is registered), as in the anonymous grant's usual
    // client: public, `[authorization_code, refresh_token, anonymous]`.
    let text = ISSUER.replace(
        "      redirect_uris: [\"http://127.0.0.1:3000/callback\"]\n      grant_types: [authorization_code, refresh_token]",
        "      grant_types: [authorization_code, refresh_token, anonymous]",
    );
    let c = parse(&text).expect("valid");
    assert!(
        c.issuer.expect("section").clients[1]
            .redirect_uris
            .is_empty()
    );
}

#[test]
fn the_anonymous_grant_is_for_public_clients_with_refresh_tokens() {
    // A public client with the anonymous grant and refresh_token alone is
    // valid: it needs no redirect URI.
    let text = ISSUER.replace(
        "      redirect_uris: [\"http://127.0.0.1:3000/callback\"]\n      grant_types: [authorization_code, refresh_token]",
        "      grant_types: [anonymous, refresh_token]",
    );
    let c = parse(&text).expect("valid");
    let grants = &c.issuer.expect("section").clients[1].grant_types;
    assert_eq!(grants, &[GrantType::Anonymous, GrantType::RefreshToken]);
    for (from, to, needle) in [
        (
            "[client_credentials]",
            "[client_credentials, anonymous, refresh_token]",
            "public clients",
        ),
        (
            "[authorization_code, refresh_token]",
            "[authorization_code, anonymous]",
            "needs `refresh_token`",
        ),
    ] {
        let e = only_error(&ISSUER.replace(from, to));
        assert!(e.message.contains(needle), "{to}: {e}");
        assert!(
            e.key.as_deref().is_some_and(|k| k.ends_with("grant_types")),
            "{e}"
        );
    }
    // The admin API's scope is never within reach of a client anyone can
    // use without credentials.
    let text = ISSUER.replace(
        "[authorization_code, refresh_token]\n      scopes: { \"https://api.example.test\": [read:data, write:data] }",
        "[authorization_code, refresh_token, anonymous]\n      scopes: { \"http://127.0.0.1:8080/admin/v1\": [portcullis:admin] }",
    );
    let e = only_error(&text);
    assert!(e.message.contains("admin API scopes"), "{e}");
    assert_eq!(
        e.key.as_deref(),
        Some("issuer.clients[1].scopes.http://127.0.0.1:8080/admin/v1")
    );
}

#[test]
fn redirect_uris_must_be_absolute() {
    let text = ISSUER.replace("\"http://127.0.0.1:3000/callback\"", "\"/callback\"");
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[1].redirect_uris[0]"));
    assert_eq!(e.line, line_of(&text, "/callback"));
}

#[test]
fn client_scopes_must_name_declared_resources() {
    let text = ISSUER.replace(
        "scopes: { \"https://api.example.test\": [read:data] }",
        "scopes: { \"https://other.example.test\": [read:data] }",
    );
    let e = only_error(&text);
    assert_eq!(
        e.key.as_deref(),
        Some("issuer.clients[0].scopes.https://other.example.test")
    );
    assert_eq!(e.line, line_of(&text, "other.example.test"));
    let text = ISSUER.replace("[read:data, write:data] }", "[read:data, admin] }");
    let e = only_error(&text);
    assert!(e.message.contains("`admin`"), "{e}");
    // Without declared resources, the database holds them: no check here.
    let text = ISSUER
        .replace(
            "  resources:\n    - identifier: \"https://api.example.test\"\n      scopes: [read:data, write:data]\n",
            "",
        )
        .replace("[read:data] }", "[anything] }");
    assert!(parse(&text).is_ok());
    let e = only_error(&ISSUER.replace("[read:data] }", "[\"read data\"] }"));
    assert!(e.message.contains("not a valid scope"), "{e}");
}

#[test]
fn id_token_algorithm_must_be_one_the_issuer_signs_with() {
    let text = ISSUER.replace(
        "      public: true\n",
        "      public: true\n      id_token_signed_response_alg: EdDSA\n",
    );
    let e = only_error(&text);
    assert_eq!(
        e.key.as_deref(),
        Some("issuer.clients[1].id_token_signed_response_alg")
    );
    // Without RS256, a client that gets ID tokens must name its algorithm.
    let text = ISSUER.replace("[ES256, RS256]", "[ES256]");
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[1]"));
    let text = text.replace(
        "      public: true\n",
        "      public: true\n      id_token_signed_response_alg: ES256\n",
    );
    let c = parse(&text).expect("valid");
    assert_eq!(
        c.issuer.expect("section").clients[1].id_token_signed_response_alg,
        SigningAlg::ES256
    );
}

#[test]
fn resources_clients_and_webhooks_are_unique() {
    let text = ISSUER.replace(
        "  webhooks:\n",
        "    - client_id: web-app\n      public: true\n      grant_types: [authorization_code]\n      redirect_uris: [\"https://x.test/cb\"]\n  webhooks:\n",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[2].client_id"));
    let text = ISSUER.replace(
        "      scopes: [read:data, write:data]\n  clients:",
        "      scopes: [read:data, write:data]\n    - identifier: \"https://api.example.test\"\n  clients:",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.resources[1].identifier"));
    let errs = errors(&ISSUER.replace(
        "\"https://api.example.test\"\n      scopes",
        "\"api\"\n      scopes",
    ));
    assert_eq!(
        errs[0].key.as_deref(),
        Some("issuer.resources[0].identifier")
    );
    let e = only_error(&ISSUER.replace("[user.created, key.rotated]", "[]"));
    assert_eq!(e.key.as_deref(), Some("issuer.webhooks[0].events"));
}

#[test]
fn a_webhook_may_name_the_secret_it_rotates_out() {
    let secret = "      secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
    let old = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXRlc3Rz";
    let text = ISSUER.replace(
        secret,
        &format!("{secret}      previous_secret: \"{old}\"\n"),
    );
    let s = parse(&text).unwrap().issuer.unwrap();
    let previous = s.webhooks[0].previous_secret.as_ref().unwrap();
    assert_eq!(previous.key(), STANDARD.decode(&old[6..]).unwrap());
    // The same secret twice, or a malformed one, is refused where written.
    let text = ISSUER.replace(
        secret,
        &format!("{secret}      previous_secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"),
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.webhooks[0].previous_secret"));
    let text = ISSUER.replace(
        secret,
        &format!("{secret}      previous_secret: \"nope\"\n"),
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.webhooks[0].previous_secret"));
    assert!(!e.message.contains("nope"), "{e}");
}

#[test]
fn every_issuer_error_is_collected() {
    let text = ISSUER
        .replace("access_token_ttl: 15m", "access_token_ttl: 2d")
        .replace("      client_secret: \"${BILLING_SECRET}\"\n", "")
        .replace("\"http://127.0.0.1:3000/callback\"", "\"callback\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.windows(2).all(|w| w[0].line <= w[1].line));
}

mod hooks;
mod security;

#[test]
fn a_route_the_issuer_would_shadow_is_refused_where_it_is_written() {
    for pattern in [
        "/oauth/*",
        "/oauth/token",
        "/oauth/{endpoint}",
        "/login",
        "/login/*",
        "/logout",
        "/.well-known/*",
        "/.well-known/jwks.json",
        "/admin/v1/*",
        "/admin/v1/users",
        "/admin/v1/{id}/*",
    ] {
        let text = ISSUER.replace("  - path: /*\n", &format!("  - path: {pattern}\n"));
        let e = only_error(&text);
        assert_eq!(e.key.as_deref(), Some("routes[0].path"), "{pattern}: {e}");
        assert_eq!(e.line, line_of(&text, &format!("path: {pattern}")), "{e}");
        assert!(e.to_string().contains("built-in issuer"), "{e}");
    }
    // General patterns may be shadowed on purpose, and neighbours of the
    // issuer's paths are not shadowed at all.
    for pattern in [
        "/*",
        "/{tenant}/*",
        "/{tenant}/token",
        "/.well-known/security.txt",
        "/oauth",
        "/oauth/callback",
        "/oauth/token/extra",
        "/logins/*",
        "/admin",
        "/admin/*",
        "/admin/{version}/users",
        "/admin/v1",
        "/admin/v2/*",
        "/api/oauth/token",
    ] {
        let text = ISSUER.replace("  - path: /*\n", &format!("  - path: {pattern}\n"));
        parse(&text).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    }
    // Broader than the admin API: allowed, and said at startup.
    let partly = |p: &str| {
        let pattern: PathPattern =
            crate::config::value::ParseValue::parse_value(p).expect("pattern");
        crate::config::validate::partly_shadowed_by_issuer(&pattern)
    };
    for p in ["/admin/*", "/admin/{version}/users", "/admin/{version}/*"] {
        assert!(partly(p), "{p}");
    }
    for p in [
        "/admin/v1/*",
        "/admin",
        "/admin/v2/*",
        "/admin/{version}",
        "/*",
        "/oauth/*",
    ] {
        assert!(!partly(p), "{p}");
    }
    // Without the issuer nothing is reserved.
    let gateway_only = "upstreams: { a: { url: \"http://127.0.0.1:1\" } }\nroutes: [{ path: /oauth/*, upstream: a, auth: anonymous }]\n";
    Config::from_yaml_with_env(gateway_only, Path::new("gateway.yaml"), &|_| None)
        .expect("no issuer, no reserved paths");
}
