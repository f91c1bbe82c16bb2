//! OAuth requests against an issuer at a base URL (`http://127.0.0.1:port`),
//! in process or not: the token, revocation and introspection endpoints, and
//! the authorization-code flow through the hosted login form.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `Authorization` value of HTTP Basic client authentication.
pub fn basic((id, secret): (&str, &str)) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {pair}")
}

/// POSTs a form to `base` + `path`, with HTTP Basic client authentication
/// when `client` is given: status and the body as JSON (`null` when empty).
pub async fn post(
    base: &str,
    path: &str,
    client: Option<(&str, &str)>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(client) = client {
        req = req.header("authorization", basic(client));
    }
    let (status, _, body) =
        super::send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await;
    let json = match body.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    };
    (status, json)
}

/// A `client_credentials` access token; panics unless the answer is 200.
pub async fn client_credentials(base: &str, client: (&str, &str)) -> String {
    let (status, body) = post(
        base,
        "/oauth/token",
        Some(client),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A `client_credentials` access token for the API `resource`; panics
/// unless the answer is 200.
pub async fn client_credentials_for(base: &str, client: (&str, &str), resource: &str) -> String {
    let body = format!("grant_type=client_credentials&resource={}", enc(resource));
    let (status, body) = post(base, "/oauth/token", Some(client), &body).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The refresh grant for a public client.
pub async fn refresh(base: &str, client_id: &str, token: &str) -> (StatusCode, Value) {
    let body = format!(
        "grant_type=refresh_token&client_id={client_id}&refresh_token={}",
        enc(token)
    );
    post(base, "/oauth/token", None, &body).await
}

/// `/oauth/introspect` as `client`; asserts 200 and returns the answer.
pub async fn introspect(base: &str, client: (&str, &str), token: &str) -> Value {
    let (status, body) = post(
        base,
        "/oauth/introspect",
        Some(client),
        &format!("token={}", enc(token)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `/oauth/revoke` as `client`; asserts 200.
pub async fn revoke(base: &str, client: (&str, &str), token: &str) {
    let (status, body) = post(
        base,
        "/oauth/revoke",
        Some(client),
        &format!("token={}", enc(token)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The `kid` of the JWKS at `base`, sorted.
pub async fn jwks_kids(base: &str) -> Vec<String> {
    let (status, _, body) = super::get(&format!("{base}/.well-known/jwks.json"), None).await;
    assert_eq!(status, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// A request with cookies and an optional form body.
pub async fn request(
    method: &str,
    url: &str,
    cookies: &[String],
    form: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    request_from(None, method, url, cookies, form).await
}

/// As [`request`], from the local address `from` (see `send_from`).
pub async fn request_from(
    from: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    cookies: &[String],
    form: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(url);
    if !cookies.is_empty() {
        req = req.header("cookie", cookies.join("; "));
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = Bytes::from(form.unwrap_or_default().to_owned());
    super::send_from(from, req.body(Full::new(body)).unwrap()).await
}

/// The `name=value` pairs of the response's `Set-Cookie` headers.
pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

pub fn location(headers: &HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_owned()
}

pub fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// The value of the hidden form field `name`.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The whole authorization-code flow with PKCE (S256) for the public client
/// `client_id`: authorize → login form (CSRF) → code → token. `scope` is
/// space-separated. Returns the token response.
pub async fn code_flow(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    user: (&str, &str),
) -> Value {
    let (code, verifier) = login_for_code(base, client_id, redirect_uri, scope, user).await;
    let (status, body) = redeem_code(base, client_id, redirect_uri, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The first half of [`code_flow`]: authorize → login form (CSRF) → the
/// code in the redirect. Returns the code and its PKCE verifier.
pub async fn login_for_code(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    (email, password): (&str, &str),
) -> (String, String) {
    let verifier = portcullis::issuer::token::random_token(32);
    let query = format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope={}&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        enc(redirect_uri),
        enc(scope),
        portcullis::issuer::authorize::pkce::s256(&verifier),
    );
    let (status, headers, body) = request("GET", &format!("{base}{query}"), &[], None).await;
    assert_eq!(status, 302, "{body}");
    let login = location(&headers);
    let cookie = set_cookies(&headers).pop().unwrap();
    let cookies = [cookie];
    let (status, _, html) = request("GET", &format!("{base}{login}"), &cookies, None).await;
    assert_eq!(status, 200, "{html}");
    let form = format!(
        "txn={}&csrf={}&email={}&password={}",
        enc(&hidden(&html, "txn")),
        enc(&hidden(&html, "csrf")),
        enc(email),
        enc(password)
    );
    let (status, headers, body) =
        request("POST", &format!("{base}/login"), &cookies, Some(&form)).await;
    assert_eq!(status, 302, "{body}");
    let back = location(&headers);
    assert!(back.starts_with(redirect_uri), "{back}");
    (query_of(&back)["code"].clone(), verifier)
}

/// Opens the login form of an authorization request for `client_id` at
/// `base` and submits `email` and `password` once per entry of
/// `passwords`; the status of each answer.
pub async fn login_attempts(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    email: &str,
    passwords: &[&str],
) -> Vec<StatusCode> {
    login_attempts_from(None, base, client_id, redirect_uri, email, passwords).await
}

/// As [`login_attempts`], the form submitted from the local address `from`.
pub async fn login_attempts_from(
    from: Option<std::net::IpAddr>,
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    email: &str,
    passwords: &[&str],
) -> Vec<StatusCode> {
    let verifier = portcullis::issuer::token::random_token(32);
    let query = format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid&code_challenge={}&code_challenge_method=S256",
        enc(redirect_uri),
        portcullis::issuer::authorize::pkce::s256(&verifier),
    );
    let (status, headers, body) = request("GET", &format!("{base}{query}"), &[], None).await;
    assert_eq!(status, 302, "{body}");
    let login = location(&headers);
    let cookies = [set_cookies(&headers).pop().unwrap()];
    let (status, _, html) = request("GET", &format!("{base}{login}"), &cookies, None).await;
    assert_eq!(status, 200, "{html}");
    let mut statuses = Vec::new();
    for password in passwords {
        let form = format!(
            "txn={}&csrf={}&email={}&password={}",
            enc(&hidden(&html, "txn")),
            enc(&hidden(&html, "csrf")),
            enc(email),
            enc(password)
        );
        let url = format!("{base}/login");
        let (status, _, _) = request_from(from, "POST", &url, &cookies, Some(&form)).await;
        statuses.push(status);
    }
    statuses
}

/// The second half of [`code_flow`]: the code exchanged at the token
/// endpoint (status and JSON, not asserted).
pub async fn redeem_code(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let fields = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={verifier}",
        enc(code),
        enc(redirect_uri)
    );
    post(base, "/oauth/token", None, &fields).await
}
