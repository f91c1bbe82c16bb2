//! Which tokens are this issuer's own: the one check behind introspection,
//! revocation, userinfo, the admin API's bearer check and logout's
//! `id_token_hint`.
//!
//! A token is *signed by us* when it is a compact JWS (`auth::verify::parse`:
//! allowed `alg`, no `crit`) whose signature verifies with a key the key ring
//! publishes — parsed once per change of the ring ([`Ring::verify`]), never
//! per request — and whose `iss` is this issuer. It is one of our *access
//! tokens* when its header also says `typ: at+jwt` (RFC 9068); an ID token
//! (`typ: JWT`) never is, whatever its claims. It is *live* when, besides, it
//! is inside its `exp`/`nbf` window (no leeway: this issuer's clock wrote
//! them) and no stored revocation matches it (its `jti`, its family, or its
//! user or client since it was issued). Revocations are read from the store,
//! not from the gateway's in-memory set, so that every replica answers alike
//! before its set has caught up.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::keyring::{KeyRing, Ring};
use super::store::{Store, StoreError, TokenFacts};
use crate::auth::keys::KeyLookup;
use crate::auth::revocation::FAMILY_CLAIM;
use crate::auth::verify::{self, Window};

/// A token's claims.
pub type Claims = Map<String, Value>;

/// What makes a token ours: the keys in force, the issuer's URL, and the
/// store that holds the revocations.
pub struct OwnTokens<'a> {
    pub ring: Arc<Ring>,
    pub issuer: &'a str,
    pub store: &'a dyn Store,
}

/// A JWT this issuer signed; nothing checked about its time.
#[derive(Debug)]
pub struct Signed {
    pub claims: Claims,
    /// The header says `typ: at+jwt`: an access token, not an ID token.
    pub access: bool,
}

/// Which time bounds a caller applies to a live access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The token is presented to be honoured (introspection, userinfo, the
    /// admin API): `exp` and `nbf`.
    Use,
    /// The token is presented to be revoked: `exp` only, so that a token
    /// whose `nbf` is still ahead (minted by a replica whose clock is
    /// ahead) can be revoked before it becomes valid.
    Revoke,
}

impl std::fmt::Debug for OwnTokens<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnTokens")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

// === impl OwnTokens ===

impl<'a> OwnTokens<'a> {
    /// The check with the keys `keys` holds now, for the issuer at `issuer`
    /// whose revocations `store` holds.
    pub fn new(keys: &KeyRing, issuer: &'a str, store: &'a dyn Store) -> OwnTokens<'a> {
        OwnTokens {
            ring: keys.current(),
            issuer,
            store,
        }
    }

    /// The claims of `token` when it is signed by us (an access token or an
    /// ID token; [`Signed::access`] tells them apart).
    pub fn signed(&self, token: &str) -> Option<Signed> {
        let parsed = verify::parse(token).ok()?;
        let KeyLookup::Found(key) = self.ring.verify.find(parsed.kid.as_deref(), parsed.alg) else {
            return None;
        };
        verify::verify_signature(&parsed, key).ok()?;
        let access = parsed.at_jwt;
        let claims = parsed.claims;
        let ours = claims.get("iss").and_then(Value::as_str) == Some(self.issuer);
        ours.then_some(Signed { claims, access })
    }

    /// The claims of `token` when it is one of our access tokens, live at
    /// `now` for `purpose`; `None` when it is not (for whatever reason:
    /// callers say nothing about why). Fails only when the store does.
    pub async fn live_access(
        &self,
        token: &str,
        now: i64,
        purpose: Purpose,
    ) -> Result<Option<Claims>, StoreError> {
        let Some(Signed {
            claims,
            access: true,
        }) = self.signed(token)
        else {
            return Ok(None);
        };
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let Some(exp) = number("exp") else {
            return Ok(None);
        };
        let nbf = match purpose {
            Purpose::Use => number("nbf"),
            Purpose::Revoke => None,
        };
        if verify::check_window(Window { exp, nbf }, now, 0).is_err() {
            return Ok(None);
        }
        match is_revoked(self.store, &claims).await? {
            true => Ok(None),
            false => Ok(Some(claims)),
        }
    }
}

