//! `issuer.hooks`: blocking hooks, their defaults, and their errors located by
//! file, line and key.

use std::time::Duration;

use super::{ISSUER, errors, line_of, only_error, parse};
use crate::config::{HookEvent, OnFailure};

/// The contract's example with two hooks appended to the `issuer:` section.
fn with_hooks(hooks: &str) -> String {
    ISSUER.replace("  webhooks:\n", &format!("  hooks:\n{hooks}  webhooks:\n"))
}

const TWO: &str = r#"    - event: token.pre_issue
      url: "https://hooks.example.test/pre-issue"
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
      timeout: 2s
      on_failure: allow
    - event: user.pre_create
      url: "https://hooks.example.test/pre-create"
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

#[test]
fn hooks_parse_with_their_defaults() {
    let s = parse(&with_hooks(TWO))
        .expect("valid")
        .issuer
        .expect("issuer");
    assert_eq!(s.hooks.len(), 2);
    let pre_issue = &s.hooks[0];
    assert_eq!(pre_issue.event, HookEvent::TokenPreIssue);
    assert_eq!(pre_issue.url, "https://hooks.example.test/pre-issue");
    assert_eq!(pre_issue.secret.key().len(), 24);
    assert_eq!(pre_issue.timeout, Duration::from_secs(2));
    assert_eq!(pre_issue.on_failure, OnFailure::Allow);
    // Defaults: 5 s, and a failure denies.
    let pre_create = &s.hooks[1];
    assert_eq!(pre_create.event, HookEvent::UserPreCreate);
    assert_eq!(pre_create.timeout, Duration::from_secs(5));
    assert_eq!(pre_create.on_failure, OnFailure::Deny);
    // None by default; the secret never shows in Debug output.
    assert!(
        parse(ISSUER)
            .expect("valid")
            .issuer
            .expect("issuer")
            .hooks
            .is_empty()
    );
    assert!(!format!("{s:?}").contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

#[test]
fn bad_hook_values_name_their_key_and_line() {
    for (from, to, key) in [
        (
            "event: user.pre_create",
            "event: user.created",
            "issuer.hooks[1].event",
        ),
        (
            "on_failure: allow",
            "on_failure: ignore",
            "issuer.hooks[0].on_failure",
        ),
        ("timeout: 2s", "timeout: soon", "issuer.hooks[0].timeout"),
        (
            "\"https://hooks.example.test/pre-create\"",
            "\"ftp://hooks.example.test/x\"",
            "issuer.hooks[1].url",
        ),
        (
            "secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n      timeout",
            "secret: \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n      timeout",
            "issuer.hooks[0].secret",
        ),
    ] {
        let text = with_hooks(&TWO.replace(from, to));
        let e = only_error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        let first_line = to.lines().next().expect("a line");
        assert_eq!(e.line, line_of(&text, first_line), "{e}");
        assert!(e.to_string().contains("gateway.yaml"), "{e}");
    }
    // A secret is never echoed, even when it is refused.
    let text = with_hooks(&TWO.replace("whsec_MfKQ", "whsec_!!MfKQ"));
    for e in errors(&text) {
        assert!(!e.to_string().contains("MfKQ9r8G"), "{e}");
    }
    // An unknown key, and a hook without its event.
    let text = with_hooks(&TWO.replace("timeout: 2s", "timeout: 2s\n      retries: 3"));
    let e = only_error(&text);
    assert!(e.message.contains("retries"), "{e}");
    assert_eq!(e.line, line_of(&text, "retries"));
    let text = with_hooks(&TWO.replace("    - event: user.pre_create\n      url", "    - url"));
    let e = only_error(&text);
    assert!(e.message.contains("event"), "{e}");
}

#[test]
fn hook_timeouts_are_bounded() {
    for bad in ["0s", "31s", "1h"] {
        let text = with_hooks(&TWO.replace("timeout: 2s", &format!("timeout: {bad}")));
        let e = only_error(&text);
        assert_eq!(e.key.as_deref(), Some("issuer.hooks[0].timeout"), "{bad}");
        assert_eq!(e.line, line_of(&text, &format!("timeout: {bad}")), "{bad}");
    }
    let text = with_hooks(&TWO.replace("timeout: 2s", "timeout: 30s"));
    assert!(parse(&text).is_ok());
}

#[test]
fn hook_urls_obey_the_webhook_address_policy_and_are_not_repeated() {
    // An issuer at a public URL: the policy is on by default there.
    let public = |text: String| {
        text.replace(
            "url: \"http://127.0.0.1:8080\"",
            "url: \"https://id.example.test\"",
        )
    };
    let private = public(with_hooks(&TWO.replace(
        "https://hooks.example.test/pre-create",
        "http://127.0.0.1:9000/pre-create",
    )));
    let e = only_error(&private);
    assert_eq!(e.key.as_deref(), Some("issuer.hooks[1].url"));
    assert_eq!(e.line, line_of(&private, "127.0.0.1:9000/pre-create"));
    assert!(
        e.message.contains("loopback") && e.message.contains("allow_private"),
        "{e}"
    );
    let link_local = public(with_hooks(&TWO.replace(
        "https://hooks.example.test/pre-issue",
        "http://169.254.169.254/latest",
    )));
    assert_eq!(
        only_error(&link_local).key.as_deref(),
        Some("issuer.hooks[0].url")
    );
    let dev = private.replace(
        "  hooks:\n",
        "  webhook_address_policy: { allow_private: true }\n  hooks:\n",
    );
    assert!(parse(&dev).is_ok());
    // The same URL for two events is fine; twice for one event is not.
    let both = with_hooks(&TWO.replace("pre-create\"", "pre-issue\""));
    assert!(parse(&both).is_ok());
    let twice = with_hooks(&format!(
        "{TWO}{}",
        TWO.lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    ));
    let e = only_error(&twice);
    assert_eq!(e.key.as_deref(), Some("issuer.hooks[2].url"));
}
