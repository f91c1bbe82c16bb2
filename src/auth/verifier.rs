//! The token verifier: from a bearer token to a verified [`Identity`], using the
//! caches first and the issuer's keys (refetching on an unknown `kid`) otherwise.
//! A token of the built-in issuer is also checked against the revocation set on
//! every request, cached or not ([`RevocationSet::admits`]).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use serde_json::{Map, Value};

use super::cache::{Rejection, TokenCache, TokenDigest, digest};
use super::introspect::{Answer, Introspector};
use super::jwks::{IssuerKeys, Refetch};
use super::keys::{Identity, KeyLookup};
use super::revocation::{FAMILY_CLAIM, Revocable, RevocationSet};
use super::verify::{self, TokenError};
use crate::clock::Clock;
use crate::config::{IssuerConfig, is_list_item};
use crate::telemetry::Metrics;

/// Verifies tokens for every configured issuer.
pub struct Verifier {
    issuers: Vec<Arc<IssuerKeys>>,
    by_iss: HashMap<String, usize>,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
    /// Claim names of the identity headers, in header order.
    header_claims: Vec<String>,
    metrics: Metrics,
    /// What the built-in issuer revoked; `None` without a built-in issuer.
    revocations: Option<Arc<RevocationSet>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers)
            .finish()
    }
}

// === impl Verifier ===

impl Verifier {
    /// A verifier over these issuers; `header_claims` names the claim behind each
    /// identity header, in order.
    pub fn new(
        issuers: Vec<Arc<IssuerKeys>>,
        header_claims: Vec<String>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Verifier {
        let by_iss = issuers
            .iter()
            .enumerate()
            .map(|(i, k)| (k.config.issuer.clone(), i))
            .collect();
        Verifier {
            cache: TokenCache::new(super::cache::DEFAULT_BUDGET, clock.clone()),
            issuers,
            by_iss,
            clock,
            header_claims,
            metrics,
            revocations: None,
        }
    }

    /// The same verifier checking the built-in issuer's tokens against
    /// `set`, which then keeps its entries for as long as this verifier's
    /// leeway lets such a token live past its `exp`.
    pub fn with_revocations(mut self, set: Arc<RevocationSet>) -> Verifier {
        for issuer in self.issuers.iter().filter(|i| i.is_builtin()) {
            set.cover_leeway(issuer.config.leeway);
        }
        self.revocations = Some(set);
        self
    }

    /// The same verifier with token caches of `budget` bytes
    /// (`server.limits.token_cache`).
    pub fn with_cache_budget(mut self, budget: u64) -> Verifier {
        self.cache = TokenCache::new(budget, self.clock.clone());
        self
    }

    /// Applies the token caches' pending bookkeeping now (for measurements).
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// How many verified identities are cached, and their weight in bytes.
    pub fn cache_usage(&self) -> (u64, u64) {
        self.cache.verified_usage()
    }

    /// The issuers, in configuration order.
    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.issuers
    }

