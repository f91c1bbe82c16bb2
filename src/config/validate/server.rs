//! Cross-checks of the listeners: `server` (TLS certificates and their SNI names,
//! client certificates, trusted proxies, limits), `admin` and `forward_auth`,
//! which must not share an address. Certificate files are only named here; they
//! are read when the listener is built, so that a reload can refuse a broken one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{Checker, resolve};
use crate::config::raw::{RawCert, RawClientAuth, RawLimits, RawServer};
use crate::config::{ClientAuth, Limits, ServerConfig, TlsCert};

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Checks the `server` section (absent: every default).
pub(super) fn server(c: &mut Checker<'_>, raw: Option<RawServer>, base: &Path) -> ServerConfig {
    let Some(s) = raw else {
        return ServerConfig {
            listen: DEFAULT_LISTEN,
            shutdown_grace: DEFAULT_GRACE,
            workers: None,
            tls: Vec::new(),
            client_ca: None,
            client_auth: ClientAuth::default(),
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
        };
    };
    if s.workers.is_some_and(|w| w == 0 || w > 1024) {
        c.error("server.workers", "`workers` must be between 1 and 1024");
    }
    let tls = s.tls.map(|t| certs(c, t.0, base)).unwrap_or_default();
    if s.client_ca.is_some() && tls.is_empty() {
        c.error(
            "server.client_ca",
            "`client_ca` needs `tls`: client certificates are asked for in the TLS handshake",
        );
    }
    let client_auth = match s.client_auth {
        None | Some(RawClientAuth::Optional) => ClientAuth::Optional,
        Some(RawClientAuth::Required) => ClientAuth::Required,
    };
    if s.client_auth.is_some() && s.client_ca.is_none() {
        c.error(
            "server.client_auth",
            "`client_auth` needs `client_ca`, the CA that client certificates must chain to",
        );
    }
    ServerConfig {
        listen: s.listen.map(|l| l.0).unwrap_or(DEFAULT_LISTEN),
        shutdown_grace: s.shutdown_grace.map(|d| d.0).unwrap_or(DEFAULT_GRACE),
        workers: s.workers,
        tls,
        client_ca: s.client_ca.map(|f| resolve(base, &f)),
        client_auth,
        trusted_proxies: s
            .trusted_proxies
            .map(|l| l.into_iter().map(|n| n.0).collect())
            .unwrap_or_default(),
        limits: s.limits.map(|l| limits(c, l)).unwrap_or_default(),
    }
}

/// The certificates: the first is the default, later ones need `server_names`,
/// and no name may be claimed twice.
fn certs(c: &mut Checker<'_>, raw: Vec<RawCert>, base: &Path) -> Vec<TlsCert> {
    if raw.is_empty() {
        c.error("server.tls", "`tls` must name at least one certificate");
    }
    let many = raw.len() > 1;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, cert) in raw.into_iter().enumerate() {
        let key = if many {
            format!("server.tls[{i}]")
        } else {
            "server.tls".to_owned()
        };
        let names = cert.server_names.unwrap_or_default();
        if many && i > 0 && names.is_empty() {
            c.error(
                &key,
                "every certificate after the first (the default) needs `server_names`",
            );
        }
        for name in &names {
            if !valid_server_name(name) {
                c.error(
                    &format!("{key}.server_names"),
                    format!("`{name}` is not a DNS name (a leading `*.` is allowed)"),
                );
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                c.error(
                    &format!("{key}.server_names"),
                    format!("`{name}` is served by two certificates"),
                );
            }
        }
        out.push(TlsCert {
            cert: resolve(base, &cert.cert),
            key: resolve(base, &cert.key),
            server_names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        });
    }
    out
}

/// A DNS name, or one with a single leading `*.` label.
fn valid_server_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn limits(c: &mut Checker<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let l = Limits {
        max_header_bytes: raw.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        header_read_timeout: raw
            .header_read_timeout
            .map(|t| t.0)
            .unwrap_or(d.header_read_timeout),
        idle_timeout: raw.idle_timeout.map(|t| t.0).unwrap_or(d.idle_timeout),
        body_timeout: raw.body_timeout.map(|t| t.0).unwrap_or(d.body_timeout),
        max_concurrent_streams: raw
            .max_concurrent_streams
            .unwrap_or(d.max_concurrent_streams),
        token_cache: raw.token_cache.map(|b| b.0.0).unwrap_or(d.token_cache),
    };
    if !(64 << 10..=1 << 30).contains(&l.token_cache) {
        c.error(
            "server.limits.token_cache",
            "`token_cache` must be between 64KiB and 1GiB",
        );
    }
    if !(1024..=1 << 20).contains(&l.max_header_bytes) {
        c.error(
            "server.limits.max_header_bytes",
            "`max_header_bytes` must be between 1024 and 1048576",
        );
    }
    if l.max_connections == 0 {
        c.error(
            "server.limits.max_connections",
            "`max_connections` must be at least 1",
        );
    }
    for (key, t) in [
        ("header_read_timeout", l.header_read_timeout),
        ("idle_timeout", l.idle_timeout),
        ("body_timeout", l.body_timeout),
    ] {
        if t.is_zero() {
            c.error(
                &format!("server.limits.{key}"),
                format!("`{key}` must be longer than zero"),
            );
        }
    }
    if l.max_concurrent_streams == 0 {
        c.error(
            "server.limits.max_concurrent_streams",
            "`max_concurrent_streams` must be at least 1",
        );
    }
    l
}

/// The listeners must not share an address (port 0 excepted: the system picks).
pub(super) fn distinct_listeners(c: &mut Checker<'_>, listeners: &[(&str, Option<SocketAddr>)]) {
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let Some(addr) = addr else { continue };
        if addr.port() == 0 {
            continue;
        }
        if listeners[..i]
            .iter()
            .any(|(_, other)| other.as_ref() == Some(addr))
        {
            c.error(key, format!("{addr} is already used by another listener"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_server_name;

    #[test]
    fn server_names() {
        for ok in ["api.example.test", "*.example.test", "localhost", "a-b.c"] {
            assert!(valid_server_name(ok), "{ok}");
        }
        for bad in ["", "*", "a.*.b", "-a.test", "a..b", "a_b.test", "*.", "a b"] {
            assert!(!valid_server_name(bad), "{bad}");
        }
    }
}
