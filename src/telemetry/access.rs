//! The access log: one structured line per request.
//!
//! With JSON logs the line is formatted here, straight into the batched writer,
//! in the same shape `tracing-subscriber` gives every other event; that keeps the
//! per-request cost to a few hundred nanoseconds. With any other subscriber (text
//! logs, tests) the line is an ordinary `tracing` event. Either way it obeys the
//! `RUST_LOG` filter for the `portcullis::access` target, and it never contains a
//! token, a query string or a header value.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;

use tracing_subscriber::fmt::MakeWriter;

use super::events::ACCESS_LOG;
use super::writer::BatchWriter;

/// What one access-log line says.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub sub: Option<&'a str>,
    pub org: Option<&'a str>,
    pub reason: Option<&'static str>,
    pub request_id: &'a str,
}

/// Where access-log lines go.
#[derive(Clone, Default)]
pub struct AccessLog {
    json: Option<BatchWriter<std::io::Stdout>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("json", &self.json.is_some())
            .finish()
    }
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl AccessLog {
    /// Lines as `tracing` events, for whatever subscriber is installed.
    pub fn tracing() -> AccessLog {
        AccessLog { json: None }
    }

    /// JSON lines written directly to `writer`.
    pub fn json(writer: BatchWriter<std::io::Stdout>) -> AccessLog {
        AccessLog { json: Some(writer) }
    }

    /// Records one request.
    pub fn record(&self, e: &AccessEntry<'_>) {
        if !tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO) {
            return;
        }
        let Some(writer) = &self.json else {
            tracing::info!(
                target: ACCESS_LOG,
                method = e.method,
                path = e.path,
                route = e.route,
                status = e.status,
                latency_ms = e.latency_ms,
                sub = e.sub,
                org = e.org,
                reason = e.reason,
                request_id = e.request_id,
                "Request"
            );
            return;
        };
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            format_json(&mut line, e, crate::clock::wall_micros());
            let _ = writer.make_writer().write_all(line.as_bytes());
        });
    }
}

/// Formats `e` as one JSON line (with its newline).
pub fn format_json(out: &mut String, e: &AccessEntry<'_>, (secs, micros): (i64, u32)) {
    out.push_str("{\"timestamp\":\"");
    rfc3339(out, secs, micros);
    out.push_str("\",\"level\":\"INFO\",\"message\":\"Request\"");
    field(out, "method", e.method);
    field(out, "path", e.path);
    field(out, "route", e.route);
    let _ = write!(
        out,
        ",\"status\":{},\"latency_ms\":{:.3}",
        e.status, e.latency_ms
    );
    if let Some(s) = e.sub {
        field(out, "sub", s);
    }
    if let Some(o) = e.org {
        field(out, "org", o);
    }
    if let Some(r) = e.reason {
        field(out, "reason", r);
    }
    field(out, "request_id", e.request_id);
    out.push_str(",\"target\":\"");
    out.push_str(ACCESS_LOG);
    out.push_str("\"}\n");
}

fn field(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    escape(out, value);
    out.push('"');
}

/// JSON string escaping (RFC 8259 §7).
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `secs` and `micros` since the Unix epoch as RFC 3339 text,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), from days-since-epoch arithmetic. Also
/// the timestamp format of webhook events.
pub fn rfc3339(out: &mut String, secs: i64, micros: u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_in_the_subscriber_shape() {
        let mut out = String::new();
        let e = AccessEntry {
            method: "GET",
            path: "/a \"b\"\n",
            route: "/*",
            status: 403,
            latency_ms: 1.23456,
            sub: Some("user-1"),
            org: None,
            reason: Some("insufficient_scope"),
            request_id: "abc",
        };
        format_json(&mut out, &e, (1_764_164_751, 220_209));
        assert!(out.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("valid JSON");
        assert_eq!(v["timestamp"], "2025-11-26T13:45:51.220209Z");
        assert_eq!(v["message"], "Request");
        assert_eq!(v["path"], "/a \"b\"\n");
        assert_eq!(v["status"], 403);
        assert_eq!(v["latency_ms"], 1.235);
        assert_eq!(v["sub"], "user-1");
        assert!(v.get("org").is_none());
        assert_eq!(v["reason"], "insufficient_scope");
        assert_eq!(v["target"], "portcullis::access");
    }

    #[test]
    fn dates_across_eras() {
        let mut out = String::new();
        rfc3339(&mut out, 0, 0);
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
        out.clear();
        rfc3339(&mut out, 951_782_400, 5); // 2000-02-29
        assert_eq!(out, "2000-02-29T00:00:00.000005Z");
        out.clear();
        rfc3339(&mut out, 4_102_444_799, 999_999);
        assert_eq!(out, "2099-12-31T23:59:59.999999Z");
    }
}