    /// Verifies `token`: signature, issuer, audience and validity window at the
    /// clock's current time. Route policy is checked by the caller.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let key = digest(token);
        let now = self.clock.now_unix();
        if let Some(answer) = self.cached(&key, now) {
            return answer;
        }
        // Boxed: the slow path's future (key fetches, introspection calls) is
        // kilobytes, and every request's future would otherwise carry it —
        // moved and copied on each request — for a path most requests skip.
        Box::pin(self.verify_uncached(token, key, now)).await
    }

    /// The cached answer for `key`, if any is still good: a verified identity
    /// (its validity window checked at `now`) or a rejection, both of the key
    /// set in force.
    fn cached(&self, key: &TokenDigest, now: i64) -> Option<Result<Arc<Identity>, TokenError>> {
        if let Some(id) = self.cache.verified(key) {
            let issuer = &self.issuers[id.issuer];
            if issuer.generation() == id.generation {
                self.metrics.cache_hits.inc();
                let leeway = issuer.config.leeway.as_secs() as i64;
                let window = verify::Window {
                    exp: id.exp,
                    nbf: id.nbf,
                };
                if let Err(e) = verify::check_window(window, now, leeway) {
                    return Some(Err(e));
                }
                if let Some(marks) = &id.revocation
                    && !self.admits(marks)
                {
                    self.cache.forget_verified(key);
                    return Some(Err(self.revoked(*key, id.issuer, id.generation)));
                }
                return Some(Ok(id));
            }
            self.cache.forget_verified(key);
        }
        if let Some(r) = self.cache.rejected(key) {
            if self.issuers[r.issuer].generation() == r.generation {
                return Some(Err(r.error));
            }
        }
        None
    }

    /// Verifies a token the caches had no answer for.
    async fn verify_uncached(
        &self,
        token: &str,
        key: TokenDigest,
        now: i64,
    ) -> Result<Arc<Identity>, TokenError> {
        self.metrics.cache_misses.inc();
        let parsed = match verify::parse(token) {
            Ok(p) => p,
            // Not a JWT: an opaque token, for the issuers that introspect.
            Err(e) => {
                return self
                    .introspect_opaque(token, key, now)
                    .await
                    .unwrap_or(Err(e));
            }
        };
        let iss = parsed
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::MissingClaim)?;
        let index = *self.by_iss.get(iss).ok_or(TokenError::UnknownIssuer)?;
        let issuer = &self.issuers[index];
        let config = &issuer.config;
        if !issuer.has_keys() {
            // An issuer without signing keys vouches for its tokens only by
            // introspection, whatever their form.
            return match issuer.introspector() {
                Some(i) => self.introspected(index, i, token, key, now).await,
                None => Err(TokenError::UnknownKey),
            };
        }
        if !config.algorithms.contains(&parsed.alg) {
            return Err(TokenError::DisallowedAlg);
        }
        // The built-in issuer marks its access tokens `at+jwt`; its ID tokens
        // (audience: a client id) and anything else it signs never pass a route.
        if issuer.is_builtin() && !parsed.at_jwt {
            return Err(TokenError::BadType);
        }
        let keys = match issuer.current() {
            Some(k) => k,
            None => {
                if !issuer.fetch_if_missing().await {
                    return Err(TokenError::KeysUnavailable);
                }
                issuer.current().ok_or(TokenError::KeysUnavailable)?
            }
        };
        let mut keys = keys;
        let verdict = loop {
            match keys.find(parsed.kid.as_deref(), parsed.alg) {
                KeyLookup::Found(k) => break verify::verify_signature(&parsed, k),
                KeyLookup::Unsuitable => break Err(TokenError::DisallowedAlg),
                KeyLookup::UnknownKid => match issuer.refetch_unknown_kid(keys.generation).await {
                    Refetch::Changed => match issuer.current() {
                        Some(fresh) if fresh.generation != keys.generation => {
                            keys = fresh;
                            continue;
                        }
                        Some(_) => break Err(TokenError::UnknownKey),
                        None => return Err(TokenError::KeysUnavailable),
                    },
                    Refetch::Unchanged => break Err(TokenError::UnknownKey),
                    // The issuer is slow: "try again", not "your token is bad".
                    Refetch::StillRunning => return Err(TokenError::KeysUnavailable),
                },
            }
        };
        if let Err(error) = verdict {
            // An unknown kid may become known at the next refresh; every other
            // verdict here can only change with the key set.
            if error != TokenError::UnknownKey {
                self.cache.insert_rejected(
                    key,
                    Rejection {
                        issuer: index,
                        generation: keys.generation,
                        error,
                    },
                );
            }
            return Err(error);
        }
        let window = verify::check_claims(&parsed.claims, config, now)?;
        let mut identity = self.identity(index, keys.generation, window, &parsed.claims, config);
        if issuer.is_builtin() {
            identity.revocation = self.revocable(&parsed.claims)?;
            if let Some(marks) = &identity.revocation
                && !self.admits(marks)
            {
                return Err(self.revoked(key, index, keys.generation));
            }
        }
        let identity = Arc::new(identity);
        self.cache.insert_verified(key, identity.clone());
        Ok(identity)
    }

    /// What the revocation set can match in a built-in token with `claims`;
    /// `None` when no set is kept. Our tokens always carry `jti`, `sub` and
    /// `iat`: one without them is refused rather than left uncheckable.
    fn revocable(&self, claims: &Map<String, Value>) -> Result<Option<Box<Revocable>>, TokenError> {
        let Some(set) = &self.revocations else {
            return Ok(None);
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let jti = text("jti").ok_or(TokenError::MissingClaim)?;
        let sub = text("sub").ok_or(TokenError::MissingClaim)?;
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(TokenError::MissingClaim)?;
        Ok(Some(Box::new(set.revocable(
            jti,
            text(FAMILY_CLAIM),
            sub,
            text("client_id"),
            iat,
        ))))
    }

    /// Whether the revocation set lets the token pass (fails closed if an
    /// identity is marked but no set is kept, which cannot happen).
    fn admits(&self, marks: &Revocable) -> bool {
        self.revocations
            .as_ref()
            .is_some_and(|set| set.admits(marks))
    }

    /// Remembers a revoked token as rejected (a revocation is never taken
    /// back) and returns the error.
    fn revoked(&self, key: TokenDigest, issuer: usize, generation: u64) -> TokenError {
        self.cache.insert_rejected(
            key,
            Rejection {
                issuer,
                generation,
                error: TokenError::Revoked,
            },
        );
        TokenError::Revoked
    }

    /// An opaque token, asked of every issuer that introspects, in order: the
    /// first active answer wins; if none is active and one could not answer,
    /// the outage decides (503), else the token is inactive. `None` when no
    /// issuer introspects.
    async fn introspect_opaque(
        &self,
        token: &str,
        key: TokenDigest,
        now: i64,
    ) -> Option<Result<Arc<Identity>, TokenError>> {
        let mut verdict = None;
        for (index, issuer) in self.issuers.iter().enumerate() {
            let Some(introspector) = issuer.introspector() else {
                continue;
            };
            match self
                .introspected(index, introspector, token, key, now)
                .await
            {
                Ok(id) => return Some(Ok(id)),
                Err(TokenError::IntrospectionUnavailable) => {
                    verdict = Some(Err(TokenError::IntrospectionUnavailable));
                }
                Err(e) => {
                    if verdict.is_none() {
                        verdict = Some(Err(e));
                    }
                }
            }
        }
        verdict
    }

    /// Checks an introspection answer like a JWT's claims: `active`, then `iss`
    /// (when present, the configured issuer), `aud`, `exp`, `nbf`, `iat`.
    async fn introspected(
        &self,
        index: usize,
        introspector: &Introspector,
        token: &str,
        key: TokenDigest,
        now: i64,
    ) -> Result<Arc<Identity>, TokenError> {
        let claims = match introspector.introspect(token, key).await {
            Err(_) => return Err(TokenError::IntrospectionUnavailable),
            Ok(Answer::Inactive) => return Err(TokenError::Inactive),
            Ok(Answer::Active(claims)) => claims,
        };
        if !is_access_token(&claims) {
            return Err(TokenError::BadType);
        }
        let config = &self.issuers[index].config;
        if let Some(iss) = claims.get("iss") {
            if iss.as_str() != Some(config.issuer.as_str()) {
                return Err(TokenError::UnknownIssuer);
            }
        }
        let window = verify::check_claims(&claims, config, now)?;
        Ok(Arc::new(self.identity(index, 0, window, &claims, config)))
    }

    fn identity(
        &self,
        issuer: usize,
        generation: u64,
        window: verify::Window,
        claims: &Map<String, Value>,
        config: &IssuerConfig,
    ) -> Identity {
        let scopes = scopes(claims);
        let roles = roles(claims, config.roles_claim.as_deref());
        let org = claims
            .get(&config.org_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let headers = self
            .header_claims
            .iter()
            .map(|claim| match claim.as_str() {
                "scope" | "scp" => join_header(&scopes, " "),
                "roles" => join_header(&roles, ","),
                "org_id" => org.as_deref().and_then(|o| HeaderValue::from_str(o).ok()),
                other => claims.get(other).and_then(claim_header),
            })
            .collect();
        Identity {
            issuer,
            generation,
            exp: window.exp,
            nbf: window.nbf,
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            org,
            scopes,
            roles,
            headers,
            revocation: None,
        }
    }
}

/// Whether an active introspection answer is about an access token. An IdP
/// answers `active: true` for its refresh tokens too (Ory Hydra, Keycloak),
/// and a leaked refresh token must not become a long-lived bearer token:
/// `token_type` (RFC 7662), Hydra's `token_use` and Keycloak's `typ`, when
/// present, must each name an access token; an answer with none of them is
/// taken at the endpoint's word.
fn is_access_token(claims: &Map<String, Value>) -> bool {
    let says = |member: &str, accepted: &[&str]| match claims.get(member) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => accepted.iter().any(|a| s.eq_ignore_ascii_case(a)),
        Some(_) => false,
    };
    says("token_type", &["bearer", "access_token", "dpop"])
        && says("token_use", &["access_token"])
        && says("typ", &["bearer", "at+jwt", "application/at+jwt"])
}

