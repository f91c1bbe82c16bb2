//! Header rewriting: hop-by-hop removal, what a client may not control (identity
//! headers, the forwarded family, method and URL overrides), identity headers set
//! from the token, `X-Forwarded-*` / `Forwarded` / `X-Real-IP`, and `X-Request-Id`.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use http::header::{CONNECTION, COOKIE, HOST, InvalidHeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::overrides::METHOD_OVERRIDES;
use crate::auth::Identity;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
static CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY_AUTHENTICATE: HeaderName = HeaderName::from_static("proxy-authenticate");
static PROXY_AUTHORIZATION: HeaderName = HeaderName::from_static("proxy-authorization");

/// The longest client-supplied request id that is kept.
const MAX_REQUEST_ID: usize = 128;

/// Which of the request fields the pipeline looks for are present, from one
/// pass over the names when the request arrives: the hop-by-hop fields,
/// `X-Request-Id` and `Origin`. Most requests carry none of them, and every
/// check that would look one up (framing, request id, CORS, upgrade,
/// hop-by-hop removal) asks this first instead of hashing the name again.
/// Valid for the header map it was taken of, as long as none of these
/// fields is added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen(u16);

/// `X-Request-Id`, in [`Seen`].
const SEEN_REQUEST_ID: u16 = 1 << 8;
/// `Origin`, in [`Seen`].
const SEEN_ORIGIN: u16 = 1 << 9;

impl Seen {
    /// One pass over the names of `headers`.
    pub fn of(headers: &HeaderMap) -> Seen {
        Seen(headers.keys().fold(0u16, |seen, name| {
            let name = name.as_str().as_bytes();
            seen | match name {
                b"x-request-id" => SEEN_REQUEST_ID,
                b"origin" => SEEN_ORIGIN,
                _ => u16::from(hop_bit(name)),
            }
        }))
    }

    /// The hop-by-hop fields present.
    fn hop(self) -> u8 {
        (self.0 & 0xff) as u8
    }

    /// Whether `Origin` is present.
    pub fn origin(self) -> bool {
        self.0 & SEEN_ORIGIN != 0
    }

    /// Whether `Upgrade` is present.
    pub fn upgrade(self) -> bool {
        self.hop() & HOP_UPGRADE != 0
    }

    /// Whether `X-Request-Id` is present.
    pub fn request_id(self) -> bool {
        self.0 & SEEN_REQUEST_ID != 0
    }

