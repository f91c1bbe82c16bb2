use serde_json::json;

use super::*;
use crate::issuer::signing::tests::verifies;
use crate::issuer::signing::{SigningKey, generate, jwks_json};

const DAY: i64 = 86_400;
const T0: i64 = 1_700_000_000;
const POLICY: RotationPolicy = RotationPolicy {
    rotation: 30 * DAY,
    jwks_max_age: 600,
    max_token_ttl: 3_600,
};

/// Applies `actions` the way the storage layer will: real keys for `Create`,
/// new times for `Retire`.
fn apply(records: &mut Vec<KeyRecord>, actions: Vec<KeyAction>, now: i64) {
    for action in actions {
        match action {
            KeyAction::Create {
                alg,
                publish_at,
                activate_at,
            } => records.push(
                generate(alg)
                    .expect("generate")
                    .into_record(None, now, publish_at, activate_at)
                    .expect("record"),
            ),
            KeyAction::Retire {
                kid,
                retire_at,
                expire_at,
            } => {
                let r = records
                    .iter_mut()
                    .find(|r| r.kid == kid)
                    .expect("known kid");
                r.retire_at = Some(retire_at);
                r.expire_at = Some(expire_at);
            }
        }
    }
}

fn token(records: &[KeyRecord], now: i64) -> String {
    let record = active_key(records, SigningAlg::ES256, now).expect("an active key");
    let key = SigningKey::from_record(record, None).expect("key");
    key.sign(
        &json!({"iat": now, "exp": now + POLICY.max_token_ttl}),
        "at+jwt",
    )
    .expect("sign")
}

fn jwks(records: &[KeyRecord], now: i64) -> String {
    jwks_json(published(records, now))
}

fn bare(kid: &str, alg: &str, activate_at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: alg.into(),
        private_key: Vec::new(),
        public_jwk: "{}".into(),
        created_at: activate_at,
        publish_at: activate_at,
        activate_at,
        retire_at: None,
        expire_at: None,
    }
}

#[test]
fn rotation_timeline_never_breaks_a_live_token() {
    let mut keys = Vec::new();
    // Start: no key, so one is made that signs at once.
    let actions = plan(&keys, &[SigningAlg::ES256], &POLICY, T0);
    assert_eq!(
        actions,
        vec![KeyAction::Create {
            alg: SigningAlg::ES256,
            publish_at: T0,
            activate_at: T0
        }]
    );
    apply(&mut keys, actions, T0);
    let first = keys[0].kid.clone();
    assert!(plan(&keys, &[SigningAlg::ES256], &POLICY, T0 + 1).is_empty());

    // Until jwks_max_age before the rotation date nothing happens.
    let due = T0 + POLICY.rotation - POLICY.jwks_max_age;
    assert!(plan(&keys, &[SigningAlg::ES256], &POLICY, due - 1).is_empty());
    let actions = plan(&keys, &[SigningAlg::ES256], &POLICY, due);
    let rotate_at = T0 + POLICY.rotation;
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(
        actions[1],
        KeyAction::Retire {
            kid: first.clone(),
            retire_at: rotate_at,
            expire_at: rotate_at + POLICY.max_token_ttl + VERIFIER_LEEWAY,
        }
    );
    apply(&mut keys, actions, due);
    let second = keys[1].kid.clone();
    // Published a whole cache age before it signs; nothing more to do meanwhile.
    assert!(keys[1].activate_at - keys[1].publish_at >= POLICY.jwks_max_age);
    assert!(plan(&keys, &[SigningAlg::ES256], &POLICY, due + 1).is_empty());
    assert_eq!(published(&keys, due).len(), 2);
    assert_eq!(
        active_key(&keys, SigningAlg::ES256, rotate_at - 1).map(|k| &k.kid),
        Some(&first)
    );

    // The last token of the old key, signed just before the switch.
    let old_token = token(&keys, rotate_at - 1);
    assert!(verifies(&old_token, &jwks(&keys, due)));
    assert_eq!(
        active_key(&keys, SigningAlg::ES256, rotate_at).map(|k| &k.kid),
        Some(&second)
    );
    let new_token = token(&keys, rotate_at);
    // A JWKS cached just before the successor was created still verifies the
    // old key's tokens; the new key is in every JWKS served since `due`.
    assert!(!verifies(&new_token, &jwks(&keys, due - 1)));
    assert!(verifies(&new_token, &jwks(&keys, due)));

    // The old key stays published for as long as its last token can be valid.
    let old_exp = rotate_at - 1 + POLICY.max_token_ttl;
    assert!(verifies(&old_token, &jwks(&keys, old_exp)));
    assert!(verifies(
        &old_token,
        &jwks(&keys, old_exp + VERIFIER_LEEWAY)
    ));
    let gone = rotate_at + POLICY.max_token_ttl + VERIFIER_LEEWAY;
    assert!(expired(&keys, gone - 1).is_empty());
    assert_eq!(published(&keys, gone).len(), 1);
    assert!(!verifies(&old_token, &jwks(&keys, gone)));
    assert_eq!(
        expired(&keys, gone)
            .iter()
            .map(|k| &k.kid)
            .collect::<Vec<_>>(),
        vec![&first]
    );
    assert!(verifies(&new_token, &jwks(&keys, gone)));
}