/// Scopes from `scope` (space-separated) or `scp` (array of strings). A scope
/// that could not be written into the space-separated `X-Auth-Scopes` as one
/// item ([`is_list_item`]) is left out, for the policy and the header alike.
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let from_str = |s: &str| -> Vec<String> {
        s.split_ascii_whitespace()
            .filter(|x| is_list_item(x, b' '))
            .map(str::to_owned)
            .collect()
    };
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => from_str(s),
        (_, Some(Value::Array(a))) => strings(a, b' ', "scp"),
        (_, Some(Value::String(s))) => from_str(s),
        _ => Vec::new(),
    }
}

/// Roles from the configured claim, else `roles` (array) or `role` (string).
/// A role that could not be written into the comma-separated `X-Auth-Roles` as
/// one item (`viewer,admin` would read as two roles upstream) is left out, for
/// the policy and the header alike.
fn roles(claims: &Map<String, Value>, claim: Option<&str>) -> Vec<String> {
    let from = |name: &str, v: Option<&Value>| match v {
        Some(Value::Array(a)) => strings(a, b',', name),
        Some(Value::String(s)) if is_list_item(s, b',') => vec![s.clone()],
        Some(Value::String(_)) => {
            tracing::debug!(
                claim = name,
                "Role left out: it cannot be forwarded as one item"
            );
            Vec::new()
        }
        _ => Vec::new(),
    };
    match claim {
        Some(c) => from(c, claims.get(c)),
        None => match claims.get("roles") {
            Some(v) => from("roles", Some(v)),
            None => from("role", claims.get("role")),
        },
    }
}

