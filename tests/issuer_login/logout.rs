//! `/logout`: a GET (which any site can make a browser send, with the
//! `SameSite=Lax` session cookie) changes nothing and shows a confirmation
//! page; only its form, POSTed with a CSRF token bound to the session, signs
//! out. RP-initiated logout (`id_token_hint`, `post_logout_redirect_uri`,
//! `state`) returns to the client after the confirmation.

use super::*;

/// The hidden fields of a page's form, unescaped, as a urlencoded body.
fn hidden_form(html: &str) -> String {
    let unescape = |v: &str| {
        v.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    for input in html.split("<input type=\"hidden\" ").skip(1) {
        let name = input
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = input
            .split("value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        out.append_pair(name, &unescape(value));
    }
    out.finish()
}

/// Whether the session behind `cookies` still skips the login form.
async fn signed_in(gw: &Gateway, cookies: &[String]) -> bool {
    let url = gw.url(&authorize_query("web", ""));
    let (status, headers, _) = request("GET", &url, cookies, None).await;
    assert_eq!(status, 302);
    location(&headers).starts_with(CALLBACK)
}

/// GET `/logout{query}`: the confirmation page (asserted), then its form
/// POSTed back. The POST's answer.
async fn confirm_logout(
    gw: &Gateway,
    query: &str,
    cookies: &[String],
) -> (StatusCode, HeaderMap, String) {
    let (status, _, html) =
        request("GET", &gw.url(&format!("/logout{query}")), cookies, None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Sign out?"), "{html}");
    let form = hidden_form(&html);
    request("POST", &gw.url("/logout"), cookies, Some(&form)).await
}

async fn a_get_signs_nobody_out_and_only_the_confirmed_form_does(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (_, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let cookies = [session.clone()];
    // What a cross-site <img src="/logout"> makes the browser send, as sent
    // on the wire: a page, no cookie change, the session intact.
    let wire = format!(
        "GET /logout HTTP/1.1\r\nHost: issuer.test\r\nCookie: {session}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(gw.addr, wire.as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(!head.contains("set-cookie"), "{head}");
    assert!(answer.contains("name=\"csrf\""), "{answer}");
    assert!(signed_in(gw, &cookies).await);
    // A form posted from another site (no CSRF field): the page again.
    let (status, _, html) = request("POST", &gw.url("/logout"), &cookies, Some("state=x")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign out?"));
    assert!(signed_in(gw, &cookies).await);
    // A wrong token, or the token of another session: refused, nothing ends.
    let (_, other) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let (_, _, theirs) = request("GET", &gw.url("/logout"), &[other], None).await;
    for form in ["csrf=guess".to_owned(), hidden_form(&theirs)] {
        let (status, headers, _) = request("POST", &gw.url("/logout"), &cookies, Some(&form)).await;
        assert_eq!(status, 403, "{form}");
        assert!(!headers.contains_key("set-cookie"));
        assert!(signed_in(gw, &cookies).await);
    }
    // The confirmed form signs out.
    let (status, headers, html) = confirm_logout(gw, "", &cookies).await;
    assert_eq!(status, 200);
    assert!(html.contains("signed out"), "{html}");
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(!signed_in(gw, &cookies).await);
    env.gw.shutdown().await;
}

async fn rp_initiated_logout_returns_to_the_client_after_confirming(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (back, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let (_, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    let cookies = [session];
    let query = format!(
        "?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        enc(&id_token),
        enc(CALLBACK)
    );
    // Even with a valid hint the user is asked; the page may send its answer
    // on to the client (CSP form-action), and nothing changed yet.
    let (status, headers, _) =
        request("GET", &gw.url(&format!("/logout{query}")), &cookies, None).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:3000;"),
        "{csp}"
    );
    assert!(signed_in(gw, &cookies).await);
    let (status, headers, _) = confirm_logout(gw, &query, &cookies).await;
    assert_eq!(status, 302);
    assert_eq!(location(&headers), format!("{CALLBACK}?state=bye"));
    assert!(!signed_in(gw, &cookies).await);
    // Signed out already: nothing to confirm, straight back.
    let (status, headers, _) =
        request("GET", &gw.url(&format!("/logout{query}")), &cookies, None).await;
    assert_eq!(status, 302);
    assert_eq!(location(&headers), format!("{CALLBACK}?state=bye"));
    // An unregistered return address is not followed (the signed-out page).
    let (_, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let evil = format!(
        "?client_id=web&post_logout_redirect_uri={}",
        enc("http://evil.test/")
    );
    let (status, headers, html) = confirm_logout(gw, &evil, &[session]).await;
    assert_eq!(status, 200, "{html}");
    assert!(!headers.contains_key("location"));
    env.gw.shutdown().await;
}

crate::on_both_databases!(
    a_get_signs_nobody_out_and_only_the_confirmed_form_does,
    rp_initiated_logout_returns_to_the_client_after_confirming,
);
