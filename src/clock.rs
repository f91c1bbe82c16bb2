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

/// 10000-01-01T00:00:00Z in seconds since the epoch: the first instant an
/// HTTP date (four-digit year) cannot say.
const LAST_HTTP_DATE: u64 = 253_402_300_800;

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
        let fresh = format_http_date(now);
        cell.set((secs, fresh));
        fresh
    })
}

/// `at` as an HTTP date; `None` before 1970 or after 9999.
fn format_http_date(at: std::time::SystemTime) -> Option<[u8; HTTP_DATE_LEN]> {
    let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    // httpdate formats years up to 9999 only (and panics past them).
    if secs >= LAST_HTTP_DATE {
        return None;
    }
    let formatted = httpdate::HttpDate::from(at).to_string();
    <[u8; HTTP_DATE_LEN]>::try_from(formatted.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn http_dates_are_formatted_within_the_four_digit_years_only() {
        let date = |secs: u64| format_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(date(0).unwrap(), *b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            date(784_111_777).unwrap(),
            *b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            date(LAST_HTTP_DATE - 1).unwrap(),
            *b"Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(date(LAST_HTTP_DATE), None);
        assert_eq!(format_http_date(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert!(http_date().is_some());
    }
}
