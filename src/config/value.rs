//! Value types that parse themselves while the YAML is read, so that a bad value
//! is reported by the YAML library with its key path, line and column.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

mod net;
mod oauth;

pub use net::WebhookAddressPolicy;
pub use oauth::{
    ADMIN_API_PREFIX, ADMIN_SCOPE, ANONYMOUS_GRANT, GrantType, HookEvent, ISSUER_PATHS, IssuerUrl,
    OnFailure, Secret, SigningAlg, WebhookEvent, WebhookSecret, absolute_uri, admin_audience,
    scope_token,
};

/// Something that can be parsed from one YAML string scalar.
pub trait ParseValue: Sized {
    /// What the value should look like, for messages ("a duration such as `30s`").
    const EXPECTING: &'static str;
    /// Parses the scalar; the error is a lowercase phrase.
    fn parse_value(s: &str) -> Result<Self, String>;
}

/// A wrapper that deserialises `T` from a string through [`ParseValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<'de, T: ParseValue> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: ParseValue> Visitor<'_> for V<T> {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                T::parse_value(s).map(Parsed).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A signing algorithm a route may accept. HS* and `none` have no variant at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm: the default allowlist.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Looks a JOSE `alg` value up (exact, case-sensitive as RFC 7515 says).
    pub fn from_name(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl ParseValue for Algorithm {
    const EXPECTING: &'static str = "a JWS algorithm (RS256 … PS512, ES256, ES384, EdDSA)";
    fn parse_value(s: &str) -> Result<Self, String> {
        Algorithm::from_name(s).ok_or_else(|| {
            if s.eq_ignore_ascii_case("none") || s.to_ascii_uppercase().starts_with("HS") {
                format!("algorithm `{s}` is never accepted")
            } else {
                format!("unknown algorithm `{s}`, expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")
            }
        })
    }
}

impl ParseValue for Duration {
    const EXPECTING: &'static str = "a duration such as `500ms`, `30s`, `10m`, `1h` or `30d`";
    fn parse_value(s: &str) -> Result<Self, String> {
        parse_duration(s).ok_or_else(|| {
            format!("invalid duration `{s}`, expected a number and a unit: `500ms`, `30s`, `10m`, `1h`, `30d`")
        })
    }
}

/// Parses `500ms`, `30s`, `10m`, `1h`, `30d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl ParseValue for SocketAddr {
    const EXPECTING: &'static str = "a listen address such as `127.0.0.1:8080`";
    fn parse_value(s: &str) -> Result<Self, String> {
        let candidate = s
            .strip_prefix("localhost:")
            .map(|p| format!("127.0.0.1:{p}"));
        candidate
            .as_deref()
            .unwrap_or(s)
            .parse()
            .map_err(|_| format!("invalid listen address `{s}`, expected `IP:PORT`"))
    }
}

/// A size in bytes: a number with an optional unit, `B`, `KB`, `MB`, `GB` (powers
/// of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024): `512KB`, `10MB`, `1MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ParseValue for ByteSize {
    const EXPECTING: &'static str = "a size such as `512KB`, `10MB` or `1MiB`";
    fn parse_value(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size `{s}`, expected a number and a unit such as `10MB`")
        })?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit `{other}` in `{s}`: use B, KB, MB, GB, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl ParseValue for ipnet::IpNet {
    const EXPECTING: &'static str = "an address range such as `10.0.0.0/8` or an address";
    fn parse_value(s: &str) -> Result<Self, String> {
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(|n| n.trunc())
            .map_err(|_| format!("invalid address range `{s}`, expected CIDR such as `10.0.0.0/8`"))
    }
}

/// One `T` or a list of them (`tls: {cert, key}` or `tls: [{…}, {…}]`), read
/// through the same deserializer so that errors keep their line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping or a list of mappings")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|one| OneOrMany(vec![one]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An absolute `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub Uri);

impl ParseValue for HttpUrl {
    const EXPECTING: &'static str = "an http:// or https:// URL";
    fn parse_value(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|_| format!("invalid URL `{s}`"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("URL `{s}` must start with http:// or https://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("URL `{s}` has no host"));
        }
        Ok(HttpUrl(uri))
    }
}

impl ParseValue for Method {
    const EXPECTING: &'static str = "an HTTP method such as GET";
    fn parse_value(s: &str) -> Result<Self, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "invalid HTTP method `{s}`, expected an upper-case name such as GET"
            ));
        }
        Method::from_bytes(s.as_bytes()).map_err(|_| format!("invalid HTTP method `{s}`"))
    }
}

