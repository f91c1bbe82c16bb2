//! Failed authentications slowed down with growing delays, never locked.
//!
//! Each attempt to check a secret (a client secret at the token, revocation
//! and introspection endpoints; a password at `/login`) is counted under two
//! keys before it is checked: the account *at the source address*
//! (`client:<id>@<source>`, `login:<email>@<source>`), and the source address
//! alone (`client-source:<source>`, `login-source:<source>`). Past a few free
//! attempts each further one sets a delay that doubles, up to a cap; an
//! attempt during a delay is answered at once (429 with `Retry-After`), is not
//! checked, is not counted and does not extend the delay. A correct
//! credential clears its account key and forgives its count at the source.
//!
//! Nothing is ever refused because of failures counted for the account alone:
//! strangers elsewhere cannot slow down, let alone lock out, a client or a
//! user who has the right secret. The price is that a guesser with many
//! addresses gets a few tries per address; the source keys bound what each
//! address can try across accounts, generated client secrets (256 bits) cannot
//! be guessed anyway, and every guess still costs a slot of the argon2
//! budgets (`kdf`). The counts live in the database, so the limits hold across
//! replicas.
//!
//! The creation of anonymous users, which needs no credentials at all, is
//! slowed down per source the same way ([`Throttle::creation`]): every
//! creation counts.
//!
//! The source is the client's address as the gateway determines it
//! ([`ClientIp`]): the peer, or, when the peer is one of
//! `server.trusted_proxies`, the address they forward in `X-Forwarded-For`.

use std::net::IpAddr;
use std::sync::Arc;

use super::store::{Attempt, AttemptRule, Store, StoreError};
use super::token::token_hash;

/// The client's address of a request, put in its extensions by the server:
/// the peer, or behind trusted proxies the address they forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Where an attempt comes from, as throttled: an IPv4 address, or the /64 of
/// an IPv6 address (one host usually holds a whole /64). Requests without a
/// known peer share one source, `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source(String);

/// The slowing of one kind of attempt: failures under the account at one
/// source, and under the source across accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The key prefix of the account keys (`login`, `client`).
    pub kind: &'static str,
    /// Whether the account is stored as its SHA-256 (emails, as typed, are
    /// personal data and sometimes a password typed in the wrong field;
    /// client ids are public).
    pub hash_account: bool,
    /// Per account at one source.
    pub account: AttemptRule,
    /// Per source, across accounts.
    pub source: AttemptRule,
}

/// Passwords at `/login`: three tries, then 2 s doubling to 15 min per
/// account and source; thirty per source across accounts, then 1 s doubling
/// to 15 min. Remembered for an hour after the last delay.
pub const LOGIN: Rules = Rules {
    kind: "login",
    hash_account: true,
    account: AttemptRule {
        free: 3,
        first_delay: 2,
        max_delay: 900,
        memory: 3600,
    },
    source: AttemptRule {
        free: 30,
        first_delay: 1,
        max_delay: 900,
        memory: 3600,
    },
};

/// Client secrets: ten tries, then 1 s doubling to 5 min per client and
/// source; thirty per source across clients, then 1 s doubling to 5 min.
pub const CLIENT: Rules = Rules {
    kind: "client",
    hash_account: false,
    account: AttemptRule {
        free: 10,
        first_delay: 1,
        max_delay: 300,
        memory: 3600,
    },
    source: AttemptRule {
        free: 30,
        first_delay: 1,
        max_delay: 300,
        memory: 3600,
    },
};

/// Anonymous users created from one source (every creation counts; none is
/// forgiven): twenty at once, then one after 1 s, the wait doubling to one
/// creation a minute; the count starts over an hour after the last wait.
/// Creating users needs no credentials, so without this one address could
/// fill the database.
pub const ANONYMOUS: AttemptRule = AttemptRule {
    free: 20,
    first_delay: 1,
    max_delay: 60,
    memory: 3600,
};

