//! The public half of a PKCS#8 private key: its JWK (RFC 7517/7518/8037) and the
//! RFC 7638 thumbprint that serves as its `kid`. Also the one DER step
//! jsonwebtoken needs: the PKCS#1 key inside an RSA PKCS#8 document.

use std::collections::BTreeMap;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::SigningError;
use crate::config::SigningAlg;

/// The smallest RSA modulus the issuer signs with (and the gateway accepts).
const MIN_RSA_BITS: usize = 2048;

/// A key's public description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PublicKey {
    /// The RFC 7638 thumbprint (SHA-256, base64url).
    pub kid: String,
    /// The public JWK as JSON, with `kid`, `alg` and `use: sig`.
    pub jwk: String,
}

/// Parses `pkcs8` as a key of `alg` and describes its public half.
pub(super) fn public_key(alg: SigningAlg, pkcs8: &[u8]) -> Result<PublicKey, SigningError> {
    let invalid = |_| SigningError::InvalidKey(alg);
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    // The members RFC 7638 §3.2 requires, by kind; a BTreeMap keeps them in the
    // lexicographic order the thumbprint's JSON must have.
    let mut members: BTreeMap<&'static str, String> = BTreeMap::new();
    match alg {
        SigningAlg::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(invalid)?;
            // An uncompressed SEC1 point: 0x04, x, y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 0x04 {
                return Err(SigningError::InvalidKey(alg));
            }
            members.insert("crv", "P-256".to_owned());
            members.insert("kty", "EC".to_owned());
            members.insert("x", b64(&point[1..33]));
            members.insert("y", b64(&point[33..]));
        }
        SigningAlg::RS256 => {
            let pair = rsa::KeyPair::from_pkcs8(pkcs8).map_err(invalid)?;
            if pair.public_modulus_len() * 8 < MIN_RSA_BITS {
                return Err(SigningError::InvalidKey(alg));
            }
            let public = pair.public_key();
            members.insert(
                "e",
                b64(public.exponent().big_endian_without_leading_zero()),
            );
            members.insert("kty", "RSA".to_owned());
            members.insert("n", b64(public.modulus().big_endian_without_leading_zero()));
        }
        SigningAlg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(invalid)?;
            members.insert("crv", "Ed25519".to_owned());
            members.insert("kty", "OKP".to_owned());
            members.insert("x", b64(pair.public_key().as_ref()));
        }
    }
    let canonical = serde_json::to_string(&members).map_err(|_| SigningError::InvalidKey(alg))?;
    let kid = b64(digest(&SHA256, canonical.as_bytes()).as_ref());
    let mut jwk: serde_json::Map<String, serde_json::Value> = members
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    jwk.insert("kid".to_owned(), kid.clone().into());
    jwk.insert("alg".to_owned(), alg.as_str().into());
    jwk.insert("use".to_owned(), "sig".into());
    Ok(PublicKey {
        kid,
        jwk: serde_json::Value::Object(jwk).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1: the example RSA key's thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let mut members = BTreeMap::new();
        members.insert("e", "AQAB");
        members.insert("kty", "RSA");
        members.insert("n", n);
        let canonical = serde_json::to_string(&members).expect("json");
        let kid = URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()).as_ref());
        assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn a_key_of_one_kind_is_refused_as_another() {
        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .expect("generate");
        assert!(public_key(SigningAlg::EdDSA, ed.as_ref()).is_ok());
        assert!(public_key(SigningAlg::ES256, ed.as_ref()).is_err());
        assert!(public_key(SigningAlg::RS256, ed.as_ref()).is_err());
        assert!(public_key(SigningAlg::EdDSA, b"garbage").is_err());
    }
}