impl ParseValue for HeaderName {
    const EXPECTING: &'static str = "an HTTP header name";
    fn parse_value(s: &str) -> Result<Self, String> {
        HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        for bad in ["", "s", "10", "1.5s", "-1s", "10 parsecs", "5w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn algorithms_never_include_hmac_or_none() {
        assert_eq!(Algorithm::parse_value("ES256"), Ok(Algorithm::ES256));
        assert!(Algorithm::parse_value("HS256").is_err());
        assert!(Algorithm::parse_value("none").is_err());
        assert!(Algorithm::parse_value("es256").is_err());
    }

    #[test]
    fn urls_need_http_scheme_and_host() {
        assert!(HttpUrl::parse_value("http://127.0.0.1:9000").is_ok());
        assert!(HttpUrl::parse_value("https://id.example.test/jwks").is_ok());
        assert!(HttpUrl::parse_value("ftp://x").is_err());
        assert!(HttpUrl::parse_value("/relative").is_err());
    }

    #[test]
    fn sizes_and_ranges() {
        assert_eq!(ByteSize::parse_value("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse_value("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse_value("512"), Ok(ByteSize(512)));
        assert_eq!(ByteSize::parse_value("64KiB"), Ok(ByteSize(65_536)));
        for bad in ["", "MB", "10 parsecs", "1.5MB", "99999999999999999999GB"] {
            assert!(ByteSize::parse_value(bad).is_err(), "{bad}");
        }
        let net = ipnet::IpNet::parse_value("10.1.2.3/8").expect("cidr");
        assert_eq!(net.to_string(), "10.0.0.0/8");
        let one = ipnet::IpNet::parse_value("192.0.2.7").expect("address");
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(ipnet::IpNet::parse_value("::1").is_ok());
        assert!(ipnet::IpNet::parse_value("10.0.0.0/33").is_err());
    }
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSegment {
    /// Matches exactly this (decoded) text.
    Literal(String),
    /// `{name}`: matches any one segment.
    Param(String),
}

/// A compiled route pattern: literal segments, `{name}`, and an optional trailing `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pub segments: Vec<PatternSegment>,
    /// A trailing `/*`: the prefix itself and anything below it.
    pub wildcard: bool,
}

impl PathPattern {
    /// The names of the `{name}` segments, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            PatternSegment::Param(p) => Some(p.as_str()),
            PatternSegment::Literal(_) => None,
        })
    }
}

impl ParseValue for PathPattern {
    const EXPECTING: &'static str = "a path pattern such as `/orgs/{org}/items/*`";
    fn parse_value(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!("path pattern `{s}` must start with `/`"));
        };
        let (rest, wildcard) = if rest == "*" {
            ("", true)
        } else if let Some(r) = rest.strip_suffix("/*") {
            (r, true)
        } else {
            (rest, false)
        };
        let mut segments = Vec::new();
        let mut names = Vec::new();
        for seg in rest.split('/').filter(|s| !s.is_empty()) {
            if let Some(name) = seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
                let ok =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(format!("invalid parameter `{seg}` in path pattern `{s}`"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice in `{s}`"));
                }
                names.push(name);
                segments.push(PatternSegment::Param(name.to_owned()));
            } else if seg.contains(['{', '}', '*', '%', '?', '#', ';', '\\'])
                || seg == "."
                || seg == ".."
            {
                return Err(format!(
                    "invalid segment `{seg}` in path pattern `{s}`: a literal segment cannot be `.` or `..` or contain `{{`, `}}`, `%`, `?`, `#`, `;` or `\\`, and `*` is allowed only as a trailing `/*`"
                ));
            } else {
                segments.push(PatternSegment::Literal(seg.to_owned()));
            }
        }
        Ok(PathPattern { segments, wildcard })
    }
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn patterns_parse() {
        let p = PathPattern::parse_value("/orgs/{org}/items/*").expect("valid");
        assert!(p.wildcard);
        assert_eq!(p.params().collect::<Vec<_>>(), vec!["org"]);
        assert_eq!(PathPattern::parse_value("/*").map(|p| p.wildcard), Ok(true));
        assert_eq!(
            PathPattern::parse_value("/").map(|p| p.segments.len()),
            Ok(0)
        );
        for bad in [
            "a", "/a*", "/{x", "/{}", "/a/*/b", "/{a}/{a}", "/a/../b", "/a;b", "/a\\b",
        ] {
            assert!(PathPattern::parse_value(bad).is_err(), "{bad}");
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            match seg {
                PatternSegment::Literal(l) => write!(f, "/{l}")?,
                PatternSegment::Param(p) => write!(f, "/{{{p}}}")?,
            }
        }
        match (self.wildcard, self.segments.is_empty()) {
            (true, _) => f.write_str("/*"),
            (false, true) => f.write_str("/"),
            (false, false) => Ok(()),
        }
    }
}
