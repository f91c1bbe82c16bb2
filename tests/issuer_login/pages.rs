//! What every hosted page sends, whichever way the flow reached it: a strict
//! Content-Security-Policy (`default-src 'none'`, the inline stylesheet
//! admitted by its hash and nothing else, no script at all, forms posting to
//! this origin and to the client only where the form's answer redirects
//! there, `frame-ancestors 'none'`, `base-uri 'none'`), `X-Frame-Options:
//! DENY`, `nosniff`, no referrer, no caching — and a body that loads nothing.
//! The browser suite (`tests/browser/`) checks the same in Chromium.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// Asserts what every hosted page carries; `form_to` is the extra
/// `form-action` source the page must allow (the client's origin), if any.
fn assert_hosted_page(what: &str, headers: &HeaderMap, html: &str, form_to: Option<&str>) {
    assert_eq!(
        headers["content-type"], "text/html; charset=utf-8",
        "{what}"
    );
    assert_eq!(headers["cache-control"], "no-store", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    let policies: Vec<_> = headers.get_all("content-security-policy").iter().collect();
    assert_eq!(policies.len(), 1, "{what}: one policy");
    let csp = policies[0].to_str().unwrap();
    let directives: std::collections::HashMap<&str, Vec<&str>> = csp
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            Some((words.next()?, words.collect()))
        })
        .collect();
    let sources = |name: &str| directives.get(name).cloned().unwrap_or_default();
    assert_eq!(sources("default-src"), ["'none'"], "{what}: {csp}");
    assert_eq!(sources("frame-ancestors"), ["'none'"], "{what}: {csp}");
    assert_eq!(sources("base-uri"), ["'none'"], "{what}: {csp}");
    let mut form_action = vec!["'self'"];
    form_action.extend(form_to);
    assert_eq!(sources("form-action"), form_action, "{what}: {csp}");
    // Nothing but the page's own stylesheet, by the hash of its text: no
    // 'unsafe-inline', no script, image, font, frame or connection source.
    let css = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .unwrap_or_else(|| panic!("{what}: no stylesheet"));
    let hash = format!(
        "'sha256-{}'",
        STANDARD.encode(digest(&SHA256, css.as_bytes()).as_ref())
    );
    assert_eq!(sources("style-src"), [hash.as_str()], "{what}: {csp}");
    let mut names: Vec<_> = directives.keys().copied().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "base-uri",
            "default-src",
            "form-action",
            "frame-ancestors",
            "style-src"
        ],
        "{what}: {csp}"
    );
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    for loader in [
        "<script", "<link", "<img", "<iframe", "src=", "url(", " style=",
    ] {
        assert!(!html.contains(loader), "{what}: {loader} in {html}");
    }
}

/// The login form, its re-renders (wrong password, throttled, forged), the
/// organization chooser, error pages, the logout confirmation and the
/// signed-out page all carry the policy; forms whose answer redirects to the
/// client allow that origin in `form-action`, the others only `'self'`.
async fn every_hosted_page_sends_a_strict_policy(db: TestDb) {
    let clock = Arc::new(ManualClock::new(now()));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let env = env_with(db, options).await;
    let gw = &env.gw;
    let client = Some("http://127.0.0.1:3000");

    let (status, headers, html) =
        request("GET", &gw.url(&authorize_query("nobody", "")), &[], None).await;
    assert_eq!(status, 400);
    assert_hosted_page("unknown client", &headers, &html, None);

    let (status, headers, html) = request("GET", &gw.url("/login?txn=gone"), &[], None).await;
    assert_eq!(status, 400);
    assert_hosted_page("expired transaction", &headers, &html, None);

    let (status, headers, html) = request("PUT", &gw.url("/login"), &[], Some("")).await;
    assert_eq!(status, 405);
    assert_hosted_page("method not allowed", &headers, &html, None);

    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let login = format!("/login?txn={}", enc(&form.txn));
    let cookies = std::slice::from_ref(&form.cookie);
    let (status, headers, html) = request("GET", &gw.url(&login), cookies, None).await;
    assert_eq!(status, 200);
    assert_hosted_page("login form", &headers, &html, client);

    let wrong = credentials("carol@example.test", "wrong");
    for _ in 0..3 {
        let (status, headers, html) = submit(gw, &form, &wrong).await;
        assert_eq!(status, 401);
        assert_hosted_page("wrong password", &headers, &html, client);
    }
    let (status, headers, html) = submit(gw, &form, &wrong).await;
    assert_eq!(status, 429);
    assert!(html.contains("too many failed sign-ins"), "{html}");
    assert_hosted_page("throttled", &headers, &html, client);

    let forged = Form {
        csrf: "forged".into(),
        ..form
    };
    let creds = credentials("bob@example.test", PASSWORD);
    let (status, headers, html) = submit(gw, &forged, &creds).await;
    assert_eq!(status, 403);
    assert_hosted_page("forged form", &headers, &html, None);

    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let (status, headers, html) = submit(gw, &form, &creds).await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose an organization"), "{html}");
    assert_hosted_page("organization chooser", &headers, &html, client);
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    let (status, _, _) = submit(gw, &form, "organization=org_b").await;
    assert_eq!(status, 302);

    let cookies = [session];
    let (status, headers, html) = request("GET", &gw.url("/logout"), &cookies, None).await;
    assert_eq!(status, 200);
    assert_hosted_page("logout confirmation", &headers, &html, None);
    let body = format!("csrf={}", enc(&hidden(&html, "csrf")));
    let (status, headers, html) = request("POST", &gw.url("/logout"), &cookies, Some(&body)).await;
    assert_eq!(status, 200);
    assert!(html.contains("signed out"), "{html}");
    assert_hosted_page("signed out", &headers, &html, None);
    env.gw.shutdown().await;
}

crate::on_both_databases!(every_hosted_page_sends_a_strict_policy);
