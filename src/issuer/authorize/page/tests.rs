//! The pages' escaping, their policy and what they may load.

use super::*;

#[test]
fn interpolated_values_are_escaped() {
    let page = login_form("t\"x", "c", "<script>", "a'b@c", Some("&"));
    assert!(page.contains("value=\"t&quot;x\""));
    assert!(page.contains("&lt;script&gt;"));
    assert!(page.contains("a&#39;b@c"));
    assert!(!page.contains("<script>"));
    let page = logout_confirmation("c\"1", &[("state", "<x>")]);
    assert!(page.contains("name=\"csrf\" value=\"c&quot;1\""));
    assert!(page.contains("name=\"state\" value=\"&lt;x&gt;\""));
}

/// The policy of `resp`, checked for what every page needs.
fn strict_policy(resp: &Response<Full<Bytes>>) -> String {
    let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    for needed in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(needed), "{needed} missing: {csp}");
    }
    for loose in [
        "unsafe-inline",
        "unsafe-eval",
        "unsafe-hashes",
        "script-src",
        "*",
    ] {
        assert!(!csp.contains(loose), "{loose} in {csp}");
    }
    assert_eq!(resp.headers()[X_FRAME_OPTIONS], "DENY");
    assert_eq!(resp.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    csp.to_owned()
}

#[test]
fn the_policy_admits_the_inline_stylesheet_by_its_hash_and_nothing_else() {
    let page = login_form("t", "c", "App", "", None);
    let inline = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, inline.as_bytes());
    let source = format!("'sha256-{}'", STANDARD.encode(digest.as_ref()));
    let csp = strict_policy(&html(StatusCode::OK, page.clone()));
    assert!(csp.contains(&format!("style-src {source};")), "{csp}");
    let csp = strict_policy(&html_with_form_target(
        StatusCode::OK,
        page,
        Some("http://127.0.0.1:3000/cb"),
    ));
    assert!(csp.contains(&format!("style-src {source};")), "{csp}");
}

#[test]
fn pages_load_nothing_and_label_every_field() {
    let orgs = [("org_a".to_owned(), "Acme".to_owned())];
    for page in [
        login_form("t", "c", "App", "", Some("wrong email or password")),
        org_chooser("t", "c", &orgs),
        logout_confirmation("c", &[("state", "s")]),
        error_page("oops"),
        signed_out(),
    ] {
        for loader in [
            "<script", "<link", "<img", "<iframe", "src=", "url(", "@import",
        ] {
            assert!(!page.contains(loader), "{loader} in {page}");
        }
        assert!(
            !page.contains(" style="),
            "inline style attribute in {page}"
        );
    }
    let form = login_form("t", "c", "App", "", Some("wrong email or password"));
    for id in ["email", "password"] {
        assert!(form.contains(&format!("<label for=\"{id}\">")), "{form}");
        assert!(form.contains(&format!("<input id=\"{id}\"")), "{form}");
    }
    assert!(form.contains("aria-describedby=\"error\""), "{form}");
    assert!(form.contains("role=\"alert\""), "{form}");
    // The focus goes to the first field to fill in.
    assert!(form.contains("autocomplete=\"username\" required autofocus"));
    let again = login_form("t", "c", "App", "ann@example.test", None);
    assert!(
        again.contains("current-password\" required autofocus"),
        "{again}"
    );
    let chooser = org_chooser("t", "c", &orgs);
    assert!(
        chooser.contains("<legend>Organization</legend>"),
        "{chooser}"
    );
    assert!(chooser.contains("<label class=\"choice\"><input type=\"radio\""));
}

#[test]
fn forms_may_redirect_to_their_target_only() {
    assert_eq!(
        form_target_source("https://app.test:8443/cb?x=1").as_deref(),
        Some("https://app.test:8443")
    );
    assert_eq!(
        form_target_source("com.example.app:/cb").as_deref(),
        Some("com.example.app:")
    );
    assert_eq!(form_target_source("not a uri"), None);
    assert_eq!(
        form_target_source("https://user:pw@app.test/cb").as_deref(),
        Some("https://app.test")
    );
    assert_eq!(form_target_source("https://app.test;x/cb"), None);
    let resp = html_with_form_target(
        StatusCode::OK,
        String::new(),
        Some("http://127.0.0.1:3000/cb"),
    );
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:3000;"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    let resp = html_with_form_target(StatusCode::OK, String::new(), None);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self';"), "{csp}");
}