/// Whether `token` has the form of a compact JWS (three dot-separated parts);
/// refresh tokens are base64url and never contain a dot.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Whether a stored revocation matches the access token with `claims` (of
/// this issuer, signature checked). A token without the claims a check needs
/// (`jti`, `sub`, `iat`) counts as revoked: ours always carry them.
async fn is_revoked(store: &dyn Store, claims: &Claims) -> Result<bool, StoreError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let (Some(jti), Some(sub), Some(iat)) = (
        text("jti"),
        text("sub"),
        claims.get("iat").and_then(Value::as_i64),
    ) else {
        return Ok(true);
    };
    let facts = TokenFacts {
        jti,
        family_id: text(FAMILY_CLAIM),
        sub,
        client_id: text("client_id"),
        iat,
    };
    store.is_revoked(&facts).await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::config::SigningAlg;
    use crate::issuer::signing::{GeneratedKey, SigningKey, generate};
    use crate::issuer::store::sqlite::SqliteStore;

    const ISSUER: &str = "https://issuer.test";
    const NOW: i64 = 1_700_000_000;

    fn signer(key: &GeneratedKey) -> SigningKey {
        SigningKey::from_pkcs8(key.alg, &key.pkcs8).unwrap()
    }

    fn claims(changes: Value) -> Value {
        let mut c = json!({
            "iss": ISSUER, "sub": "usr_1", "aud": "https://api.test",
            "client_id": "web", "jti": "j1", "iat": NOW, "nbf": NOW, "exp": NOW + 60,
        });
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        c
    }

    /// A JWS whose header is `header` with `key`'s `kid` and alg, signed by
    /// `key` (outside `SigningKey`, to write any header).
    fn forged(key: &GeneratedKey, kid: &str, typ: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        header.typ = (!typ.is_empty()).then(|| typ.to_owned());
        let enc = jsonwebtoken::EncodingKey::from_ec_der(&key.pkcs8);
        jsonwebtoken::encode(&header, claims, &enc).unwrap()
    }

    fn own<'a>(ours: &GeneratedKey, store: &'a dyn Store) -> OwnTokens<'a> {
        let jwks = format!(r#"{{"keys":[{}]}}"#, ours.public_jwk);
        OwnTokens {
            ring: Arc::new(Ring::verifying(Bytes::from(jwks))),
            issuer: ISSUER,
            store,
        }
    }

    #[tokio::test]
    async fn only_live_access_tokens_signed_by_us_for_us_pass() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let ours = generate(SigningAlg::ES256).unwrap();
        let foreign = generate(SigningAlg::ES256).unwrap();
        let own = own(&ours, &store);
        let live = |t: String, purpose| {
            let own = &own;
            async move { own.live_access(&t, NOW, purpose).await.unwrap() }
        };
        let good = signer(&ours).sign(&claims(json!({})), "at+jwt").unwrap();
        assert_eq!(live(good.clone(), Purpose::Use).await.unwrap()["jti"], "j1");
        assert!(own.signed(&good).unwrap().access);
        // RFC 7515 §4.1.9: `application/at+jwt` is the same type.
        let long = forged(&ours, &ours.kid, "application/at+jwt", &claims(json!({})));
        assert!(live(long, Purpose::Use).await.is_some());

        let refused = [
            (
                "an ID token",
                signer(&ours).sign(&claims(json!({})), "JWT").unwrap(),
            ),
            ("no typ", forged(&ours, &ours.kid, "", &claims(json!({})))),
            (
                "another typ",
                forged(&ours, &ours.kid, "dpop+jwt", &claims(json!({}))),
            ),
            (
                "a foreign key under our kid",
                forged(&foreign, &ours.kid, "at+jwt", &claims(json!({}))),
            ),
            (
                "a foreign key",
                signer(&foreign).sign(&claims(json!({})), "at+jwt").unwrap(),
            ),
            (
                "another issuer",
                signer(&ours)
                    .sign(&claims(json!({"iss": "https://other.test"})), "at+jwt")
                    .unwrap(),
            ),
            (
                "expired",
                signer(&ours)
                    .sign(&claims(json!({"exp": NOW})), "at+jwt")
                    .unwrap(),
            ),
            (
                "no exp",
                signer(&ours)
                    .sign(&claims(json!({"exp": null})), "at+jwt")
                    .unwrap(),
            ),
            (
                "no jti",
                signer(&ours)
                    .sign(&claims(json!({"jti": null})), "at+jwt")
                    .unwrap(),
            ),
            ("not a JWS", "a.b.c".to_owned()),
        ];
        for (what, token) in refused {
            assert!(live(token.clone(), Purpose::Use).await.is_none(), "{what}");
            assert!(live(token, Purpose::Revoke).await.is_none(), "{what}");
        }
        // An ID token is still signed by us (logout's id_token_hint).
        let id = signer(&ours).sign(&claims(json!({})), "JWT").unwrap();
        assert!(!own.signed(&id).unwrap().access);

        // Not yet valid: refused to be used, still revocable.
        let early = signer(&ours)
            .sign(&claims(json!({"nbf": NOW + 30})), "at+jwt")
            .unwrap();
        assert!(live(early.clone(), Purpose::Use).await.is_none());
        assert!(live(early, Purpose::Revoke).await.is_some());

        // A stored revocation of its jti.
        let fact = crate::issuer::revocation::jti("j1", NOW, NOW + 60, NOW);
        store.record_revocation(&fact).await.unwrap();
        assert!(live(good, Purpose::Use).await.is_none());
    }

    #[test]
    fn jwts_and_refresh_tokens_are_told_apart_by_form() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("abc_-DEF"));
        assert!(!looks_like_jwt("a.b"));
    }
}
