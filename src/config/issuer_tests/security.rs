//! The `issuer:` checks that keep privileges where they belong: the admin
//! API's scope on its own resource only.

use super::{ISSUER, errors, line_of, only_error, parse};

const ADMIN_API: &str = "http://127.0.0.1:8080/admin/v1";

#[test]
fn clients_may_be_given_the_admin_scope_on_the_admin_api() {
    let text = ISSUER.replace(
        "scopes: { \"https://api.example.test\": [read:data] }",
        &format!("scopes: {{ \"{ADMIN_API}\": [\"portcullis:admin\"] }}"),
    );
    let c = parse(&text).expect("valid");
    let issuer = c.issuer.expect("issuer");
    assert_eq!(
        issuer.clients[0].scopes,
        [(ADMIN_API.to_owned(), vec!["portcullis:admin".to_owned()])]
    );
    // The admin API has one scope.
    let text = ISSUER.replace(
        "scopes: { \"https://api.example.test\": [read:data] }",
        &format!("scopes: {{ \"{ADMIN_API}\": [\"portcullis:admin\", read:data] }}"),
    );
    let e = only_error(&text);
    assert_eq!(
        e.key.as_deref(),
        Some(format!("issuer.clients[0].scopes.{ADMIN_API}[1]").as_str())
    );
    assert!(e.message.contains("has one scope"), "{e}");
}

#[test]
fn no_other_resource_may_define_or_grant_the_admin_scope() {
    // A resource defining it.
    let text = ISSUER.replace(
        "scopes: [read:data, write:data]",
        "scopes: [read:data, write:data, \"portcullis:admin\"]",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.resources[0].scopes[2]"));
    assert_eq!(e.line, line_of(&text, "portcullis:admin"));
    assert!(e.message.contains(ADMIN_API), "{e}");
    // Declaring the admin API's resource itself.
    let text = ISSUER.replace(
        "    - identifier: \"https://api.example.test\"\n      scopes: [read:data, write:data]\n",
        &format!(
            "    - identifier: \"https://api.example.test\"\n      scopes: [read:data, write:data]\n    - identifier: \"{ADMIN_API}\"\n      scopes: [\"portcullis:admin\"]\n"
        ),
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.resources[1].identifier"));
    assert!(e.message.contains("declares itself"), "{e}");
    // A client granted it on another resource, with or without declared
    // resources (the database holds them then, and is not read here).
    let granted = ISSUER.replace(
        "scopes: { \"https://api.example.test\": [read:data] }",
        "scopes: { \"https://api.example.test\": [read:data, \"portcullis:admin\"] }",
    );
    let undeclared = granted.replace(
        "  resources:\n    - identifier: \"https://api.example.test\"\n      scopes: [read:data, write:data]\n",
        "",
    );
    for text in [granted, undeclared] {
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].key.as_deref(),
            Some("issuer.clients[0].scopes.https://api.example.test[1]")
        );
        assert!(errs[0].message.contains("exists only on"), "{}", errs[0]);
    }
}