    /// Whether `Transfer-Encoding` is present.
    fn transfer_encoding(self) -> bool {
        self.hop() & HOP_TRANSFER_ENCODING != 0
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any the `Connection`
/// header names. `Trailer` is end-to-end and stays: hyper's HTTP/1.1 encoder
/// sends only the trailer fields it declares.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_seen_hop_by_hop(headers, Seen::of(headers));
}

/// [`strip_hop_by_hop`] of a map whose fields were `seen` already.
pub fn strip_seen_hop_by_hop(headers: &mut HeaderMap, seen: Seen) {
    // Which hop-by-hop fields are here at all: most requests carry none;
    // most responses carry only `Connection: keep-alive`, so the fields are
    // removed by what was seen, not looked up one by one.
    let present = seen.hop();
    if present == 0 {
        return;
    }
    if present & HOP_CONNECTION != 0 {
        // Fields the `Connection` header names go too. The options that name
        // no field in practice (`close`, `keep-alive`, `upgrade`, …) are
        // hop-by-hop already and are not looked up again.
        let mut named: SmallVec<[HeaderName; 2]> = SmallVec::new();
        for value in &headers.get_all(&CONNECTION) {
            for option in value.as_bytes().split(|&b| b == b',') {
                let option = option.trim_ascii();
                if option.is_empty() || is_hop_by_hop_option(option) {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(option) {
                    named.push(name);
                }
            }
        }
        for n in named {
            headers.remove(n);
        }
    }
    for (bit, name) in [
        (HOP_CONNECTION, &CONNECTION),
        (HOP_KEEP_ALIVE, &KEEP_ALIVE),
        (HOP_PROXY_CONNECTION, &PROXY_CONNECTION),
        (HOP_PROXY_AUTHENTICATE, &PROXY_AUTHENTICATE),
        (HOP_PROXY_AUTHORIZATION, &PROXY_AUTHORIZATION),
        (HOP_TRANSFER_ENCODING, &TRANSFER_ENCODING),
        (HOP_UPGRADE, &UPGRADE),
    ] {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    // `TE: trailers` is the one value allowed through (gRPC needs it).
    if present & HOP_TE != 0 {
        let te_trailers = headers
            .get(&TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        if !te_trailers {
            headers.remove(&TE);
        }
    }
}

/// A `Connection` option that names a hop-by-hop field (removed anyway, or
/// `TE` judged on its own), in any letter case: no header name to parse.
pub(crate) fn is_hop_by_hop_option(option: &[u8]) -> bool {
    // The longest hop-by-hop name is 19 bytes; longer options name none.
    let mut lower = [0u8; 19];
    let Some(lower) = lower.get_mut(..option.len()) else {
        return false;
    };
    lower.copy_from_slice(option);
    lower.make_ascii_lowercase();
    hop_bit(lower) != 0
}

const HOP_CONNECTION: u8 = 1;
const HOP_KEEP_ALIVE: u8 = 1 << 1;
const HOP_PROXY_CONNECTION: u8 = 1 << 2;
const HOP_PROXY_AUTHENTICATE: u8 = 1 << 3;
const HOP_PROXY_AUTHORIZATION: u8 = 1 << 4;
const HOP_TRANSFER_ENCODING: u8 = 1 << 5;
const HOP_UPGRADE: u8 = 1 << 6;
const HOP_TE: u8 = 1 << 7;

/// The bit of a hop-by-hop field (RFC 9110 §7.6.1 and the `Proxy-*` family)
/// by its lowercase name (as names are once parsed), 0 for an end-to-end one.
fn hop_bit(lower: &[u8]) -> u8 {
    match lower {
        b"connection" => HOP_CONNECTION,
        b"keep-alive" => HOP_KEEP_ALIVE,
        b"proxy-connection" => HOP_PROXY_CONNECTION,
        b"proxy-authenticate" => HOP_PROXY_AUTHENTICATE,
        b"proxy-authorization" => HOP_PROXY_AUTHORIZATION,
        b"transfer-encoding" => HOP_TRANSFER_ENCODING,
        b"upgrade" => HOP_UPGRADE,
        b"te" => HOP_TE,
        _ => 0,
    }
}

/// Which of the method-override headers a route lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrides {
    /// Every method and URL override header is removed.
    Strip,
    /// `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override` (in
    /// their `-` spelling) stay; URL overrides are removed all the same.
    KeepMethod,
}

/// What a header a client sent is, for [`strip_client_controlled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controlled {
    /// Not ours to police.
    No,
    /// Always removed: identity headers, URL overrides, and any member of a
    /// family spelt with `_`.
    Always,
    /// The forwarded family in its canonical spelling: kept from trusted proxies.
    Forwarded,
    /// A method override in its canonical spelling.
    MethodOverride,
}

/// Removes every header a client must not control on its way upstream, whatever
/// letter case it used (names are stored lower-case) and in any spelling with `_`
/// for `-` (`X_Auth_Subject`), which CGI, WSGI, Rack and PHP upstreams read as the
/// header itself:
/// - the identity headers (`identity`), so that only the gateway sets them;
/// - the forwarded family (`X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the
///   client-address and client-certificate headers that CDNs and proxies set),
///   which the gateway replaces with what it saw ([`set_forwarded`]) — unless
///   the peer is a trusted proxy (`trusted`), whose values are kept and extended;
/// - URL overrides (`X-Original-URL`, `X-Rewrite-URL`, …), which some frameworks
///   route by instead of the request line the policy judged;
/// - method overrides, unless the route keeps them ([`Overrides::KeepMethod`]).
pub fn strip_client_controlled(
    headers: &mut HeaderMap,
    identity: &[HeaderName],
    o: Overrides,
    trusted: bool,
) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for k in headers.keys() {
        match controlled(k.as_str(), identity) {
            Controlled::No => {}
            Controlled::MethodOverride if o == Overrides::KeepMethod => {}
            Controlled::Forwarded if trusted => {}
            Controlled::Always | Controlled::MethodOverride | Controlled::Forwarded => {
                doomed.push(k.clone())
            }
        }
    }
    for k in doomed {
        headers.remove(k);
    }
}

/// Classifies one lower-case header name.
fn controlled(name: &str, identity: &[HeaderName]) -> Controlled {
    let canonical: std::borrow::Cow<'_, str> = if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    };
    let underscored = matches!(canonical, std::borrow::Cow::Owned(_));
    let c = canonical.as_ref();
    if is_identity(c, identity) || is_url_override(c) {
        return Controlled::Always;
    }
    if is_forwarded_family(c) {
        // The `_` spelling is never kept: the upstream would see two values.
        return if underscored {
            Controlled::Always
        } else {
            Controlled::Forwarded
        };
    }
    if METHOD_OVERRIDES.iter().any(|n| n.as_str() == c) {
        // The `_` spelling is never honoured: the upstream would see two values.
        return if underscored {
            Controlled::Always
        } else {
            Controlled::MethodOverride
        };
    }
    // The gateway sends its own `X-Request-Id` (the client's, when sane, is
    // taken from the `-` spelling): any other spelling would be a second one.
    if underscored && c == "x-request-id" {
        return Controlled::Always;
    }
    Controlled::No
}

/// A header forward-auth refuses: proxy mode would remove it on its way
/// upstream, but in forward-auth mode the outer proxy forwards the client's
/// request as it came, so it would reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstrippable {
    /// An identity header: only the gateway's answer may set one.
    Identity,
    /// A URL override (`X-Original-URL`, `X-Rewrite-URL`; `X-Original-URI`
    /// only in the `_` spelling, its `-` spelling describes the request).
    UrlOverride,
    /// A method override on a route without `method_override`, or spelt with `_`.
    MethodOverride,
    /// A member of the forwarded family spelt with `_`: the upstream would read
    /// it as a second value of the header the outer proxy set.
    Underscored,
}