/// The string items of an array claim that survive a `sep`-joined header.
fn strings(items: &[Value], sep: u8, claim: &str) -> Vec<String> {
    let kept: Vec<String> = items
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| is_list_item(s, sep))
        .map(str::to_owned)
        .collect();
    if kept.len() != items.len() {
        tracing::debug!(
            claim,
            left_out = items.len() - kept.len(),
            "Claim items left out: they cannot be forwarded as one item each"
        );
    }
    kept
}

fn join_header(items: &[String], sep: &str) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(sep)).ok()
}

/// Strings as they are, arrays joined with commas (items that are not
/// [`is_list_item`] strings, numbers or booleans left out), anything else as
/// compact JSON.
fn claim_header(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) if is_list_item(s, b',') => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(x.to_string()),
                    _ => None,
                })
                .collect();
            if items.is_empty() {
                return None;
            }
            items.join(",")
        }
        Value::Null => return None,
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn list_items_that_would_change_meaning_upstream_are_left_out() {
        let c = claims(serde_json::json!({
            "roles": ["viewer,admin", "editor", "Org Admin", " pad", "q\"x", "caf\u{e9}", "", "a\tb", 7],
        }));
        assert_eq!(roles(&c, None), ["editor", "Org Admin", "caf\u{e9}"]);
        let c = claims(serde_json::json!({"role": "viewer,admin"}));
        assert!(roles(&c, None).is_empty());
        let c = claims(serde_json::json!({"scp": ["read write", "read", "a\tb"]}));
        assert_eq!(scopes(&c), ["read"]);
        let c = claims(serde_json::json!({"scope": "read  write\tadmin"}));
        assert_eq!(scopes(&c), ["read", "write", "admin"]);
        let groups = serde_json::json!(["a,b", "c", 1, true, {"x": 1}]);
        assert_eq!(claim_header(&groups).expect("header"), "c,1,true");
        assert_eq!(claim_header(&serde_json::json!(["a,b"])), None);
    }
}
