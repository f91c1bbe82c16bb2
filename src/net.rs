//! What the gateway knows about the connection a request came on, and who the
//! client is when trusted proxies stand in front. Every request carries an
//! `Arc<ConnInfo>` extension (set by the server); the proxy and the issuer read
//! the client's address from it. Pure: no I/O.

pub mod head;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use rustls::pki_types::CertificateDer;

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address (the client, or a proxy in front of it).
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate chain the TLS handshake verified, leaf first.
    pub client_certs: Option<Arc<[CertificateDer<'static>]>>,
    /// The WebSocket tunnels its upgraded requests became, run by the
    /// connection's task after the HTTP exchange.
    pub tunnels: crate::proxy::upgrade::Tunnels,
    /// This hop's forwarding header values, made once per connection.
    pub hop: crate::proxy::headers::HopCache,
}

impl ConnInfo {
    /// A connection from `peer`.
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        client_certs: Option<Arc<[CertificateDer<'static>]>>,
    ) -> ConnInfo {
        ConnInfo {
            peer,
            tls,
            client_certs,
            tunnels: Default::default(),
            hop: Default::default(),
        }
    }

    /// A cleartext connection from `peer` (tests, and requests without one).
    pub fn plain(peer: SocketAddr) -> ConnInfo {
        ConnInfo::new(peer, false, None)
    }
}

/// Whether `ip` is one of `trusted` (`server.trusted_proxies`).
pub fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer, unless the peer is a trusted proxy; then
/// the right-most address of `X-Forwarded-For` that is not itself trusted (the
/// first hop no trusted proxy vouches for), or the left-most when all are.
/// An address a client put further left is never believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return canonical(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(**ip, trusted))
        .or_else(|| hops.first())
        .copied()
        .unwrap_or_else(|| canonical(peer))
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as IPv4, so that a dual-stack
/// listener matches IPv4 ranges.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("value"));
        h
    }

    #[test]
    fn the_client_is_the_first_hop_no_trusted_proxy_vouches_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        // From a stranger, its own claims count for nothing.
        assert_eq!(client_ip(stranger, &xff("1.2.3.4"), &trusted), stranger);
        // Through a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            client_ip(proxy, &xff("1.2.3.4, 198.51.100.7, 10.0.0.9"), &trusted),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().expect("ip");
        assert!(is_trusted(mapped, &trusted));
    }
}

/// A client's request body as the server hands it to the gateway: hyper's,
/// or none at all — a request the gateway's own HTTP/1.1 server read
/// (`server::h1`), which takes only requests without a body.
#[derive(Debug)]
pub enum Inbound {
    /// No body: the request had neither `Content-Length` nor
    /// `Transfer-Encoding`.
    Empty,
    /// The body as hyper's server reads it.
    Hyper(hyper::body::Incoming),
}

impl http_body::Body for Inbound {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Inbound::Empty => std::task::Poll::Ready(None),
            Inbound::Hyper(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Empty => true,
            Inbound::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Inbound::Empty => http_body::SizeHint::with_exact(0),
            Inbound::Hyper(body) => body.size_hint(),
        }
    }
}