/// The first header of `headers` that [`strip_client_controlled`] would remove
/// whoever sent it (`o`: whether the route keeps method overrides), as
/// forward-auth must refuse it. The forwarded family in its `-` spelling is not
/// among them: the outer proxy sets those (`X-Original-URI` included, nginx's
/// description of the request).
pub fn unstrippable(
    headers: &HeaderMap,
    identity: &[HeaderName],
    o: Overrides,
) -> Option<Unstrippable> {
    headers.keys().find_map(|k| {
        let name = k.as_str();
        // nginx's description of the request, and a request id (forward-auth
        // sends none of its own upstream): the outer proxy's to judge.
        if name == "x-original-uri" || same_field(name, "x-request-id") {
            return None;
        }
        match controlled(name, identity) {
            Controlled::No | Controlled::Forwarded => None,
            Controlled::MethodOverride if o == Overrides::KeepMethod => None,
            Controlled::MethodOverride => Some(Unstrippable::MethodOverride),
            Controlled::Always => {
                let c = name.replace('_', "-");
                Some(if is_identity(&c, identity) {
                    Unstrippable::Identity
                } else if is_url_override(&c) {
                    Unstrippable::UrlOverride
                } else if METHOD_OVERRIDES.iter().any(|n| n.as_str() == c) {
                    Unstrippable::MethodOverride
                } else {
                    Unstrippable::Underscored
                })
            }
        }
    })
}

/// Whether `canonical` (lower-case, `-` for `_`) is one of the identity
/// headers in any spelling: a configured name with `_` (`X_Auth_User`) is the
/// same field to a CGI-style upstream as the client's `X-Auth-User`.
fn is_identity(canonical: &str, identity: &[HeaderName]) -> bool {
    identity.iter().any(|n| same_field(n.as_str(), canonical))
}

/// Whether a lower-case `name` is `canonical` (lower-case, with `-`) once each
/// `_` in it is read as `-`; without building the canonical spelling.
fn same_field(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| if a == b'_' { b == b'-' } else { a == b })
}

/// URL overrides: IIS, Symfony, Laminas and others route by these.
pub(crate) fn is_url_override(name: &str) -> bool {
    matches!(name, "x-original-url" | "x-original-uri" | "x-rewrite-url")
}

/// The forwarded family (canonical, lower-case): set by the gateway, or by
/// a trusted proxy, never by a client, nor named as an identity header.
pub(crate) fn is_forwarded_family(name: &str) -> bool {
    matches!(
        name,
        // What the gateway saw of the client and the request (set_forwarded).
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
            | "x-real-ip"
            // Others of the family that frameworks read for links and redirects,
            // or as the client's address (Spring, Rails, Express, Django, CDNs).
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-server"
            | "x-forwarded-ssl"
            | "x-forwarded-scheme"
            | "x-forwarded-uri"
            | "x-forwarded-method"
            | "x-original-forwarded-for"
            | "x-original-host"
            | "x-host"
            | "x-url-scheme"
            | "front-end-https"
            | "x-client-ip"
            | "client-ip"
            | "true-client-ip"
            | "x-cluster-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
            // Client certificates as a TLS terminator passes them on (RFC 9440,
            // Envoy, nginx, HAProxy conventions).
            | "client-cert"
            | "client-cert-chain"
            | "x-forwarded-client-cert"
            | "x-client-cert"
            | "x-ssl-client-cert"
            | "ssl-client-cert"
    )
}

/// Fields the gateway adds to an upstream request that are not in its header
/// map, and whose names the map does not hold either: the client's fields of
/// those names were removed ([`strip_client_controlled`], or by name). They
/// follow the map's fields: the proxy's own HTTP/1.1 client writes them
/// straight into the request head, and the map gets them ([`Added::apply`])
/// only on the way to hyper's client. Most are borrowed (names from the
/// configuration, values from the verified token's identity and the
/// connection), so adding one costs neither a hash nor a reference count.
#[derive(Debug, Default)]
pub struct Added<'a>(Vec<(&'a HeaderName, Cow<'a, HeaderValue>)>);

impl<'a> Added<'a> {
    /// Room for `n` fields.
    pub fn with_capacity(n: usize) -> Added<'a> {
        Added(Vec::with_capacity(n))
    }

    /// Adds a field whose name the request's map does not hold.
    pub fn push(&mut self, name: &'a HeaderName, value: Cow<'a, HeaderValue>) {
        self.0.push((name, value));
    }

    /// The fields, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(name, value)| (*name, value.as_ref()))
    }

    /// Moves the fields into `headers` (which holds none of their names).
    pub fn apply(self, headers: &mut HeaderMap) {
        let _ = headers.try_reserve(self.0.len());
        for (name, value) in self.0 {
            debug_assert!(!headers.contains_key(name), "{name} is in the map already");
            headers.append(name.clone(), value.into_owned());
        }
    }
}

