use super::*;

const NOW: i64 = 1_900_000_000;
const TTL: i64 = 900;

fn revoked(kind: Kind, value: &str, issued_before: i64) -> Revocation {
    Revocation {
        kind,
        value: value.to_owned(),
        issued_before,
        until: issued_before + TTL,
    }
}

/// A token of `sub` issued at `iat`, in family `family`, to client `web`.
fn token(set: &RevocationSet, jti: &str, family: Option<&str>, sub: &str, iat: i64) -> Revocable {
    set.revocable(jti, family, sub, Some("web"), iat)
}

#[test]
fn each_kind_refuses_what_it_names() {
    let set = RevocationSet::new(100);
    let t = |jti, family, sub, iat| token(&set, jti, family, sub, iat);
    let (a, b, c, d) = (
        t("j1", Some("f1"), "u1", NOW),
        t("j2", Some("f2"), "u2", NOW),
        t("j3", None, "u3", NOW),
        t("j4", Some("f4"), "u4", NOW),
    );
    assert!([&a, &b, &c, &d].iter().all(|x| set.admits(x)));
    set.insert(&[revoked(Kind::Jti, "j1", NOW)], NOW);
    set.insert(&[revoked(Kind::Family, "f2", NOW - 50)], NOW);
    set.insert(&[revoked(Kind::Subject, "u3", NOW)], NOW);
    assert!(!set.admits(&a), "by jti");
    assert!(!set.admits(&b), "by family, whatever its iat");
    assert!(!set.admits(&c), "by subject, issued at the cutoff");
    assert!(set.admits(&d));
    // A value of one kind never matches another kind.
    set.insert(
        &[
            revoked(Kind::Jti, "u4", NOW),
            revoked(Kind::Subject, "f4", NOW),
        ],
        NOW,
    );
    assert!(set.admits(&t("j4", Some("f4"), "u4", NOW)));
}

#[test]
fn subject_and_client_cutoffs_spare_later_tokens() {
    let set = RevocationSet::new(100);
    set.insert(
        &[
            revoked(Kind::Subject, "u1", NOW),
            revoked(Kind::Client, "gone", NOW),
        ],
        NOW,
    );
    assert!(!set.admits(&token(&set, "a", None, "u1", NOW - 1)));
    assert!(set.admits(&token(&set, "b", None, "u1", NOW + 1)));
    let of_client = |iat| set.revocable("c", None, "u9", Some("gone"), iat);
    assert!(!set.admits(&of_client(NOW)));
    assert!(set.admits(&of_client(NOW + 1)));
    // A later cutoff for the same user widens the entry.
    set.insert(&[revoked(Kind::Subject, "u1", NOW + 10)], NOW + 10);
    assert!(!set.admits(&token(&set, "d", None, "u1", NOW + 1)));
}

#[test]
fn the_generation_changes_only_when_more_is_refused() {
    let set = RevocationSet::new(100);
    let g0 = set.generation();
    let clean = token(&set, "j", Some("f"), "u", NOW);
    assert!(set.admits(&clean));
    assert_eq!(clean.checked.load(Ordering::Relaxed), g0, "remembered");
    assert!(set.insert(&[revoked(Kind::Jti, "other", NOW)], NOW));
    let g1 = set.generation();
    assert_ne!(g1, g0);
    // The same revocation again, or one about expired tokens only, changes nothing.
    assert!(!set.insert(&[revoked(Kind::Jti, "other", NOW)], NOW));
    assert!(!set.insert(&[revoked(Kind::Jti, "old", NOW - 2 * TTL)], NOW));
    assert_eq!(set.generation(), g1);
    assert!(set.admits(&clean), "checked again at the new generation");
    assert_eq!(clean.checked.load(Ordering::Relaxed), g1);
    // Pruning refuses nothing more: same generation.
    assert_eq!(set.prune(NOW + TTL + 1), 1);
    assert_eq!(set.generation(), g1);
}

#[test]
fn a_token_found_clean_is_refused_after_a_change() {
    let set = RevocationSet::new(100);
    let t = token(&set, "j", Some("f"), "u", NOW);
    assert!(set.admits(&t));
    set.insert(&[revoked(Kind::Family, "f", NOW)], NOW);
    assert!(!set.admits(&t));
    assert!(!set.admits(&t), "a refusal is not remembered as clean");
}

#[test]
fn entries_leave_once_their_tokens_expired_and_the_leeway_passed() {
    let set = RevocationSet::new(100);
    set.cover_leeway(Duration::from_secs(30));
    set.insert(&[revoked(Kind::Jti, "j", NOW)], NOW);
    let t = token(&set, "j", None, "u", NOW);
    assert_eq!(set.prune(NOW + TTL + 29), 0, "still inside the leeway");
    assert!(!set.admits(&t));
    assert_eq!(set.prune(NOW + TTL + 30), 1);
    assert!(set.is_empty());
    // The leeway only grows.
    set.cover_leeway(Duration::from_secs(5));
    set.insert(&[revoked(Kind::Jti, "k", NOW)], NOW);
    assert_eq!(set.prune(NOW + TTL + 29), 0);
}

#[test]
fn beyond_the_cap_the_set_fails_closed() {
    let set = RevocationSet::new(32);
    // 40 families revoked one second apart; the oldest end first.
    let all: Vec<Revocation> = (0..40)
        .map(|n| revoked(Kind::Family, &format!("f{n}"), NOW + n))
        .collect();
    for r in &all {
        set.insert(std::slice::from_ref(r), NOW + 40);
    }
    assert!(set.len() <= 32, "{}", set.len());
    assert!(set.evicted() >= 8);
    let floor = set.floor().expect("the cap bit");
    // Every dropped family's tokens are still refused: they were issued at
    // or before the floor.
    for n in 0..40 {
        let t = token(&set, &format!("j{n}"), Some(&format!("f{n}")), "u", NOW + n);
        assert!(!set.admits(&t), "f{n}");
    }
    // So is any other token issued at or before the floor (the price of the
    // cap), and none issued after it.
    assert!(!set.admits(&token(&set, "x", Some("fx"), "u", floor)));
    assert!(set.admits(&token(&set, "y", Some("fy"), "u", floor + 1)));
    // What the floor covers is not added again.
    assert!(!set.insert(&[revoked(Kind::Jti, "late", floor)], NOW + 40));
}

#[test]
fn the_cap_drops_what_expired_before_raising_the_floor() {
    let set = RevocationSet::new(4);
    let old: Vec<Revocation> = (0..4)
        .map(|n| revoked(Kind::Jti, &format!("old{n}"), NOW))
        .collect();
    set.insert(&old, NOW);
    let later = NOW + TTL + 1;
    set.insert(&[revoked(Kind::Jti, "new", later)], later);
    assert_eq!(set.len(), 1);
    assert_eq!(set.floor(), None);
    assert_eq!(set.evicted(), 0);
}

#[test]
fn a_set_filled_at_once_keeps_the_newest() {
    let set = RevocationSet::new(1_000);
    let many: Vec<Revocation> = (0..5_000)
        .map(|n| revoked(Kind::Jti, &format!("j{n}"), NOW + n))
        .collect();
    set.insert(&many, NOW);
    assert!(set.len() <= 1_000);
    let floor = set.floor().expect("the cap bit");
    assert!((NOW + 4_000..NOW + 5_000).contains(&floor), "{floor}");
    assert!(!set.admits(&token(&set, "j4999", None, "u", NOW + 4_999)));
    assert!(!set.admits(&token(&set, "j0", None, "u", NOW)));
}