#[test]
fn a_late_rotation_still_publishes_ahead() {
    let mut keys = vec![bare("a", "ES256", T0)];
    let late = T0 + 40 * DAY;
    let actions = plan(&keys, &[SigningAlg::ES256], &POLICY, late);
    assert_eq!(
        actions[0],
        KeyAction::Create {
            alg: SigningAlg::ES256,
            publish_at: late,
            activate_at: late + POLICY.jwks_max_age
        }
    );
    apply(&mut keys, actions, late);
    assert_eq!(
        active_key(&keys, SigningAlg::ES256, late).map(|k| k.kid.as_str()),
        Some("a")
    );
}

#[test]
fn each_algorithm_gets_its_own_key_and_dropped_ones_retire() {
    let keys = vec![bare("e", "ES256", T0), bare("x", "EdDSA", T0)];
    let actions = plan(
        &keys,
        &[SigningAlg::ES256, SigningAlg::RS256],
        &POLICY,
        T0 + 10,
    );
    assert_eq!(
        actions,
        vec![
            KeyAction::Create {
                alg: SigningAlg::RS256,
                publish_at: T0 + 10,
                activate_at: T0 + 10
            },
            KeyAction::Retire {
                kid: "x".into(),
                retire_at: T0 + 10,
                expire_at: POLICY.expiry(T0 + 10)
            },
        ]
    );
}

#[test]
fn manual_rotation_publishes_ahead_once() {
    let mut keys = vec![bare("a", "ES256", T0)];
    let now = T0 + DAY;
    let actions = rotate_now(&keys, &[SigningAlg::ES256, SigningAlg::EdDSA], &POLICY, now);
    assert_eq!(
        actions,
        vec![
            KeyAction::Create {
                alg: SigningAlg::ES256,
                publish_at: now,
                activate_at: now + POLICY.jwks_max_age
            },
            KeyAction::Retire {
                kid: "a".into(),
                retire_at: now + POLICY.jwks_max_age,
                expire_at: POLICY.expiry(now + POLICY.jwks_max_age)
            },
            KeyAction::Create {
                alg: SigningAlg::EdDSA,
                publish_at: now,
                activate_at: now
            },
        ]
    );
    let mut waiting = bare("b", "ES256", now + POLICY.jwks_max_age);
    waiting.publish_at = now;
    keys.push(waiting);
    assert!(rotate_now(&keys, &[SigningAlg::ES256], &POLICY, now + 1).is_empty());
    assert!(plan(&keys, &[SigningAlg::ES256], &POLICY, T0 + 29 * DAY + 1).is_empty());
}

#[test]
fn lookups_are_deterministic_and_respect_the_window() {
    let mut a = bare("a", "ES256", T0);
    let b = bare("b", "ES256", T0);
    let mut future = bare("c", "ES256", T0 + 100);
    future.publish_at = T0 + 50;
    let keys = vec![b.clone(), a.clone(), future];
    assert_eq!(
        active_key(&keys, SigningAlg::ES256, T0).map(|k| k.kid.as_str()),
        Some("b")
    );
    assert_eq!(
        active_key(&keys, SigningAlg::ES256, T0 + 100).map(|k| k.kid.as_str()),
        Some("c")
    );
    assert!(active_key(&keys, SigningAlg::RS256, T0).is_none());
    assert!(active_key(&keys, SigningAlg::ES256, T0 - 1).is_none());
    let kids = |now| {
        published(&keys, now)
            .iter()
            .map(|k| k.kid.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kids(T0), vec!["a", "b"]);
    assert_eq!(kids(T0 + 50), vec!["a", "b", "c"]);
    a.retire_at = Some(T0 + 10);
    a.expire_at = Some(T0 + 20);
    assert!(!a.is_active(T0 + 10) && a.is_published(T0 + 19) && !a.is_published(T0 + 20));
}

#[test]
fn the_policy_follows_the_section() {
    let section = crate::config::Config::from_yaml_with_env(
        "issuer:\n  url: \"http://127.0.0.1:8080\"\n  key_rotation: 7d\n  id_token_ttl: 2h\n",
        std::path::Path::new("gateway.yaml"),
        &|_| None,
    )
    .expect("valid")
    .issuer
    .expect("section");
    let p = RotationPolicy::from_section(&section, std::time::Duration::from_secs(300));
    assert_eq!(
        p,
        RotationPolicy {
            rotation: 7 * DAY,
            jwks_max_age: 300,
            max_token_ttl: 7_200
        }
    );
}