/// What taking an attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the secret. `delays_begin`: this attempt is the one after which
    /// the account at this source waits (worth one audit entry).
    Check { delays_begin: bool },
    /// Refuse without checking; the delay ends in `retry_after` seconds (at
    /// least 1).
    Wait { retry_after: u64 },
}

/// The two keys of one attempt, taken by [`Throttle::attempt`] and settled by
/// [`Throttle::succeeded`] or [`Throttle::unchecked`].
#[derive(Debug, Clone)]
pub struct Keys {
    rules: Rules,
    account: String,
    source: String,
}

/// Throttles attempts, over the issuer's store.
pub struct Throttle {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

// === impl Source ===

impl Source {
    /// The source of a request from `client`.
    pub fn of(client: Option<ClientIp>) -> Source {
        match client.map(|ClientIp(ip)| ip) {
            None => Source("unknown".to_owned()),
            Some(IpAddr::V4(v4)) => Source(v4.to_string()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(v4.to_string()),
                None => {
                    let s = v6.segments();
                    Source(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
                }
            },
        }
    }

    /// The source as text (an address or a /64), for keys and logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Keys ===

impl Keys {
    /// The keys of an attempt on `account` (a client id, or an email as
    /// typed, lowercased) from `source`.
    pub fn new(rules: Rules, account: &str, source: &Source) -> Keys {
        let account = match rules.hash_account {
            true => token_hash(account),
            false => account.to_owned(),
        };
        Keys {
            rules,
            account: format!("{}:{account}@{}", rules.kind, source.as_str()),
            source: format!("{}-source:{}", rules.kind, source.as_str()),
        }
    }
}

// === impl Throttle ===

impl Throttle {
    /// A throttle whose counts live in `store`.
    pub fn new(store: Arc<dyn Store>) -> Throttle {
        Throttle { store }
    }

    /// Takes an attempt under both keys at `now`: the source first (so that a
    /// source in a delay costs one statement), then the account at the
    /// source. A delay on either refuses the attempt, and the other key's
    /// count, if taken, is forgiven.
    pub async fn attempt(&self, keys: &Keys, now: i64) -> Result<Verdict, StoreError> {
        let rules = &keys.rules;
        let source = self
            .store
            .take_attempt(&keys.source, now, &rules.source)
            .await?;
        if let Attempt::Delayed { until } = source {
            return Ok(wait(until, now));
        }
        match self
            .store
            .take_attempt(&keys.account, now, &rules.account)
            .await?
        {
            Attempt::Delayed { until } => {
                self.store
                    .forgive_attempt(&keys.source, now, &rules.source)
                    .await?;
                Ok(wait(until, now))
            }
            Attempt::Counted { failures, .. } => Ok(Verdict::Check {
                delays_begin: failures == rules.account.free,
            }),
        }
    }

    /// The secret was right: the account at this source starts over, and the
    /// attempt is forgiven at the source.
    pub async fn succeeded(&self, keys: &Keys, now: i64) -> Result<(), StoreError> {
        self.store.clear_attempts(&keys.account).await?;
        self.store
            .forgive_attempt(&keys.source, now, &keys.rules.source)
            .await
    }

    /// Takes the creation of an anonymous user from `source` at `now`,
    /// under the key `anonymous-source:<source>` and [`ANONYMOUS`]: `Check`
    /// to go ahead (`delays_begin` on the creation that starts the waits),
    /// `Wait` while the source waits.
    pub async fn creation(&self, source: &Source, now: i64) -> Result<Verdict, StoreError> {
        let key = format!("anonymous-source:{}", source.as_str());
        match self.store.take_attempt(&key, now, &ANONYMOUS).await? {
            Attempt::Delayed { until } => Ok(wait(until, now)),
            Attempt::Counted { failures, .. } => Ok(Verdict::Check {
                delays_begin: failures == ANONYMOUS.free,
            }),
        }
    }

    /// The attempt was counted but never checked (no argon2 slot was free):
    /// it is forgiven under both keys.
    pub async fn unchecked(&self, keys: &Keys, now: i64) -> Result<(), StoreError> {
        let rules = &keys.rules;
        self.store
            .forgive_attempt(&keys.account, now, &rules.account)
            .await?;
        self.store
            .forgive_attempt(&keys.source, now, &rules.source)
            .await
    }
}

fn wait(until: i64, now: i64) -> Verdict {
    let secs = until.saturating_sub(now).max(1);
    Verdict::Wait {
        retry_after: u64::try_from(secs).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn peer(ip: IpAddr) -> Option<ClientIp> {
        Some(ClientIp(ip))
    }

    #[test]
    fn sources_are_addresses_or_ipv6_slash_64s() {
        let v4 = Source::of(peer(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))));
        assert_eq!(v4.as_str(), "198.51.100.7");
        let a = Source::of(peer("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = Source::of(peer("2001:db8:1:2:bbbb::9".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "2001:db8:1:2::/64");
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 5).to_ipv6_mapped());
        assert_eq!(Source::of(peer(mapped)).as_str(), "203.0.113.5");
        assert_eq!(Source::of(None).as_str(), "unknown");
        let other = Source::of(peer(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_ne!(other, a);
    }

    #[test]
    fn keys_name_the_account_at_the_source_and_the_source() {
        let s = Source::of(peer(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let k = Keys::new(LOGIN, "ann@example.test", &s);
        let hashed = token_hash("ann@example.test");
        assert_eq!(k.account, format!("login:{hashed}@127.0.0.1"));
        assert_eq!(k.source, "login-source:127.0.0.1");
        let k = Keys::new(CLIENT, "billing", &s);
        assert_eq!(k.account, "client:billing@127.0.0.1");
    }

    #[tokio::test]
    async fn delays_grow_and_attempts_during_one_neither_count_nor_extend_it() {
        let store: Arc<dyn Store> = Arc::new(
            crate::issuer::store::sqlite::SqliteStore::open("sqlite::memory:")
                .await
                .unwrap(),
        );
        let throttle = Throttle::new(store);
        let s = Source::of(peer(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let keys = Keys::new(LOGIN, "ann@example.test", &s);
        let t0 = 1_000_000;
        let check = |delays_begin| Verdict::Check { delays_begin };
        // Three free attempts; the third sets the first delay (2 s).
        assert_eq!(throttle.attempt(&keys, t0).await.unwrap(), check(false));
        assert_eq!(throttle.attempt(&keys, t0).await.unwrap(), check(false));
        assert_eq!(throttle.attempt(&keys, t0).await.unwrap(), check(true));
        let wait = |retry_after| Verdict::Wait { retry_after };
        assert_eq!(throttle.attempt(&keys, t0).await.unwrap(), wait(2));
        // Attempts during the delay do not extend it.
        assert_eq!(throttle.attempt(&keys, t0 + 1).await.unwrap(), wait(1));
        // After it, one more attempt; the delay doubles.
        assert_eq!(throttle.attempt(&keys, t0 + 2).await.unwrap(), check(false));
        assert_eq!(throttle.attempt(&keys, t0 + 2).await.unwrap(), wait(4));
        assert_eq!(throttle.attempt(&keys, t0 + 6).await.unwrap(), check(false));
        assert_eq!(throttle.attempt(&keys, t0 + 6).await.unwrap(), wait(8));
        // Another account at the same source is not delayed; the same
        // account at another source is not either.
        let other = Keys::new(LOGIN, "bob@example.test", &s);
        assert_eq!(
            throttle.attempt(&other, t0 + 6).await.unwrap(),
            check(false)
        );
        let elsewhere = Source::of(peer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))));
        let ann_elsewhere = Keys::new(LOGIN, "ann@example.test", &elsewhere);
        let first = throttle.attempt(&ann_elsewhere, t0 + 6).await.unwrap();
        assert_eq!(first, check(false));
        // A success there starts over there only.
        throttle.succeeded(&ann_elsewhere, t0 + 6).await.unwrap();
        assert_eq!(throttle.attempt(&keys, t0 + 7).await.unwrap(), wait(7));
        // Success clears the account at this source.
        throttle.succeeded(&keys, t0 + 14).await.unwrap();
        assert_eq!(
            throttle.attempt(&keys, t0 + 14).await.unwrap(),
            check(false)
        );
        // An hour after the last delay, everything is forgotten.
        for _ in 0..2 {
            throttle.attempt(&keys, t0 + 14).await.unwrap();
        }
        assert!(matches!(
            throttle.attempt(&keys, t0 + 14).await.unwrap(),
            Verdict::Wait { .. }
        ));
        let later = t0 + 14 + 2 + 3600;
        assert_eq!(throttle.attempt(&keys, later).await.unwrap(), check(false));
    }

    #[tokio::test]
    async fn anonymous_creations_are_slowed_down_per_source() {
        let store: Arc<dyn Store> = Arc::new(
            crate::issuer::store::sqlite::SqliteStore::open("sqlite::memory:")
                .await
                .unwrap(),
        );
        let throttle = Throttle::new(store);
        let s = Source::of(peer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))));
        let t0 = 3_000_000;
        let check = |delays_begin| Verdict::Check { delays_begin };
        for n in 1..ANONYMOUS.free {
            assert_eq!(
                throttle.creation(&s, t0).await.unwrap(),
                check(false),
                "{n}"
            );
        }
        // The twentieth goes ahead and starts the waits.
        assert_eq!(throttle.creation(&s, t0).await.unwrap(), check(true));
        let wait = |retry_after| Verdict::Wait { retry_after };
        assert_eq!(throttle.creation(&s, t0).await.unwrap(), wait(1));
        assert_eq!(throttle.creation(&s, t0 + 1).await.unwrap(), check(false));
        assert_eq!(throttle.creation(&s, t0 + 1).await.unwrap(), wait(2));
        // Another source is not slowed down.
        let other = Source::of(peer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7))));
        assert_eq!(throttle.creation(&other, t0).await.unwrap(), check(false));
        // The wait grows to a minute and no further.
        let mut at = t0 + 1;
        for _ in 0..10 {
            at += 60;
            assert_eq!(throttle.creation(&s, at).await.unwrap(), check(false));
        }
        assert_eq!(throttle.creation(&s, at).await.unwrap(), wait(60));
    }

    #[tokio::test]
    async fn a_source_trying_many_accounts_is_slowed_down_too() {
        let store: Arc<dyn Store> = Arc::new(
            crate::issuer::store::sqlite::SqliteStore::open("sqlite::memory:")
                .await
                .unwrap(),
        );
        let throttle = Throttle::new(store);
        let s = Source::of(peer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5))));
        let t0 = 2_000_000;
        for n in 0..LOGIN.source.free {
            let keys = Keys::new(LOGIN, &format!("user{n}@example.test"), &s);
            let verdict = throttle.attempt(&keys, t0).await.unwrap();
            assert_eq!(
                verdict,
                Verdict::Check {
                    delays_begin: false
                },
                "{n}"
            );
        }
        let fresh = Keys::new(LOGIN, "fresh@example.test", &s);
        let verdict = throttle.attempt(&fresh, t0).await.unwrap();
        assert_eq!(verdict, Verdict::Wait { retry_after: 1 });
        // An attempt counted but not checked (no argon2 slot) is forgiven:
        // the source's count drops below the free attempts, its delay ends.
        let keys = Keys::new(LOGIN, "user0@example.test", &s);
        throttle.unchecked(&keys, t0).await.unwrap();
        assert_eq!(
            throttle.attempt(&fresh, t0).await.unwrap(),
            Verdict::Check {
                delays_begin: false
            }
        );
    }
}
