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
    /// Until the response headers were ready; logged as `latency_ms` with three
    /// decimals.
    pub latency_us: u64,
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

/// The timestamp text up to the whole second, kept while that second lasts:
/// the calendar arithmetic runs once a second, not once a line.
struct Second {
    secs: i64,
    text: String,
}

thread_local! {
    static LINE: RefCell<(String, Second)> = RefCell::new((
        String::with_capacity(512),
        Second { secs: i64::MIN, text: String::with_capacity(24) },
    ));
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
                latency_ms = e.latency_us as f64 / 1000.0,
                sub = e.sub,
                org = e.org,
                reason = e.reason,
                request_id = e.request_id,
                "Request"
            );
            return;
        };
        LINE.with(|cell| {
            let Ok(mut cell) = cell.try_borrow_mut() else {
                return;
            };
            let (line, second) = &mut *cell;
            let (secs, micros) = crate::clock::wall_micros();
            if second.secs != secs {
                second.text.clear();
                rfc3339_seconds(&mut second.text, secs);
                second.secs = secs;
            }
            line.clear();
            format_json(line, e, &second.text, micros);
            let _ = writer.make_writer().write_all(line.as_bytes());
        });
    }
}

/// Formats `e` as one JSON line (with its newline). `second` is the timestamp
/// up to the whole second ([`rfc3339_seconds`]), `micros` the rest.
pub fn format_json(out: &mut String, e: &AccessEntry<'_>, second: &str, micros: u32) {
    out.push_str("{\"timestamp\":\"");
    out.push_str(second);
    push_fraction(out, micros);
    out.push_str("\",\"level\":\"INFO\",\"message\":\"Request\"");
    field(out, ",\"method\":\"", e.method);
    field(out, ",\"path\":\"", e.path);
    field(out, ",\"route\":\"", e.route);
    let mut digits = itoa::Buffer::new();
    out.push_str(",\"status\":");
    out.push_str(digits.format(e.status));
    out.push_str(",\"latency_ms\":");
    out.push_str(digits.format(e.latency_us / 1000));
    out.push('.');
    push_padded(out, e.latency_us % 1000, 3);
    if let Some(s) = e.sub {
        field(out, ",\"sub\":\"", s);
    }
    if let Some(o) = e.org {
        field(out, ",\"org\":\"", o);
    }
    if let Some(r) = e.reason {
        field(out, ",\"reason\":\"", r);
    }
    field(out, ",\"request_id\":\"", e.request_id);
    out.push_str(",\"target\":\"");
    out.push_str(ACCESS_LOG);
    out.push_str("\"}\n");
}

/// Appends `,"key":"value"`; `opening` is `,"key":"`, written whole.
fn field(out: &mut String, opening: &str, value: &str) {
    out.push_str(opening);
    escape(out, value);
    out.push('"');
}

/// JSON string escaping (RFC 8259 §7): runs of bytes that need none are
/// copied whole.
fn escape(out: &mut String, s: &str) {
    // Nearly every field needs nothing: one branch-free pass (the compiler
    // vectorises it) decides, and the text is copied whole.
    let special = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !special {
        out.push_str(s);
        return;
    }
    let mut clean = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(s.get(clean..i).unwrap_or_default());
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        clean = i + 1;
    }
    out.push_str(s.get(clean..).unwrap_or_default());
}

/// Appends `n` in decimal, zero-padded to `width` digits (at most 6).
fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 6];
    let width = width.min(buf.len());
    for d in buf[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &d in &buf[..width] {
        out.push(char::from(d));
    }
}

/// `.ffffffZ`: the fraction of a second and the zone.
fn push_fraction(out: &mut String, micros: u32) {
    out.push('.');
    push_padded(out, u64::from(micros.min(999_999)), 6);
    out.push('Z');
}

/// Appends `secs` and `micros` since the Unix epoch as RFC 3339 text,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC). Also the timestamp format of webhook
/// events.
pub fn rfc3339(out: &mut String, secs: i64, micros: u32) {
    rfc3339_seconds(out, secs);
    push_fraction(out, micros);
}

/// Appends `YYYY-MM-DDTHH:MM:SS` for `secs` since the Unix epoch (UTC), from
/// days-since-epoch arithmetic.
pub fn rfc3339_seconds(out: &mut String, secs: i64) {
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
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
            path: "/a \"b\"\n\u{1}é\\",
            route: "/*",
            status: 403,
            latency_us: 1235,
            sub: Some("user-1"),
            org: None,
            reason: Some("insufficient_scope"),
            request_id: "abc",
        };
        let mut second = String::new();
        rfc3339_seconds(&mut second, 1_764_164_751);
        format_json(&mut out, &e, &second, 220_209);
        assert!(out.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("valid JSON");
        assert_eq!(v["timestamp"], "2025-11-26T13:45:51.220209Z");
        assert_eq!(v["message"], "Request");
        assert_eq!(v["path"], "/a \"b\"\n\u{1}é\\");
        assert_eq!(v["status"], 403);
        assert_eq!(v["latency_ms"], 1.235);
        assert_eq!(v["sub"], "user-1");
        assert!(v.get("org").is_none());
        assert_eq!(v["reason"], "insufficient_scope");
        assert_eq!(v["target"], "portcullis::access");
    }

    #[test]
    fn every_character_survives_escaping_and_latency_keeps_three_decimals() {
        let path: String = (0u32..0x80)
            .chain([0xe9, 0x2028, 0x1f600])
            .filter_map(char::from_u32)
            .collect();
        for (us, shown) in [(7, "0.007"), (0, "0.000"), (12_000_500, "12000.500")] {
            let mut out = String::new();
            let e = AccessEntry {
                method: "GET",
                path: &path,
                route: "-",
                status: 200,
                latency_us: us,
                sub: None,
                org: None,
                reason: None,
                request_id: "r",
            };
            format_json(&mut out, &e, "1970-01-01T00:00:00", 5);
            assert!(out.contains(&format!("\"latency_ms\":{shown},")), "{out}");
            let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("valid JSON");
            assert_eq!(v["path"], path.as_str());
            assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000005Z");
        }
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
