use std::time::Duration;

use super::*;
use crate::config::KeySourceConfig;

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn token(header: serde_json::Value, claims: serde_json::Value) -> String {
    format!("{}.{}.c2ln", b64(&header), b64(&claims))
}

fn issuer() -> IssuerConfig {
    IssuerConfig {
        id: "main".into(),
        issuer: "https://id.example.test".into(),
        keys: KeySourceConfig::File("k.json".into()),
        audiences: vec!["api".into(), "other".into()],
        algorithms: Algorithm::ALL.to_vec(),
        leeway: Duration::from_secs(30),
        org_claim: "org_id".into(),
        roles_claim: None,
        ca_file: None,
        introspection: None,
        allow_plain_http: false,
    }
}

#[test]
fn header_rules() {
    let claims = serde_json::json!({"iss": "x"});
    let ok = token(
        serde_json::json!({"alg": "ES256", "typ": "at+JWT", "kid": "k"}),
        claims.clone(),
    );
    let parsed = parse(&ok).expect("valid");
    assert_eq!(parsed.alg, Algorithm::ES256);
    assert_eq!(parsed.kid.as_deref(), Some("k"));
    assert!(ok.starts_with(parsed.signing_input));
    let cases = [
        (
            serde_json::json!({"alg": "none"}),
            TokenError::DisallowedAlg,
        ),
        (
            serde_json::json!({"alg": "HS256"}),
            TokenError::DisallowedAlg,
        ),
        (
            serde_json::json!({"alg": "es256"}),
            TokenError::DisallowedAlg,
        ),
        (serde_json::json!({"typ": "JWT"}), TokenError::Malformed),
        (
            serde_json::json!({"alg": "RS256", "typ": "JOSE+JSON"}),
            TokenError::BadType,
        ),
        (
            serde_json::json!({"alg": "RS256", "crit": ["exp"], "exp": 1}),
            TokenError::UnsupportedCrit,
        ),
    ];
    for (header, want) in cases {
        assert_eq!(
            parse(&token(header.clone(), claims.clone())).map(|_| ()),
            Err(want),
            "{header}"
        );
    }
    // `typ`: absent, JWT or at+jwt, with or without `application/`; only at+jwt
    // marks an access token.
    for (typ, at_jwt) in [
        (None, false),
        (Some("JWT"), false),
        (Some("application/jwt"), false),
        (Some("at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("Application/AT+JWT"), true),
    ] {
        let header = match typ {
            Some(t) => serde_json::json!({"alg": "RS256", "typ": t}),
            None => serde_json::json!({"alg": "RS256"}),
        };
        let t = token(header, claims.clone());
        assert_eq!(parse(&t).expect("valid typ").at_jwt, at_jwt, "{typ:?}");
    }
    for typ in [
        "application/",
        "application/JOSE",
        "at+jwt+x",
        "id+jwt",
        "é",
    ] {
        let header = serde_json::json!({"alg": "RS256", "typ": typ});
        assert_eq!(
            parse(&token(header, claims.clone())).map(|_| ()),
            Err(TokenError::BadType),
            "{typ}"
        );
    }
    // Embedded keys and key URLs are ignored, not trusted and not an error.
    let jwk = serde_json::json!({"alg": "RS256", "jwk": {"kty": "RSA"}, "jku": "http://evil", "x5u": "http://evil"});
    assert!(parse(&token(jwk, claims)).is_ok());
}

#[test]
fn structure_rules() {
    for bad in [
        "",
        "a",
        "a.b",
        "a.b.c.d.e",
        "not-a.jwt",
        "..",
        "e30.e30.",
        "!!.e30.c2ln",
    ] {
        assert_eq!(parse(bad).map(|_| ()), Err(TokenError::Malformed), "{bad}");
    }
}

#[test]
fn claim_rules() {
    let iss = issuer();
    let now = 1_000_000;
    let check = |c: serde_json::Value| {
        let map = c.as_object().cloned().expect("object");
        check_claims(&map, &iss, now)
    };
    assert!(check(serde_json::json!({"aud": "api", "exp": now + 60})).is_ok());
    assert!(check(serde_json::json!({"aud": ["x", "other"], "exp": now + 60})).is_ok());
    assert_eq!(
        check(serde_json::json!({"aud": "nope", "exp": now + 60})),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        check(serde_json::json!({"exp": now + 60})),
        Err(TokenError::MissingClaim)
    );
    assert_eq!(
        check(serde_json::json!({"aud": "api"})),
        Err(TokenError::MissingClaim)
    );
    assert_eq!(
        check(serde_json::json!({"aud": "api", "exp": "soon"})),
        Err(TokenError::Malformed)
    );
    // exp within leeway still passes; beyond it fails.
    assert!(check(serde_json::json!({"aud": "api", "exp": now - 10})).is_ok());
    assert_eq!(
        check(serde_json::json!({"aud": "api", "exp": now - 30})),
        Err(TokenError::Expired)
    );
    assert!(check(serde_json::json!({"aud": "api", "exp": now + 60, "nbf": now + 20})).is_ok());
    assert_eq!(
        check(serde_json::json!({"aud": "api", "exp": now + 600, "nbf": now + 3600})),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        check(serde_json::json!({"aud": "api", "exp": now + 600, "iat": now + 3600})),
        Err(TokenError::IssuedInFuture)
    );
    assert!(check(serde_json::json!({"aud": "api", "exp": (now + 60) as f64 + 0.5})).is_ok());
}
