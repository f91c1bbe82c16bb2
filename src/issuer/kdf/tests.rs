use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::issuer::throttle::ClientIp;

fn source(last: u8) -> Source {
    Source::of(Some(ClientIp(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))))
}

#[tokio::test]
async fn hashes_verify_only_their_secret() {
    let h = hash_secret("s3cret".into()).await.unwrap();
    assert!(h.starts_with("$argon2id$"));
    assert!(verify_secret("s3cret".into(), h.clone()).await);
    assert!(!verify_secret("other".into(), h.clone()).await);
    assert!(!verify_secret("x".into(), "not a hash".into()).await);
    let budget = Budget::new("test", LOGIN_LIMITS);
    let permit = budget.admit(&source(1)).await.unwrap();
    assert!(permit.verify("s3cret".into(), h.clone()).await);
    assert!(!permit.verify("other".into(), h).await);
}

#[tokio::test]
async fn one_source_holds_its_share_and_no_more() {
    let budget = Budget::new("test", LOGIN_LIMITS);
    let first = budget.admit(&source(1)).await.unwrap();
    // Another request from the same source is refused at once, though a slot
    // is free; another source gets that slot.
    assert_eq!(
        budget.admit(&source(1)).await.err(),
        Some(Refusal::SourceBusy)
    );
    let other = budget.admit(&source(2)).await.unwrap();
    drop(first);
    let again = budget.admit(&source(1)).await.unwrap();
    drop((again, other));
    assert_eq!(budget.sources(), 0, "places are given back");
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_a_slot_is_bounded() {
    let limits = Limits {
        slots: 1,
        per_source: 4,
        max_waiting: 1,
    };
    let budget = Budget::new("test", limits);
    let held = budget.admit(&source(1)).await.unwrap();
    let started = tokio::time::Instant::now();
    // One waiter: refused when the bound passes (paused time moves on).
    let waited = budget.admit(&source(2)).await;
    assert_eq!(waited.err(), Some(Refusal::Busy));
    assert_eq!(started.elapsed(), MAX_WAIT);
    // With one waiting, the queue is full: the next is refused at once.
    let queued = async { budget.admit(&source(3)).await.map(|_| ()) };
    let refused = async {
        tokio::task::yield_now().await;
        let at = tokio::time::Instant::now();
        let r = budget.admit(&source(4)).await.map(|_| ());
        (r, at.elapsed())
    };
    let (queued, (refused, took)) = tokio::join!(queued, refused);
    assert_eq!(refused, Err(Refusal::Busy));
    assert_eq!(took, Duration::ZERO);
    assert_eq!(queued, Err(Refusal::Busy));
    // A waiter is served as soon as the slot is free.
    let budget = &budget;
    let waiter = async move { budget.admit(&source(5)).await.map(|_| ()) };
    let release = async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    };
    let (served, ()) = tokio::join!(waiter, release);
    assert_eq!(served, Ok(()));
    assert_eq!(budget.sources(), 0);
}

#[tokio::test(start_paused = true)]
async fn imitation_replays_a_real_duration_and_computes_nothing() {
    let budget = Budget::new("test", LOGIN_LIMITS);
    budget.record(Duration::from_millis(42));
    let permit = budget.admit(&source(1)).await.unwrap();
    let started = tokio::time::Instant::now();
    permit.imitate().await;
    assert_eq!(started.elapsed(), Duration::from_millis(42));
    // The decoy is only made when there is nothing to replay.
    assert!(budget.decoy.get().is_none());
}

#[tokio::test]
async fn preparing_gives_imitation_a_duration_to_replay() {
    let budget = Budget::new("test", LOGIN_LIMITS);
    assert!(budget.sample().is_none());
    budget.prepare().await;
    let sample = budget.sample().unwrap();
    assert!(sample > Duration::from_millis(1), "{sample:?}");
    assert!(
        budget
            .decoy
            .get()
            .is_some_and(|h| h.starts_with("$argon2id$"))
    );
}
