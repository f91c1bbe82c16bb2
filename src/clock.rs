//! The time source for token validity: the system clock, or a manual one in tests.
//! Timers and rate limits use `tokio::time` instead, so tests can pause them.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, as token claims count them.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in whole seconds since the epoch.
    fn now_unix(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
    fn now_unix(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }

    /// Moves the clock by `secs` (which may be negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The wall-clock time as seconds and microseconds since the epoch, for log
/// timestamps (token validity uses [`Clock`] instead).
#[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
pub fn wall_micros() -> (i64, u32) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() as i64, d.subsec_micros()))
        .unwrap_or((0, 0))
}

/// Length of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const HTTP_DATE_LEN: usize = 29;

thread_local! {
    /// This thread's last HTTP date and the second it is of.
    static HTTP_DATE: std::cell::Cell<(u64, Option<[u8; HTTP_DATE_LEN]>)> =
        const { std::cell::Cell::new((u64::MAX, None)) };
}

/// The current time as an HTTP date (RFC 9110 §5.6.7), for a response's
/// `Date`: formatted once a second per thread, not once per response. `None`
/// for a clock set before 1970 or after 9999.
#[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
pub fn http_date() -> Option<[u8; HTTP_DATE_LEN]> {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    HTTP_DATE.with(|cell| {
        let (at, date) = cell.get();
        if at == secs {
            return date;
        }
        let formatted = httpdate::HttpDate::from(now).to_string();
        let fresh = <[u8; HTTP_DATE_LEN]>::try_from(formatted.as_bytes()).ok();
        cell.set((secs, fresh));
        fresh
    })
}
