//! The shortest end-to-end path: a valid token reaches the upstream with identity
//! headers; no token is refused with the RFC 6750 challenge.

mod support;

use support::*;

#[tokio::test]
async fn valid_token_is_forwarded_and_missing_token_refused() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(
        &jwks,
        &up,
        "  - path: /*\n    upstream: api\n    scopes: [read:data]\n",
    ))
    .await;

    let t = token(&key, &claims());
    let (status, headers, body) = get(&gw.url("/hello?x=1"), Some(&t)).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let got = up.last();
    assert_eq!(got.target, "/hello?x=1");
    assert_eq!(got.headers["x-auth-subject"], "user-1");
    assert_eq!(got.headers["x-auth-scopes"], "read:data write:data");
    assert_eq!(got.headers["x-auth-org"], "org-1");

    let (status, headers, body) = get(&gw.url("/hello"), None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"portcullis\"");
    assert_eq!(error_code(&body), "unauthorized");
    gw.shutdown().await;
}