#[test]
fn introspection_is_for_confidential_clients_and_declared_resources() {
    let text = ISSUER.replace(
        "      grant_types: [client_credentials]\n",
        "      grant_types: [client_credentials]\n      introspection: [\"https://api.example.test\"]\n",
    );
    let c = parse(&text).expect("valid");
    assert_eq!(
        c.issuer.expect("issuer").clients[0].introspection,
        ["https://api.example.test"]
    );
    let text = ISSUER.replace(
        "      grant_types: [client_credentials]\n",
        "      grant_types: [client_credentials]\n      introspection: [\"https://nope.example.test\"]\n",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[0].introspection[0]"));
    assert!(e.message.contains("not a resource declared"), "{e}");
    let text = ISSUER.replace(
        "      public: true\n",
        "      public: true\n      introspection: [\"https://api.example.test\"]\n",
    );
    let e = only_error(&text);
    assert_eq!(e.key.as_deref(), Some("issuer.clients[1].introspection"));
    assert!(e.message.contains("public client cannot introspect"), "{e}");
}

#[test]
fn the_configuration_never_shows_its_secrets() {
    let c = parse(ISSUER).expect("valid");
    for shown in [format!("{c:?}"), format!("{c:#?}")] {
        // The client secret (from the environment) and the webhook secret.
        assert!(!shown.contains("s3cret-from-env"), "{shown}");
        assert!(
            !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{shown}"
        );
        assert!(shown.contains("billing-service"));
    }
    let raw: crate::config::raw::RawClient = serde_yaml_ng::from_str(
        "{ client_id: c, client_secret: raw-secret-123, grant_types: [client_credentials] }",
    )
    .expect("raw client");
    let shown = format!("{raw:?}");
    assert!(
        !shown.contains("raw-secret-123") && shown.contains("<redacted>"),
        "{shown}"
    );
}

/// The fixture's issuer, published at a public URL (not a development one).
fn public_issuer() -> String {
    ISSUER.replace(
        "url: \"http://127.0.0.1:8080\"",
        "url: \"https://id.example.test\"",
    )
}

#[test]
fn the_webhook_address_policy_is_on_by_default_outside_development() {
    // An issuer at a loopback URL is a development one: its receivers are
    // on the same machine, and private addresses are allowed unless said
    // otherwise.
    for dev in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ] {
        let text = ISSUER
            .replace("url: \"http://127.0.0.1:8080\"", &format!("url: \"{dev}\""))
            .replace(
                "https://hooks.example.test/portcullis",
                "http://127.0.0.1:9000/portcullis",
            );
        let c = parse(&text).unwrap_or_else(|e| panic!("{dev}: {e:?}"));
        assert!(
            c.issuer
                .expect("issuer")
                .webhook_address_policy
                .allow_private,
            "{dev}"
        );
    }
    let strict = ISSUER
        .replace(
            "https://hooks.example.test/portcullis",
            "http://127.0.0.1:9000/portcullis",
        )
        .replace(
            "  webhooks:\n",
            "  webhook_address_policy: { allow_private: false }\n  webhooks:\n",
        );
    let e = only_error(&strict);
    assert_eq!(e.key.as_deref(), Some("issuer.webhooks[0].url"));
    // Hosts that only look local are not development.
    for public in [
        "https://127.0.0.1.example.test",
        "https://localhost.example.test",
    ] {
        let text = ISSUER.replace(
            "url: \"http://127.0.0.1:8080\"",
            &format!("url: \"{public}\""),
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{public}: {e:?}"));
        assert!(
            !c.issuer
                .expect("issuer")
                .webhook_address_policy
                .allow_private,
            "{public}"
        );
    }
}

#[test]
fn the_webhook_address_policy_is_on_by_default_and_checked() {
    let issuer = public_issuer();
    let c = parse(&issuer).expect("valid");
    let policy = c.issuer.expect("issuer").webhook_address_policy;
    assert!(!policy.allow_private && policy.allow.is_empty() && policy.deny.is_empty());
    // A configured webhook at an obviously private address is refused, with
    // its key and line, unless the policy allows it.
    let private = issuer.replace(
        "https://hooks.example.test/portcullis",
        "http://127.0.0.1:9000/portcullis",
    );
    let e = only_error(&private);
    assert_eq!(e.key.as_deref(), Some("issuer.webhooks[0].url"));
    assert!(
        e.message.contains("loopback") && e.message.contains("allow_private"),
        "{e}"
    );
    let dev = private.replace(
        "  webhooks:\n",
        "  webhook_address_policy: { allow_private: true, deny: [\"198.51.100.0/24\"] }\n  webhooks:\n",
    );
    let c = parse(&dev).expect("valid for development");
    let policy = c.issuer.expect("issuer").webhook_address_policy;
    assert!(policy.allow_private);
    assert_eq!(
        policy.deny,
        ["198.51.100.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    // An allowed range; a bad range and an unknown key are located errors.
    let allowed = private.replace(
        "  webhooks:\n",
        "  webhook_address_policy: { allow: [\"127.0.0.0/8\"] }\n  webhooks:\n",
    );
    assert!(parse(&allowed).is_ok());
    let bad = ISSUER.replace(
        "  webhooks:\n",
        "  webhook_address_policy: { deny: [\"10.0.0.0/33\"] }\n  webhooks:\n",
    );
    let e = only_error(&bad);
    assert!(
        e.key
            .as_deref()
            .is_some_and(|k| k.starts_with("issuer.webhook_address_policy.deny")),
        "{e:?}"
    );
    assert!(e.message.contains("10.0.0.0/33"), "{e}");
    let unknown = ISSUER.replace(
        "  webhooks:\n",
        "  webhook_address_policy: { allow_everything: true }\n  webhooks:\n",
    );
    let e = only_error(&unknown);
    assert!(e.message.contains("allow_everything"), "{e}");
}
