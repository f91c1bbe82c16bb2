//! The built-in issuer's signing keys: generation (ES256 on P-256, RS256 with
//! 2048-bit RSA, EdDSA on Ed25519) as PKCS#8 DER, the RFC 7638 thumbprint as
//! `kid`, the public JWK and JWKS, signing JWTs, sealing keys at rest
//! ([`seal`]) and the rotation policy ([`rotation`]).
//!
//! Persisting keys is the storage layer's job; serving the JWKS is the endpoints'.

mod jwk;
pub mod rotation;
pub mod seal;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

pub use rotation::{KeyAction, KeyRecord, RotationPolicy};
pub use seal::MasterKey;

use crate::config::SigningAlg;

/// Why a key could not be made, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("could not generate a {0} key")]
    Generate(SigningAlg),
    #[error("the {0} private key is invalid")]
    InvalidKey(SigningAlg),
    #[error("signing key `{0}` has an unknown algorithm")]
    UnknownAlg(String),
    #[error("signing key `{kid}` does not match its key id")]
    KidMismatch { kid: String },
    #[error("could not sign a token")]
    Sign,
    #[error("could not encode the claims of a token")]
    Claims(#[source] serde_json::Error),
    #[error("signing key `{kid}` is encrypted but PORTCULLIS_MASTER_KEY is not set")]
    MasterKeyMissing { kid: String },
    #[error(
        "signing key `{kid}` cannot be decrypted: PORTCULLIS_MASTER_KEY is not the key it was encrypted with"
    )]
    WrongMasterKey { kid: String },
    #[error("PORTCULLIS_MASTER_KEY must be at least 16 bytes")]
    WeakMasterKey,
    #[error("could not encrypt a signing key")]
    Seal,
}

/// A freshly generated key, not yet stored. Its `Debug` omits the private key.
pub struct GeneratedKey {
    pub alg: SigningAlg,
    /// The RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The private key, PKCS#8 DER, unsealed.
    pub pkcs8: Vec<u8>,
    /// The public JWK (with `kid`, `alg`, `use: sig`) as JSON.
    pub public_jwk: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A key ready to sign tokens: parsed and checked once, when it is loaded
/// (jsonwebtoken's `encode` parses its key again for every token, which for
/// RSA cost more than the signature itself).
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    prepared: Prepared,
    /// The JWS header's base64url for each `typ` this issuer signs, made once.
    access_header: String,
    id_header: String,
}

/// The private key in aws-lc-rs's ready form.
enum Prepared {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// The JOSE header of our tokens.
#[derive(Serialize)]
struct JoseHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'a str,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Generates a new key for `alg` from the system's secure random source.
pub fn generate(alg: SigningAlg) -> Result<GeneratedKey, SigningError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let failed = |_| SigningError::Generate(alg);
    let pkcs8 = match alg {
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        SigningAlg::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
    };
    let public = jwk::public_key(alg, &pkcs8)?;
    Ok(GeneratedKey {
        alg,
        kid: public.kid,
        pkcs8,
        public_jwk: public.jwk,
    })
}

// === impl GeneratedKey ===

impl GeneratedKey {
    /// The record to store: the private key sealed under `master` when there is
    /// one, with the times a [`KeyAction::Create`] chose.
    pub fn into_record(
        self,
        master: Option<&MasterKey>,
        now: i64,
        publish_at: i64,
        activate_at: i64,
    ) -> Result<KeyRecord, SigningError> {
        Ok(KeyRecord {
            private_key: seal::seal(master, &self.kid, &self.pkcs8)?,
            kid: self.kid,
            alg: self.alg.as_str().to_owned(),
            public_jwk: self.public_jwk,
            created_at: now,
            publish_at,
            activate_at,
            retire_at: None,
            expire_at: None,
        })
    }
}

// === impl SigningKey ===

impl SigningKey {
    /// A key from its PKCS#8 document; the `kid` is derived from it.
    pub fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<SigningKey, SigningError> {
        let kid = jwk::public_key(alg, pkcs8)?.kid;
        let invalid = |_| SigningError::InvalidKey(alg);
        let prepared = match alg {
            SigningAlg::ES256 => Prepared::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(invalid)?,
            ),
            SigningAlg::RS256 => Prepared::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(invalid)?),
            SigningAlg::EdDSA => {
                Prepared::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(invalid)?)
            }
        };
        let header = |typ: &str| -> Result<String, SigningError> {
            let json = serde_json::to_vec(&JoseHeader {
                alg: alg.as_str(),
                kid: &kid,
                typ,
            })
            .map_err(SigningError::Claims)?;
            Ok(URL_SAFE_NO_PAD.encode(json))
        };
        Ok(SigningKey {
            access_header: header(ACCESS_TYP)?,
            id_header: header(ID_TYP)?,
            alg,
            kid,
            prepared,
        })
    }

    /// The key of a stored record, unsealed with `master`; refused when the key
    /// does not match the record's `kid`.
    pub fn from_record(
        record: &KeyRecord,
        master: Option<&MasterKey>,
    ) -> Result<SigningKey, SigningError> {
        let alg = SigningAlg::from_name(&record.alg)
            .ok_or_else(|| SigningError::UnknownAlg(record.kid.clone()))?;
        let pkcs8 = seal::open(master, &record.kid, &record.private_key)?;
        let key = SigningKey::from_pkcs8(alg, &pkcs8)?;
        if key.kid != record.kid {
            return Err(SigningError::KidMismatch {
                kid: record.kid.clone(),
            });
        }
        Ok(key)
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// Its key id (the RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims` whose header carries `alg`, `kid` and `typ`
    /// (`at+jwt` for access tokens, `JWT` for ID tokens).
    pub fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, SigningError> {
        let payload = serde_json::to_vec(claims).map_err(SigningError::Claims)?;
        let header = match typ {
            ACCESS_TYP => self.access_header.clone(),
            ID_TYP => self.id_header.clone(),
            other => {
                let json = serde_json::to_vec(&JoseHeader {
                    alg: self.alg.as_str(),
                    kid: &self.kid,
                    typ: other,
                })
                .map_err(SigningError::Claims)?;
                URL_SAFE_NO_PAD.encode(json)
            }
        };
        let mut token = header;
        token.reserve(payload.len() * 4 / 3 + 4 + 700);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.signature(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// The JWS signature of the signing input (RFC 7518 §3: fixed-size R || S
    /// for ECDSA, PKCS#1 v1.5 with SHA-256 for RS256, Ed25519 for EdDSA).
    fn signature(&self, input: &[u8]) -> Result<Vec<u8>, SigningError> {
        match &self.prepared {
            Prepared::Ec(key) => key
                .sign(&SystemRandom::new(), input)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| SigningError::Sign),
            Prepared::Rsa(key) => {
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input,
                    &mut sig,
                )
                .map_err(|_| SigningError::Sign)?;
                Ok(sig)
            }
            Prepared::Ed(key) => Ok(key.sign(input).as_ref().to_vec()),
        }
    }
}

/// The `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// The `typ` of ID tokens.
pub const ID_TYP: &str = "JWT";

/// The JWKS document (`{"keys": [...]}`) of these keys' public JWKs; a JWK that
/// is not valid JSON is left out.
pub fn jwks_json<'a>(records: impl IntoIterator<Item = &'a KeyRecord>) -> String {
    let keys: Vec<serde_json::Value> = records
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.public_jwk).ok())
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests;
