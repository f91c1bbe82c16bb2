//! The built-in issuer's signing keys: generation (ES256 on P-256, RS256 with
//! 2048-bit RSA, EdDSA on Ed25519) as PKCS#8 DER, the RFC 7638 thumbprint as
//! `kid`, the public JWK and JWKS, signing JWTs, sealing keys at rest
//! ([`seal`]) and the rotation policy ([`rotation`]).
//!
//! Persisting keys is the storage layer's job; serving the JWKS is the endpoints'.

mod jwk;
pub mod rotation;
pub mod seal;

use jsonwebtoken::{EncodingKey, Header};
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
    Sign(#[source] jsonwebtoken::errors::Error),
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

/// A key ready to sign tokens.
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    encoding: EncodingKey,
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
        let encoding = match alg {
            SigningAlg::ES256 => EncodingKey::from_ec_der(pkcs8),
            SigningAlg::EdDSA => EncodingKey::from_ed_der(pkcs8),
            // jsonwebtoken takes RSA keys as PKCS#1.
            SigningAlg::RS256 => EncodingKey::from_rsa_der(
                jwk::pkcs1_from_pkcs8(pkcs8).ok_or(SigningError::InvalidKey(alg))?,
            ),
        };
        Ok(SigningKey { alg, kid, encoding })
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
        let mut header = Header::new(match self.alg {
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        });
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(SigningError::Sign)
    }
}

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
