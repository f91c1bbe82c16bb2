use serde_json::{Value, json};

use super::*;
use crate::auth::keys::{KeyLookup, KeySet, parse_jwks};
use crate::auth::verify;

/// Verifies `token` against `jwks` the way the gateway does.
pub(super) fn verifies(token: &str, jwks: &str) -> bool {
    let set = KeySet {
        keys: parse_jwks(jwks.as_bytes()).expect("jwks parses"),
        generation: 1,
    };
    let parsed = verify::parse(token).expect("token parses");
    match set.find(parsed.kid.as_deref(), parsed.alg) {
        KeyLookup::Found(key) => verify::verify_signature(&parsed, key).is_ok(),
        _ => false,
    }
}

fn header(token: &str) -> Value {
    use base64::Engine;
    let h = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

fn record(key: GeneratedKey, master: Option<&MasterKey>) -> KeyRecord {
    key.into_record(master, 100, 100, 100).expect("record")
}

#[test]
fn every_algorithm_generates_signs_and_verifies_through_the_gateway_checks() {
    for alg in SigningAlg::ALL {
        let generated = generate(alg).expect("generate");
        assert_eq!(generated.kid.len(), 43, "{alg}: SHA-256 in base64url");
        let jwk: Value = serde_json::from_str(&generated.public_jwk).expect("jwk");
        assert_eq!(jwk["kid"], generated.kid.as_str());
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "{alg}: no private material");
        let key = SigningKey::from_pkcs8(alg, &generated.pkcs8).expect("key");
        assert_eq!(key.kid(), generated.kid);
        assert_eq!(key.alg(), alg);
        let token = key
            .sign(
                &json!({"iss": "http://127.0.0.1:8080", "sub": "u1"}),
                "at+jwt",
            )
            .expect("sign");
        let h = header(&token);
        assert_eq!(h["typ"], "at+jwt");
        assert_eq!(h["kid"], generated.kid.as_str());
        assert_eq!(h["alg"], alg.as_str());
        let rec = record(generated, None);
        assert!(verifies(&token, &jwks_json([&rec])), "{alg}");
        // Another key of the same algorithm does not verify it.
        let other = record(generate(alg).expect("generate"), None);
        let mut forged = other.clone();
        forged.kid = rec.kid.clone();
        let forged_jwk = other.public_jwk.replace(&other.kid, &rec.kid);
        forged.public_jwk = forged_jwk;
        assert!(!verifies(&token, &jwks_json([&forged])), "{alg}");
    }
}

#[test]
fn rsa_keys_have_2048_bits_and_the_kid_is_the_thumbprint() {
    use base64::Engine;
    let generated = generate(SigningAlg::RS256).expect("generate");
    let jwk: Value = serde_json::from_str(&generated.public_jwk).expect("jwk");
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("b64");
    assert_eq!(n.len() * 8, 2048);
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        jwk["e"].as_str().expect("e"),
        jwk["n"].as_str().expect("n")
    );
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    assert_eq!(
        generated.kid,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb.as_ref())
    );
}

#[test]
fn stored_keys_load_plain_or_sealed() {
    let master = MasterKey::derive("correct horse battery staple").expect("master");
    for alg in SigningAlg::ALL {
        let plain = record(generate(alg).expect("generate"), None);
        assert!(!seal::is_sealed(&plain.private_key));
        let key = SigningKey::from_record(&plain, None).expect("plain loads");
        assert_eq!(key.kid(), plain.kid);

        let sealed = record(generate(alg).expect("generate"), Some(&master));
        assert!(seal::is_sealed(&sealed.private_key));
        let key = SigningKey::from_record(&sealed, Some(&master)).expect("sealed loads");
        let token = key.sign(&json!({"sub": "x"}), "JWT").expect("sign");
        assert!(verifies(&token, &jwks_json([&sealed])));
        assert!(matches!(
            SigningKey::from_record(&sealed, None),
            Err(SigningError::MasterKeyMissing { .. })
        ));
        let wrong = MasterKey::derive("not the right master key").expect("master");
        assert!(matches!(
            SigningKey::from_record(&sealed, Some(&wrong)),
            Err(SigningError::WrongMasterKey { .. })
        ));
    }
}

#[test]
fn records_that_do_not_hold_together_are_refused() {
    let a = record(generate(SigningAlg::ES256).expect("generate"), None);
    let b = record(generate(SigningAlg::ES256).expect("generate"), None);
    let mut swapped = a.clone();
    swapped.private_key = b.private_key.clone();
    assert!(matches!(
        SigningKey::from_record(&swapped, None),
        Err(SigningError::KidMismatch { .. })
    ));
    let mut wrong_alg = a.clone();
    wrong_alg.alg = "RS256".into();
    assert!(matches!(
        SigningKey::from_record(&wrong_alg, None),
        Err(SigningError::InvalidKey(SigningAlg::RS256))
    ));
    let mut unknown = a;
    unknown.alg = "HS256".into();
    assert!(matches!(
        SigningKey::from_record(&unknown, None),
        Err(SigningError::UnknownAlg(_))
    ));
}

#[test]
fn private_keys_never_print() {
    let generated = generate(SigningAlg::EdDSA).expect("generate");
    let shown = format!("{generated:?}");
    assert!(
        shown.contains(&generated.kid) && !shown.contains("pkcs8"),
        "{shown}"
    );
    let key = SigningKey::from_pkcs8(SigningAlg::EdDSA, &generated.pkcs8).expect("key");
    assert!(!format!("{key:?}").contains("encoding"));
}

#[test]
fn the_jwks_skips_broken_jwks() {
    let good = record(generate(SigningAlg::ES256).expect("generate"), None);
    let mut broken = good.clone();
    broken.public_jwk = "{not json".into();
    let doc: Value = serde_json::from_str(&jwks_json([&good, &broken])).expect("json");
    assert_eq!(doc["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(jwks_json([]), r#"{"keys":[]}"#);
}
