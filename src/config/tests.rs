use std::path::Path;

use super::*;

const GOOD: &str = r#"
server:
  listen: "127.0.0.1:8080"
admin:
  listen: "127.0.0.1:9901"
issuers:
  - id: main
    issuer: "https://id.example.test"
    jwks_uri: "https://id.example.test/.well-known/jwks.json"
    audiences: ["https://api.example.test"]
    algorithms: [RS256, ES256, EdDSA]
    leeway: 30s
upstreams:
  api: { url: "http://127.0.0.1:9000", connect_timeout: 5s, timeout: 30s }
routes:
  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /orgs/{org}/items/*
    methods: [GET, HEAD]
    upstream: api
    scopes: [read:data]
    org_param: org
    issuers: [main]
  - path: /*
    upstream: api
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml_with_env(text, Path::new("gateway.yaml"), &|n| {
        (n == "UPSTREAM").then(|| "http://127.0.0.1:9000".to_owned())
    })
}

fn only_error(text: &str) -> ConfigError {
    let errs = parse(text).expect_err("config must be refused");
    assert_eq!(errs.errors().len(), 1, "{errs}");
    errs.errors()[0].clone()
}

#[test]
fn the_contract_example_is_valid() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[0].auth, AuthMode::Anonymous);
    assert_eq!(c.routes[1].issuers, Some(vec![0]));
    assert_eq!(c.routes[1].methods.as_ref().map(Vec::len), Some(2));
    assert_eq!(c.issuers[0].algorithms.len(), 3);
    assert_eq!(c.identity_headers.len(), 5);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn unknown_key_names_line_column_and_key() {
    let text = GOOD.replace(
        "    auth: anonymous",
        "    auth: anonymous\n    colour: blue",
    );
    let e = only_error(&text);
    assert_eq!(e.line, 19, "{e}");
    assert!(
        e.key.as_deref().is_some_and(|k| k.starts_with("routes[0]")),
        "{e}"
    );
    assert!(e.message.contains("colour"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("gateway.yaml:19:5: routes[0]"), "{shown}");
}

#[test]
fn bad_duration_is_reported_where_it_is() {
    let e = only_error(&GOOD.replace("leeway: 30s", "leeway: 30 seconds"));
    assert_eq!(e.line, 12, "{e}");
    assert_eq!(e.key.as_deref(), Some("issuers[0].leeway"), "{e}");
}

#[test]
fn cross_reference_errors_are_all_collected_with_positions() {
    let text = GOOD
        .replace(
            "  - path: /*\n    upstream: api",
            "  - path: /*\n    upstream: nowhere",
        )
        .replace("issuers: [main]", "issuers: [other]");
    let errs = parse(&text).expect_err("refused");
    let list = errs.errors();
    assert_eq!(list.len(), 2, "{errs}");
    assert_eq!(list[0].key.as_deref(), Some("routes[1].issuers[0]"));
    assert_eq!(list[0].line, 24);
    assert_eq!(list[1].key.as_deref(), Some("routes[2].upstream"));
    assert_eq!(list[1].line, 26);
    assert!(list[1].message.contains("nowhere"));
}

#[test]
fn exactly_one_key_source() {
    let text = GOOD.replace(
        "    jwks_uri: \"https://id.example.test/.well-known/jwks.json\"\n",
        "",
    );
    let errs = parse(&text).expect_err("refused");
    assert!(errs.errors()[0].message.contains("exactly one"), "{errs}");
    assert_eq!(errs.errors()[0].line, 7);
    let text = GOOD.replace(
        "    leeway: 30s\n",
        "    leeway: 30s\n    jwks_file: keys.json\n",
    );
    let errs = parse(&text).expect_err("refused");
    assert!(errs.errors()[0].message.contains("only one"), "{errs}");
}

#[test]
fn org_param_must_be_a_path_parameter() {
    let e = only_error(&GOOD.replace("org_param: org", "org_param: tenant"));
    assert_eq!(e.key.as_deref(), Some("routes[1].org_param"));
}

#[test]
fn env_expansion_and_unset_variables() {
    let text = GOOD.replace("\"http://127.0.0.1:9000\"", "\"${UPSTREAM}\"");
    assert!(parse(&text).is_ok());
    let e = only_error(&GOOD.replace("\"http://127.0.0.1:9000\"", "\"${NOT_SET}\""));
    assert!(e.message.contains("NOT_SET"), "{e}");
    assert_eq!(e.line, 14);
}

#[test]
fn never_accepted_algorithms_are_refused() {
    let e = only_error(&GOOD.replace("[RS256, ES256, EdDSA]", "[RS256, HS256]"));
    assert!(e.message.contains("HS256"), "{e}");
    assert_eq!(e.line, 11);
}

#[test]
fn identity_headers_replace_defaults_and_refuse_reserved_names() {
    let text = format!("{GOOD}identity_headers:\n  sub: X-User\n  email: X-Email\n");
    let c = parse(&text).expect("valid");
    assert_eq!(c.identity_headers.len(), 2);
    let e = only_error(&format!("{GOOD}identity_headers:\n  sub: Authorization\n"));
    assert_eq!(e.key.as_deref(), Some("identity_headers.sub"));
    // What the gateway sets, removes or judges itself, in any spelling.
    for name in [
        "X-Real-IP",
        "Forwarded",
        "client-cert",
        "X_Forwarded_For",
        "X_Request_Id",
        "X-HTTP-Method-Override",
        "X_Original_URL",
        "Proxy-Connection",
    ] {
        let e = only_error(&format!("{GOOD}identity_headers:\n  sub: {name}\n"));
        assert_eq!(e.key.as_deref(), Some("identity_headers.sub"), "{name}");
    }
    // Two spellings of one field.
    let e = only_error(&format!(
        "{GOOD}identity_headers:\n  sub: X-User\n  email: X_User\n"
    ));
    assert!(e.message.contains("two claims"), "{}", e.message);
}

#[test]
fn anonymous_routes_cannot_carry_requirements() {
    let text = GOOD.replace(
        "    auth: anonymous",
        "    auth: anonymous\n    scopes: [x]",
    );
    assert_eq!(only_error(&text).key.as_deref(), Some("routes[0]"));
}

#[test]
fn route_requirements_must_fit_the_identity_headers() {
    let text = GOOD.replace(
        "    scopes: [read:data]\n",
        "    scopes: [read:data]\n    roles: [\"viewer,admin\"]\n",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("routes[1].roles[0]"));
    assert_eq!(e.line, 23);
    assert!(e.message.contains("commas"), "{}", e.message);
    let text = GOOD.replace("scopes: [read:data]", "scopes: [\"read data\"]");
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("routes[1].scopes[0]"));
    assert!(e.message.contains("spaces"), "{}", e.message);
}

#[test]
fn matrix_params_and_method_override_are_opt_in() {
    let c = parse(GOOD).expect("valid");
    assert!(!c.routes[2].matrix_params && !c.routes[2].method_override);
    let text = GOOD.replace(
        "  - path: /*\n    upstream: api\n",
        "  - path: /*\n    upstream: api\n    matrix_params: true\n    method_override: true\n",
    );
    let c = parse(&text).expect("valid");
    assert!(c.routes[2].matrix_params && c.routes[2].method_override);
    // A literal `;` in a pattern could never match: refused where it is written.
    let e = only_error(&GOOD.replace("path: /public/*", "path: /public;v=1/*"));
    assert_eq!(e.key.as_deref(), Some("routes[0].path"));
    assert!(e.message.contains("`;`"), "{}", e.message);
}

/// The production keys as the contract shows them.
const PRODUCTION: &str = r#"
server:
  listen: "0.0.0.0:8443"
  tls: { cert: tls/cert.pem, key: tls/key.pem }
  client_ca: tls/clients-ca.pem
  client_auth: optional
  trusted_proxies: ["10.0.0.0/8", "192.0.2.1"]
  shutdown_grace: 30s
  limits:
    max_header_bytes: 32768
    max_connections: 10000
    header_read_timeout: 10s
    idle_timeout: 60s
    body_timeout: 30s
    token_cache: 4MiB
forward_auth:
  listen: "127.0.0.1:9902"
upstreams:
  api:
    url: "https://api.internal:8443"
    protocol: h2
    ca_file: ca.pem
    client_cert: { cert: client.pem, key: client.key }
routes:
  - path: /api/*
    upstream: api
    max_body: 10MB
    websocket: true
    cors:
      allow_origins: ["https://app.example.test"]
      allow_methods: [GET, POST]
      allow_headers: [authorization, content-type]
      max_age: 10m
      allow_credentials: false
issuers:
  - id: opaque-idp
    issuer: "https://idp.example.test"
    audiences: ["https://api.example.test"]
    introspection:
      url: "https://idp.example.test/oauth/introspect"
      client_id: gateway
      client_secret: "${INTROSPECTION_SECRET:-s3cret}"
      cache: 60s
"#;

#[test]
fn the_production_keys_are_valid() {
    let c = Config::from_yaml_with_env(PRODUCTION, Path::new("/etc/p/gateway.yaml"), &|_| None)
        .expect("valid");
    assert_eq!(c.server.tls.len(), 1);
    assert_eq!(c.server.tls[0].cert, Path::new("/etc/p/tls/cert.pem"));
    assert_eq!(c.server.client_auth, ClientAuth::Optional);
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.limits.body_timeout, Duration::from_secs(30));
    assert_eq!(c.server.limits.max_concurrent_streams, 100);
    assert_eq!(c.server.limits.token_cache, 4 << 20);
    assert_eq!(c.forward_auth.map(|f| f.listen.port()), Some(9902));
    let u = &c.upstreams[0];
    assert_eq!(u.protocol, UpstreamProtocol::H2);
    assert_eq!(u.ca_file.as_deref(), Some(Path::new("/etc/p/ca.pem")));
    let r = &c.routes[0];
    assert_eq!(r.max_body, Some(10_000_000));
    assert!(r.websocket);
    let cors = r.cors.as_ref().expect("cors");
    assert_eq!(cors.allow_methods.len(), 2);
    assert_eq!(cors.max_age, Some(Duration::from_secs(600)));
    let i = &c.issuers[0];
    assert_eq!(i.keys, KeySourceConfig::None);
    let intro = i.introspection.as_ref().expect("introspection");
    assert_eq!(intro.client_secret.expose(), "s3cret");
    assert_eq!(intro.cache, Duration::from_secs(60));
}

#[test]
fn a_certificate_list_needs_server_names_after_the_first() {
    let text = PRODUCTION.replace(
        "  tls: { cert: tls/cert.pem, key: tls/key.pem }\n",
        "  tls:\n    - { cert: a.pem, key: a.key }\n    - { cert: b.pem, key: b.key }\n    - { cert: c.pem, key: c.key, server_names: [\"Api.test\", \"*.api.test\", \"bad name\"] }\n    - { cert: d.pem, key: d.key, server_names: [\"api.test\"] }\n",
    );
    let errs =
        Config::from_yaml_with_env(&text, Path::new("g.yaml"), &|_| None).expect_err("refused");
    let keys: Vec<_> = errs.errors().iter().filter_map(|e| e.key.clone()).collect();
    assert_eq!(
        keys,
        [
            "server.tls[1]",
            "server.tls[2].server_names",
            "server.tls[3].server_names"
        ],
        "{errs}"
    );
}

#[test]
fn production_keys_are_cross_checked() {
    let cases = [
        (
            PRODUCTION.replace("  tls: { cert: tls/cert.pem, key: tls/key.pem }\n", ""),
            "server.client_ca",
        ),
        (
            PRODUCTION.replace("https://api.internal:8443", "http://api.internal:8080"),
            "upstreams.api.ca_file",
        ),
        (
            PRODUCTION
                .replace("[\"https://app.example.test\"]", "[\"*\"]")
                .replace("allow_credentials: false", "allow_credentials: true"),
            "routes[0].cors.allow_credentials",
        ),
        (
            PRODUCTION.replace(
                "[\"https://app.example.test\"]",
                "[\"https://app.example.test/x\"]",
            ),
            "routes[0].cors.allow_origins[0]",
        ),
        (
            PRODUCTION.replace("\"127.0.0.1:9902\"", "\"0.0.0.0:8443\""),
            "forward_auth.listen",
        ),
        (
            PRODUCTION.replace("max_header_bytes: 32768", "max_header_bytes: 10"),
            "server.limits.max_header_bytes",
        ),
        (
            PRODUCTION.replace("body_timeout: 30s", "body_timeout: 0s"),
            "server.limits.body_timeout",
        ),
        (
            PRODUCTION.replace("token_cache: 4MiB", "token_cache: 1KiB"),
            "server.limits.token_cache",
        ),
        (
            PRODUCTION.replace("cache: 60s", "cache: 2h"),
            "issuers[0].introspection.cache",
        ),
    ];
    for (text, key) in cases {
        let errs =
            Config::from_yaml_with_env(&text, Path::new("g.yaml"), &|_| None).expect_err(key);
        assert!(
            errs.errors().iter().any(|e| e.key.as_deref() == Some(key)),
            "{key}: {errs}"
        );
    }
    // A bad size or duration is reported where it is written.
    for (from, to, line, key) in [
        (
            "max_body: 10MB",
            "max_body: 10 parsecs",
            27,
            "routes[0].max_body",
        ),
        (
            "body_timeout: 30s",
            "body_timeout: soon",
            14,
            "server.limits.body_timeout",
        ),
        (
            "token_cache: 4MiB",
            "token_cache: lots",
            15,
            "server.limits.token_cache",
        ),
    ] {
        let errs =
            Config::from_yaml_with_env(&PRODUCTION.replace(from, to), Path::new("g.yaml"), &|_| {
                None
            })
            .expect_err(key);
        let e = &errs.errors()[0];
        assert_eq!((e.line, e.key.as_deref()), (line, Some(key)), "{errs}");
        if key.ends_with("max_body") {
            assert!(e.message.contains("size"), "{errs}");
        }
    }
}

#[test]
fn plain_http_to_an_issuer_is_loopback_only_unless_allowed() {
    let with = |url: &str, extra: &str| {
        GOOD.replace(
            "    jwks_uri: \"https://id.example.test/.well-known/jwks.json\"\n",
            &format!("    jwks_uri: \"{url}\"\n{extra}"),
        )
    };
    for url in [
        "http://127.0.0.1:9100/jwks.json",
        "http://127.9.9.9/jwks.json",
        "http://localhost:9100/jwks.json",
        "http://[::1]:9100/jwks.json",
        "https://id.example.test/jwks.json",
    ] {
        parse(&with(url, "")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    for url in [
        "http://id.example.test/jwks.json",
        "http://10.0.0.7/jwks.json",
        "http://[::ffff:10.0.0.7]/jwks.json",
        "http://localhost.example.test/jwks.json",
    ] {
        let err = only_error(&with(url, ""));
        assert_eq!(err.key.as_deref(), Some("issuers[0].jwks_uri"), "{url}");
        assert!(err.to_string().contains("allow_plain_http"), "{err}");
        assert!(err.line > 0, "{url}: {err}");
        parse(&with(url, "    allow_plain_http: true\n"))
            .unwrap_or_else(|e| panic!("{url} allowed: {e}"));
    }
    let discovery = GOOD.replace(
        "    jwks_uri: \"https://id.example.test/.well-known/jwks.json\"\n",
        "    discovery_url: \"http://id.example.test/.well-known/openid-configuration\"\n",
    );
    assert_eq!(
        only_error(&discovery).key.as_deref(),
        Some("issuers[0].discovery_url")
    );
    let introspection = GOOD.replace(
        "    jwks_uri: \"https://id.example.test/.well-known/jwks.json\"\n",
        "    introspection: { url: \"http://id.example.test/introspect\", client_id: gw, client_secret: s }\n",
    );
    let err = only_error(&introspection);
    assert_eq!(err.key.as_deref(), Some("issuers[0].introspection.url"));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn forward_auth_trusts_its_request_line_only_when_told() {
    let c = parse(&format!(
        "{GOOD}forward_auth:\n  listen: \"127.0.0.1:9902\"\n"
    ))
    .expect("valid");
    assert_eq!(c.forward_auth.map(|f| f.trust_request_line), Some(false));
    let c = parse(&format!(
        "{GOOD}forward_auth:\n  listen: \"127.0.0.1:9902\"\n  trust_request_line: true\n"
    ))
    .expect("valid");
    assert_eq!(c.forward_auth.map(|f| f.trust_request_line), Some(true));
    let e = only_error(&format!(
        "{GOOD}forward_auth:\n  listen: \"127.0.0.1:9902\"\n  trust_request_line: sometimes\n"
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("forward_auth.trust_request_line"),
        "{e}"
    );
    assert_eq!(e.line, GOOD.lines().count() + 3, "{e}");
}
