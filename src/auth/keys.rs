//! Verification keys, key sets, and the verified identity a token yields.
//! Pure: parsing a JWKS document into keys is here, fetching it is in `jwks`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::revocation::Revocable;
use crate::config::Algorithm;

/// The family and parameters of a key, as far as algorithm choice needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a token signed with `alg` can be verified with a key of this kind.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::P256, ES256)
                | (KeyKind::P384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it names one: tokens must then use exactly it.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
    /// The public material, for telling a changed key set from an unchanged one.
    material: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .finish()
    }
}

/// An issuer's current keys. `generation` changes whenever the keys change, which
/// invalidates every cached verdict made with an earlier set.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<Arc<Key>>,
    pub generation: u64,
}

/// What looking up a token's key found.
#[derive(Debug)]
pub enum KeyLookup<'a> {
    Found(&'a Key),
    /// The `kid` is not in the set (a refetch may help).
    UnknownKid,
    /// No key of the right type (or the `kid`'s key does not fit `alg`).
    Unsuitable,
}

// === impl KeySet ===

impl KeySet {
    /// Picks the key for a token: by `kid`, or without one, the one key of the
    /// right type (two candidates are ambiguous and refused).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        let usable = |k: &Key| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if usable(k) => KeyLookup::Found(k),
                Some(_) => KeyLookup::Unsuitable,
                None => KeyLookup::UnknownKid,
            },
            None => {
                let mut it = self.keys.iter().filter(|k| usable(k));
                match (it.next(), it.next()) {
                    (Some(k), None) => KeyLookup::Found(k),
                    _ => KeyLookup::Unsuitable,
                }
            }
        }
    }

    /// Whether `other` holds exactly the same keys (same ids and material).
    pub fn same_keys(&self, other: &[Arc<Key>]) -> bool {
        self.keys.len() == other.len()
            && self
                .keys
                .iter()
                .zip(other)
                .all(|(a, b)| a.kid == b.kid && a.material == b.material)
    }
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum JwksParseError {
    #[error("the key set is not valid JSON")]
    Json(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    kid: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
}

/// Parses a JWKS document, keeping only keys that may verify signatures:
/// `use` absent or `sig`, RSA of 2048 bits or more, P-256, P-384, Ed25519.
/// Anything else (symmetric keys, unknown types, private keys) is skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Arc<Key>>, JwksParseError> {
    let raw: RawJwks = serde_json::from_slice(body).map_err(JwksParseError::Json)?;
    let mut keys: Vec<Arc<Key>> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
        .filter_map(|jwk| parse_jwk(&jwk).map(Arc::new))
        .collect();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid).then_with(|| a.material.cmp(&b.material)));
    Ok(keys)
}

fn parse_jwk(jwk: &RawJwk) -> Option<Key> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return None;
    }
    if jwk.d.is_some() {
        // A private key published in a JWKS is a misconfiguration; never use it.
        return None;
    }
    let alg = match &jwk.alg {
        Some(a) => Some(Algorithm::from_name(a)?),
        None => None,
    };
    let (kind, decoding, material) = match jwk.kty.as_str() {
        "RSA" => {
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            let modulus = URL_SAFE_NO_PAD.decode(n).ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < 2048 {
                return None;
            }
            (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(n, e).ok()?,
                format!("{n}.{e}"),
            )
        }
        "EC" => {
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            let (kind, len) = match jwk.crv.as_deref()? {
                "P-256" => (KeyKind::P256, 32),
                "P-384" => (KeyKind::P384, 48),
                _ => return None,
            };
            let xs = URL_SAFE_NO_PAD.decode(x).ok()?;
            let ys = URL_SAFE_NO_PAD.decode(y).ok()?;
            if xs.len() != len || ys.len() != len {
                return None;
            }
            (
                kind,
                DecodingKey::from_ec_components(x, y).ok()?,
                format!("{x}.{y}"),
            )
        }
        "OKP" => {
            if jwk.crv.as_deref()? != "Ed25519" {
                return None;
            }
            let x = jwk.x.as_deref()?;
            if URL_SAFE_NO_PAD.decode(x).ok()?.len() != 32 {
                return None;
            }
            (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(x).ok()?,
                x.to_owned(),
            )
        }
        _ => return None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    Some(Key {
        kid: jwk.kid.clone(),
        kind,
        alg,
        decoding,
        material,
    })
}

/// What a verified token says about its bearer; shared by every request that
/// presents the same token while it stays cached.
#[derive(Debug)]
pub struct Identity {
    /// Index of the issuer (in configuration order) that signed it.
    pub issuer: usize,
    /// The issuer's key-set generation the signature was checked against.
    pub generation: u64,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub sub: Option<String>,
    pub org: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// One value per configured identity header (same order); `None` when the
    /// token lacks the claim.
    pub headers: Vec<Option<HeaderValue>>,
    /// What the revocation set can match in a token of the built-in issuer
    /// (checked on every request, cached or not); `None` for other issuers.
    pub revocation: Option<Box<Revocable>>,
}

impl Identity {
    /// The heap bytes its text holds (claims and header values, with the
    /// allocator's per-block header): what a cache entry weighs beyond its
    /// fixed overhead.
    pub fn heap_bytes(&self) -> u32 {
        const BLOCK: usize = 24;
        let text = |s: &str| s.len() + BLOCK;
        let total = self.sub.as_deref().map_or(0, text)
            + self.org.as_deref().map_or(0, text)
            + self.scopes.iter().map(|s| text(s) + 24).sum::<usize>()
            + self.roles.iter().map(|r| text(r) + 24).sum::<usize>()
            + self
                .headers
                .iter()
                .map(|h| 40 + h.as_ref().map_or(0, |v| v.len() + BLOCK))
                .sum::<usize>()
            + self
                .revocation
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Revocable>() + BLOCK);
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let small_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let big_n = URL_SAFE_NO_PAD.encode([0xffu8; 256]);
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": big_n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "good", "use": "sig", "n": big_n, "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": x},
            {"kty": "RSA", "kid": "mislabelled", "alg": "ES256", "n": big_n, "e": "AQAB"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).expect("parses");
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, vec!["ed", "good"]);
    }

    #[test]
    fn lookup_by_kid_and_type() {
        let big_n = URL_SAFE_NO_PAD.encode([0xffu8; 256]);
        let body =
            serde_json::json!({"keys": [{"kty": "RSA", "kid": "r1", "n": big_n, "e": "AQAB"}]});
        let set = KeySet {
            keys: parse_jwks(body.to_string().as_bytes()).expect("ok"),
            generation: 1,
        };
        assert!(matches!(
            set.find(Some("r1"), Algorithm::RS256),
            KeyLookup::Found(_)
        ));
        assert!(matches!(
            set.find(Some("r1"), Algorithm::ES256),
            KeyLookup::Unsuitable
        ));
        assert!(matches!(
            set.find(Some("r2"), Algorithm::RS256),
            KeyLookup::UnknownKid
        ));
        assert!(matches!(
            set.find(None, Algorithm::PS256),
            KeyLookup::Found(_)
        ));
        assert!(matches!(
            set.find(None, Algorithm::EdDSA),
            KeyLookup::Unsuitable
        ));
    }
}