/// Adds the identity headers of a verified identity. Every one of `names` was
/// removed from the request, whoever sent it ([`strip_client_controlled`]).
pub fn set_identity<'a>(added: &mut Added<'a>, names: &'a [HeaderName], identity: &'a Identity) {
    for (name, value) in names.iter().zip(&identity.headers) {
        if let Some(v) = value {
            added.push(name, Cow::Borrowed(v));
        }
    }
}

/// What the gateway saw of one hop, for [`set_forwarded`]: of this request
/// (`'a`), and of its connection (`'c`).
#[derive(Debug)]
pub struct Hop<'a, 'c> {
    /// The peer's address.
    pub peer: IpAddr,
    /// `http` or `https`: what the client spoke to the gateway.
    pub proto: &'static str,
    /// The HTTP/2 `:authority`, when there is one.
    pub authority: Option<&'a str>,
    /// The peer is one of `server.trusted_proxies`.
    pub trusted: bool,
    /// The client certificate chain the gateway's TLS handshake verified.
    pub client_certs: Option<&'a [rustls::pki_types::CertificateDer<'static>]>,
    /// The connection's values made so far.
    pub cache: &'c HopCache,
}

/// What [`set_forwarded`] writes for one connection that no trusted proxy
/// precedes, made on its first request and shared by the rest: the peer's
/// address (`X-Forwarded-For`, `X-Real-IP`) and the `Forwarded` element for
/// the first `Host` seen (later requests with another `Host` get their own).
#[derive(Debug, Clone, Default)]
pub struct HopCache {
    peer: OnceLock<HeaderValue>,
    element: OnceLock<(Option<HeaderValue>, HeaderValue)>,
}

/// Sets what the gateway saw of the request, after
/// [`strip_client_controlled`] removed what an untrusted client sent:
/// `X-Forwarded-For` (appended to a trusted proxy's list, else just the peer),
/// `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host` (a trusted proxy's
/// values are kept), `Forwarded` (RFC 7239; this hop appended to a trusted
/// proxy's), and `Client-Cert` / `Client-Cert-Chain` (RFC 9440) when the
/// gateway's own TLS handshake verified a client certificate. Behind a trusted
/// proxy the fields are set in `headers`, whose values they replace or
/// extend; otherwise none of them is left in `headers` and they go to `added`.
pub fn set_forwarded<'c>(headers: &mut HeaderMap, added: &mut Added<'c>, hop: &Hop<'_, 'c>) {
    let host = headers
        .get(&HOST)
        .cloned()
        .or_else(|| hop.authority.and_then(|a| HeaderValue::from_str(a).ok()));
    let cache: &'c HopCache = hop.cache;
    let ip = cache
        .peer
        .get_or_init(|| HeaderValue::from_str(&hop.peer.to_string()).unwrap_or(UNKNOWN_PEER));
    if hop.trusted {
        // Appended to what the trusted proxy sent: made for each request.
        let text = ip.to_str().unwrap_or_default();
        let element = forwarded_element(text, hop, host.as_ref());
        let xff = match joined(headers, &X_FORWARDED_FOR) {
            Some(prev) => format!("{prev}, {text}"),
            None => text.to_owned(),
        };
        let forwarded = match joined(headers, &FORWARDED) {
            Some(prev) => format!("{prev}, {element}"),
            None => element,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            headers.insert(FORWARDED.clone(), v);
        }
        // A trusted proxy's values are kept.
        if !headers.contains_key(&X_REAL_IP) {
            headers.insert(X_REAL_IP.clone(), ip.clone());
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(hop.proto),
            );
        }
        if let Some(h) = host.filter(|_| !headers.contains_key(&X_FORWARDED_HOST)) {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
    } else {
        let make = || {
            let text = forwarded_element(ip.to_str().unwrap_or_default(), hop, host.as_ref());
            HeaderValue::from_str(&text).ok()
        };
        let (first_host, first) = cache
            .element
            .get_or_init(|| (host.clone(), make().unwrap_or(UNKNOWN_PEER)));
        let element = if *first_host == host {
            Some(Cow::Borrowed(first))
        } else {
            make().map(Cow::Owned)
        };
        added.push(&X_FORWARDED_FOR, Cow::Borrowed(ip));
        if let Some(v) = element {
            added.push(&FORWARDED, v);
        }
        added.push(&X_REAL_IP, Cow::Borrowed(ip));
        added.push(
            &X_FORWARDED_PROTO,
            Cow::Owned(HeaderValue::from_static(hop.proto)),
        );
        if let Some(h) = host {
            added.push(&X_FORWARDED_HOST, Cow::Owned(h));
        }
    }
    if let Some(chain) = hop.client_certs.filter(|c| !c.is_empty()) {
        set_client_cert(headers, chain);
    }
}

/// Never sent: a formatted address is always a valid header value.
const UNKNOWN_PEER: HeaderValue = HeaderValue::from_static("unknown");

