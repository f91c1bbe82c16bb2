//! The token verifier: from a bearer token to a verified [`Identity`], using the
//! caches first and the issuer's keys (refetching on an unknown `kid`) otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use serde_json::{Map, Value};

use super::cache::{Rejection, TokenCache, digest};
use super::jwks::IssuerKeys;
use super::keys::{Identity, KeyLookup};
use super::verify::{self, TokenError};
use crate::clock::Clock;
use crate::config::IssuerConfig;
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
            cache: TokenCache::new(super::cache::MAX_ENTRIES, clock.clone()),
            issuers,
            by_iss,
            clock,
            header_claims,
            metrics,
        }
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
        if let Some(id) = self.cache.verified(&key) {
            let issuer = &self.issuers[id.issuer];
            if issuer.generation() == id.generation {
                self.metrics.cache_hits.inc();
                let leeway = issuer.config.leeway.as_secs() as i64;
                verify::check_window(
                    verify::Window {
                        exp: id.exp,
                        nbf: id.nbf,
                    },
                    now,
                    leeway,
                )?;
                return Ok(id);
            }
            self.cache.forget_verified(&key);
        }
        if let Some(r) = self.cache.rejected(&key) {
            if self.issuers[r.issuer].generation() == r.generation {
                return Err(r.error);
            }
        }
        self.metrics.cache_misses.inc();
        let parsed = verify::parse(token)?;
        let iss = parsed
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::MissingClaim)?;
        let index = *self.by_iss.get(iss).ok_or(TokenError::UnknownIssuer)?;
        let issuer = &self.issuers[index];
        let config = &issuer.config;
        if !config.algorithms.contains(&parsed.alg) {
            return Err(TokenError::DisallowedAlg);
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
                KeyLookup::UnknownKid => {
                    if issuer.refetch_unknown_kid(keys.generation).await {
                        if let Some(fresh) = issuer.current() {
                            if fresh.generation != keys.generation {
                                keys = fresh;
                                continue;
                            }
                        }
                    }
                    break Err(TokenError::UnknownKey);
                }
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
        let identity =
            Arc::new(self.identity(index, keys.generation, window, &parsed.claims, config));
        self.cache.insert_verified(key, identity.clone());
        Ok(identity)
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
        }
    }
}

/// Scopes from `scope` (space-separated) or `scp` (array of strings).
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::String(s))) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Roles from the configured claim, else `roles` (array) or `role` (string).
fn roles(claims: &Map<String, Value>, claim: Option<&str>) -> Vec<String> {
    let from = |v: Option<&Value>| match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    match claim {
        Some(c) => from(claims.get(c)),
        None => match claims.get("roles") {
            Some(v) => from(Some(v)),
            None => from(claims.get("role")),
        },
    }
}

fn join_header(items: &[String], sep: &str) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(sep)).ok()
}

/// Strings as they are, arrays joined with commas, anything else as compact JSON.
fn claim_header(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => return None,
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}