/// This hop's `Forwarded` element (RFC 7239): `for`, `host` (a quoted-string:
/// a host with a port has a `:`, which a token cannot hold), `proto`.
fn forwarded_element(ip: &str, hop: &Hop<'_, '_>, host: Option<&HeaderValue>) -> String {
    let mut element = String::with_capacity(48 + ip.len());
    element.push_str("for=");
    match hop.peer {
        IpAddr::V4(_) => element.push_str(ip),
        IpAddr::V6(_) => {
            element.push_str("\"[");
            element.push_str(ip);
            element.push_str("]\"");
        }
    }
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        if !h.contains(['"', '\\']) {
            element.push_str(";host=\"");
            element.push_str(h);
            element.push('"');
        }
    }
    element.push_str(";proto=");
    element.push_str(hop.proto);
    element
}

/// Every line of a list header, joined (RFC 9110 §5.3); `None` when absent.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `Client-Cert: :<base64 DER>:` and `Client-Cert-Chain` (RFC 9440 byte
/// sequences) for a chain the gateway verified itself.
fn set_client_cert(headers: &mut HeaderMap, chain: &[rustls::pki_types::CertificateDer<'static>]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let item = |c: &rustls::pki_types::CertificateDer<'_>| format!(":{}:", b64.encode(c.as_ref()));
    if let Some(leaf) = chain.first() {
        if let Ok(v) = HeaderValue::from_str(&item(leaf)) {
            headers.insert(CLIENT_CERT.clone(), v);
        }
    }
    let rest: Vec<String> = chain.iter().skip(1).map(item).collect();
    match HeaderValue::from_str(&rest.join(", ")) {
        Ok(v) if !rest.is_empty() => {
            headers.insert(CLIENT_CERT_CHAIN.clone(), v);
        }
        _ => {
            headers.remove(&CLIENT_CERT_CHAIN);
        }
    }
}

/// Why the request's `Host` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Host header is missing, repeated, invalid or contradicts the authority")]
pub struct BadHost;

/// Checks `Host` as RFC 9112 §3.2 and RFC 9113 §8.3.1 require, so that the
/// gateway and the upstream agree on the virtual host: exactly one in HTTP/1.1
/// (at most one in HTTP/1.0), a valid `host[:port]` without userinfo, and in
/// HTTP/2 the same as `:authority` when both are sent. An HTTP/2 request
/// without `Host` gets one from `:authority`, so that the upstream sees the
/// client's host whatever protocol it spoke (HTTP/1.1 passes its `Host` on).
pub fn check_host(
    headers: &mut HeaderMap,
    version: http::Version,
    authority: Option<&http::uri::Authority>,
) -> Result<(), BadHost> {
    let mut hosts = headers.get_all(&HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadHost);
    }
    // The request target's authority (HTTP/2 `:authority`, an HTTP/1.1
    // absolute-form target) passes the same test as `Host`: it becomes the
    // upstream's `Host` when the client sent none.
    if authority.is_some_and(|a| !valid_authority(a.as_str().as_bytes())) {
        return Err(BadHost);
    }
    match host {
        Some(h) => {
            if !valid_authority(h.as_bytes()) {
                return Err(BadHost);
            }
            if let Some(a) = authority {
                if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) {
                    return Err(BadHost);
                }
            }
            Ok(())
        }
        None if version == http::Version::HTTP_11 => Err(BadHost),
        None => {
            if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                headers.insert(HOST, v);
            }
            Ok(())
        }
    }
}

/// Whether `value` is a usable `host[:port]`: an authority (RFC 3986 §3.2)
/// with a non-empty host and without userinfo, which upstreams and the
/// gateway could read differently (`user@host`, and `a@b@c` even more so).
pub fn valid_authority(value: &[u8]) -> bool {
    if plain_host_port(value) {
        // `name[:port]` of letters, digits, `.` and `-`: what nearly every
        // request carries, valid without building an `Authority` (a copy).
        return true;
    }
    !value.contains(&b'@')
        && http::uri::Authority::try_from(value).is_ok_and(|a| !a.host().is_empty())
}

/// A non-empty host of ASCII letters, digits, `.` and `-`, then optionally `:`
/// and 1–5 digits: a subset of what `http::uri::Authority` accepts.
fn plain_host_port(value: &[u8]) -> bool {
    let (host, port) = match value.iter().position(|&b| b == b':') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

/// Why the request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's Transfer-Encoding is not exactly chunked")]
pub struct BadFraming;

/// Checks what hyper's HTTP/1.1 parser leaves to the gateway: a request's
/// `Transfer-Encoding` must be one header line saying `chunked` (any case)
/// and nothing else. hyper accepts any list whose last coding is `chunked`
/// (`gzip, chunked`, `chunked, chunked`, two lines) and removes only the
/// chunked framing; the gateway re-frames the body for the upstream, which
/// would then get bytes still in the other codings without being told.
pub fn check_framing(headers: &HeaderMap, seen: Seen) -> Result<(), BadFraming> {
    if !seen.transfer_encoding() {
        return Ok(());
    }
    let mut lines = headers.get_all(&TRANSFER_ENCODING).iter();
    match (lines.next(), lines.next()) {
        (None, _) => Ok(()),
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(BadFraming),
    }
}

/// The request id: the client's when it is sane, else a new UUID.
pub fn request_id(headers: &HeaderMap, seen: Seen) -> HeaderValue {
    if let Some(v) = seen
        .request_id()
        .then(|| headers.get(&X_REQUEST_ID))
        .flatten()
    {
        let ok = !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b));
        if ok {
            return v.clone();
        }
    }
    new_request_id()
}

/// How many request ids share one allocation.
const IDS_PER_CHUNK: usize = 64;

thread_local! {
    /// The current chunk new request ids are written into: each id is a slice
    /// of it, so 64 requests share one allocation instead of one each.
    static IDS: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// A new UUID v4, as a header value cut from this thread's chunk.
fn new_request_id() -> HeaderValue {
    const LEN: usize = uuid::fmt::Hyphenated::LENGTH;
    let id = uuid::Uuid::new_v4();
    let mut text = [0u8; LEN];
    let text = id.hyphenated().encode_lower(&mut text);
    IDS.with_borrow_mut(|chunk| {
        if chunk.capacity() - chunk.len() < LEN {
            *chunk = bytes::BytesMut::with_capacity(LEN * IDS_PER_CHUNK);
        }
        chunk.extend_from_slice(text.as_bytes());
        HeaderValue::from_maybe_shared(chunk.split().freeze())
    })
    .unwrap_or(HeaderValue::from_static("invalid"))
}

/// Joins the `cookie` fields an HTTP/2 client may send apart (RFC 9113
/// §8.2.3, for better compression) into the one line an HTTP/1.x upstream
/// expects, `; ` between them. One field or none: untouched.
pub fn join_cookie_crumbs(headers: &mut HeaderMap) -> Result<(), InvalidHeaderValue> {
    let mut crumbs = headers.get_all(COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return Ok(());
    }
    let (mut line, mut sensitive) = (Vec::new(), false);
    for crumb in headers.get_all(COOKIE) {
        if !line.is_empty() {
            line.extend_from_slice(b"; ");
        }
        line.extend_from_slice(crumb.as_bytes());
        sensitive |= crumb.is_sensitive();
    }
    let mut joined = HeaderValue::from_bytes(&line)?;
    joined.set_sensitive(sensitive);
    headers.insert(COOKIE, joined);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`set_forwarded`], its added fields then moved into the map (which
    /// checks that the map held none of their names).
    fn forward(h: &mut HeaderMap, hop: &Hop<'_, '_>) {
        let mut added = Added::default();
        set_forwarded(h, &mut added, hop);
        added.apply(h);
    }

    /// [`super::check_framing`] with the map's fields seen as the server does.
    fn check_framing(h: &HeaderMap) -> Result<(), BadFraming> {
        super::check_framing(h, Seen::of(h))
    }

    /// [`super::request_id`] with the map's fields seen as the server does.
    fn request_id(h: &HeaderMap) -> HeaderValue {
        super::request_id(h, Seen::of(h))
    }

    #[test]
    fn seen_fields_are_found_in_any_letter_case_and_only_those() {
        let h = map(&[
            ("X-Request-ID", "a"),
            ("ORIGIN", "https://a.test"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("x-request-idx", "b"),
        ]);
        let seen = Seen::of(&h);
        assert!(seen.request_id() && seen.origin() && seen.upgrade() && seen.transfer_encoding());
        let h = map(&[("x-request-idx", "b"), ("origins", "c"), ("upgrades", "d")]);
        let seen = Seen::of(&h);
        assert_eq!(seen, Seen::default());
        // A stripped map's hop-by-hop fields go as with its own pass.
        let mut a = map(&[
            ("connection", "close, x-a"),
            ("x-a", "1"),
            ("te", "gzip"),
            ("b", "2"),
        ]);
        let mut b = a.clone();
        strip_hop_by_hop(&mut a);
        let seen = Seen::of(&b);
        strip_seen_hop_by_hop(&mut b, seen);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn cookie_crumbs_become_one_line() {
        let mut h = map(&[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2; c=3")]);
        join_cookie_crumbs(&mut h).expect("joined");
        let lines: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(lines, ["a=1; b=2; c=3"]);
        assert_eq!(h["x"], "y");
        let mut one = map(&[("cookie", "a=1, b")]);
        join_cookie_crumbs(&mut one).expect("untouched");
        assert_eq!(one[COOKIE], "a=1, b");
        let mut none = map(&[("x", "y")]);
        join_cookie_crumbs(&mut none).expect("untouched");
        assert!(!none.contains_key(COOKIE));
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("accept"));
        assert!(h.contains_key("trailer"));
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
        // Options in any case; `TE` named by `Connection` is still judged by
        // its value, and an option that names a field takes it along.
        let mut h = map(&[
            ("connection", "TE, Keep-Alive,\tX-Gone "),
            ("te", "trailers"),
            ("x-gone", "1"),
            ("keep-alive", "timeout=5"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["te"]);
    }

    #[test]
    fn every_hop_by_hop_field_goes_whatever_else_is_there() {
        // Each field alone, and all together with two `Connection` lines that
        // name end-to-end fields (one of them also a connection option).
        let hop = [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "deflate"),
        ];
        for field in hop {
            let mut h = map(&[field, ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            assert_eq!(
                h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
                ["accept"],
                "{field:?}"
            );
        }
        let mut all = hop.to_vec();
        all.extend([
            ("connection", "X-A ,, x-b"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("close", "a field named like an option"),
            ("x-c", "3"),
        ]);
        let mut h = map(&all);
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-c"]
        );
    }

    fn hop<'a>(peer: &str, authority: Option<&'a str>, trusted: bool) -> Hop<'a, 'static> {
        Hop {
            peer: peer.parse().expect("ip"),
            proto: "http",
            authority,
            trusted,
            client_certs: None,
            // A connection of its own for each hop (a few bytes, in tests).
            cache: Box::leak(Box::default()),
        }
    }

    #[test]
    fn new_request_ids_are_distinct_uuids_across_chunks() {
        let ids: Vec<HeaderValue> = (0..IDS_PER_CHUNK * 3 + 5)
            .map(|_| request_id(&HeaderMap::new()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let text = id.to_str().expect("ascii");
            assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
            assert_eq!(text.len(), 36);
            assert!(seen.insert(text.to_owned()), "repeated {text}");
        }
    }

    #[test]
    fn plain_authorities_take_the_fast_path_and_agree_with_http() {
        for (value, valid) in [
            ("api.example.com", true),
            ("api.example.com:8443", true),
            ("127.0.0.1:80", true),
            ("[::1]:443", true),
            ("a_b.example", true),
            ("user@host", false),
            ("host:", true),
            (":80", false),
            ("", false),
            ("host:80:81", false),
            ("ho st", false),
        ] {
            assert_eq!(valid_authority(value.as_bytes()), valid, "{value:?}");
            if plain_host_port(value.as_bytes()) {
                // The fast path never accepts what the full parse refuses.
                assert!(http::uri::Authority::try_from(value).is_ok(), "{value:?}");
            }
        }
    }

    #[test]
    fn a_connection_s_values_follow_each_request_s_host() {
        let cache = HopCache::default();
        let hop = Hop {
            cache: &cache,
            ..hop("192.0.2.7", None, false)
        };
        for (host, want) in [
            ("a.example", "for=192.0.2.7;host=\"a.example\";proto=http"),
            (
                "b.example:8443",
                "for=192.0.2.7;host=\"b.example:8443\";proto=http",
            ),
            ("a.example", "for=192.0.2.7;host=\"a.example\";proto=http"),
        ] {
            let mut h = map(&[
                ("host", host),
                ("forwarded", "for=evil"),
                ("x-forwarded-for", "6.6.6.6"),
            ]);
            strip_client_controlled(&mut h, &[], Overrides::Strip, false);
            forward(&mut h, &hop);
            assert_eq!(h["forwarded"], want, "{host}");
            assert_eq!(h["x-forwarded-for"], "192.0.2.7");
            assert_eq!(h["x-real-ip"], "192.0.2.7");
            assert_eq!(h["x-forwarded-host"], host);
        }
        // Without a Host (HTTP/1.0): no host parameter, also after one was cached.
        let mut h = map(&[]);
        forward(&mut h, &hop);
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn a_trusted_proxy_s_values_are_kept_and_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example.test"),
            ("forwarded", "for=203.0.113.7;proto=https"),
            ("x-real-ip", "203.0.113.7"),
            ("x_forwarded_for", "6.6.6.6"),
            ("host", "internal:8080"),
        ]);
        strip_client_controlled(&mut h, &[], Overrides::Strip, true);
        forward(&mut h, &hop("10.0.0.2", None, true));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.1, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.test");
        assert_eq!(h["x-real-ip"], "203.0.113.7");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.7;proto=https, for=10.0.0.2;host=\"internal:8080\";proto=http"
        );
        assert!(!h.contains_key("x_forwarded_for"));
    }

    #[test]
    fn forwarded_family_is_replaced_with_what_the_gateway_saw() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("X_Forwarded_For", "10.0.0.2"),
            ("host", "api.example.test:8080"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=10.0.0.3;proto=https"),
            ("x-real-ip", "10.0.0.4"),
            ("true-client-ip", "10.0.0.5"),
            ("x-forwarded-prefix", "/evil"),
            ("client-cert", ":AAAA:"),
        ]);
        strip_client_controlled(&mut h, &[], Overrides::Strip, false);
        forward(&mut h, &hop("127.0.0.1", None, false));
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.test:8080");
        assert_eq!(
            h["forwarded"],
            "for=127.0.0.1;host=\"api.example.test:8080\";proto=http"
        );
        for gone in [
            "x_forwarded_for",
            "true-client-ip",
            "x-forwarded-prefix",
            "client-cert",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        let mut h = HeaderMap::new();
        forward(&mut h, &hop("::1", Some("[::1]:9"), false));
        assert_eq!(h["forwarded"], "for=\"[::1]\";host=\"[::1]:9\";proto=http");
    }

    #[test]
    fn overrides_are_stripped_in_every_spelling_unless_the_route_keeps_them() {
        let all = [
            ("x-http-method-override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("X_HTTP_Method_Override", "PUT"),
            ("x-original-url", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("x_original_url", "/admin"),
            ("x-auth-subject", "root"),
            ("X_Auth_Subject", "root"),
            ("accept", "*/*"),
        ];
        let identity = [HeaderName::from_static("x-auth-subject")];
        let mut h = map(&all);
        strip_client_controlled(&mut h, &identity, Overrides::Strip, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        let mut h = map(&all);
        strip_client_controlled(&mut h, &identity, Overrides::KeepMethod, false);
        let mut kept: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            [
                "accept",
                "x-http-method",
                "x-http-method-override",
                "x-method-override"
            ]
        );
    }

    #[test]
    fn forward_auth_refuses_what_the_proxy_would_strip() {
        let identity = [HeaderName::from_static("x-auth-subject")];
        let keep = Overrides::KeepMethod;
        let found = |pairs: &[(&str, &str)], o| unstrippable(&map(pairs), &identity, o);
        for (name, want) in [
            ("X-Auth-Subject", Unstrippable::Identity),
            ("x_AUTH_subject", Unstrippable::Identity),
            ("X-Original-URL", Unstrippable::UrlOverride),
            ("x_rewrite_url", Unstrippable::UrlOverride),
            ("X_Original_URI", Unstrippable::UrlOverride),
            ("X_HTTP_Method_Override", Unstrippable::MethodOverride),
            ("X_Forwarded_Uri", Unstrippable::Underscored),
            ("x_forwarded_for", Unstrippable::Underscored),
        ] {
            assert_eq!(found(&[(name, "x")], keep), Some(want), "{name}");
        }
        // The description and the forwarded family the proxy sets are inputs.
        let inputs = [
            ("X-Original-URI", "/a"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Uri", "/a"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Real-IP", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1"),
            ("accept", "*/*"),
            // A request id, in any spelling, is the outer proxy's to judge.
            ("X-Request-Id", "a"),
            ("X_Request_Id", "b"),
        ];
        assert_eq!(found(&inputs, Overrides::Strip), None);
        let method = [("X-HTTP-Method", "DELETE")];
        assert_eq!(found(&method, keep), None);
        assert_eq!(
            found(&method, Overrides::Strip),
            Some(Unstrippable::MethodOverride)
        );
    }

    #[test]
    fn host_must_be_one_valid_authority() {
        use http::Version;
        let h11 = Version::HTTP_11;
        assert_eq!(
            check_host(&mut map(&[("host", "api.test:8080")]), h11, None),
            Ok(())
        );
        assert_eq!(
            check_host(&mut map(&[("host", "[::1]:80")]), h11, None),
            Ok(())
        );
        for bad in [
            &[][..],
            &[("host", "a"), ("host", "b")][..],
            &[("host", "a b")][..],
            &[("host", "user@api.test")][..],
            &[("host", "api.test/x")][..],
            &[("host", "")][..],
            &[("host", ":80")][..],
        ] {
            assert_eq!(
                check_host(&mut map(bad), h11, None),
                Err(BadHost),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_host(&mut HeaderMap::new(), Version::HTTP_10, None),
            Ok(())
        );
        let authority: http::uri::Authority = "api.test:8443".parse().expect("authority");
        let mut h = HeaderMap::new();
        assert_eq!(
            check_host(&mut h, Version::HTTP_2, Some(&authority)),
            Ok(())
        );
        assert_eq!(h["host"], "api.test:8443");
        let mut h = map(&[("host", "API.test:8443")]);
        assert_eq!(
            check_host(&mut h, Version::HTTP_2, Some(&authority)),
            Ok(())
        );
        let mut h = map(&[("host", "other.test")]);
        assert_eq!(
            check_host(&mut h, Version::HTTP_2, Some(&authority)),
            Err(BadHost)
        );
        // `:authority` passes the same test as `Host`, with or without one.
        for bad in [
            "user@api.test",
            "user:pw@api.test:8443",
            "@api.test",
            ":8443",
        ] {
            let authority: http::uri::Authority = bad.parse().expect("authority");
            for mut h in [HeaderMap::new(), map(&[("host", bad)])] {
                assert_eq!(
                    check_host(&mut h, Version::HTTP_2, Some(&authority)),
                    Err(BadHost),
                    "{bad}"
                );
                assert!(!h.contains_key("host") || h["host"] == bad);
            }
        }
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        assert_eq!(check_framing(&HeaderMap::new()), Ok(()));
        for good in ["chunked", "Chunked", "CHUNKED"] {
            assert_eq!(check_framing(&map(&[("transfer-encoding", good)])), Ok(()));
        }
        for bad in [
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "chunked;q=1",
            "",
        ] {
            assert_eq!(
                check_framing(&map(&[("transfer-encoding", bad)])),
                Err(BadFraming),
                "{bad}"
            );
        }
        assert_eq!(
            check_framing(&map(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ])),
            Err(BadFraming)
        );
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "bad id with spaces")]));
        assert_eq!(fresh.len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
