//! Cross-checks over the whole file: references between sections, exclusive
//! choices, required values. Every problem is collected before failing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};

use super::error::{ConfigError, ConfigErrors};
use super::locate::Locations;
use super::raw::{RawAuth, RawConfig, RawCors, RawIssuer, RawProtocol, RawRoute, RawUpstream};
use super::value::{ADMIN_API_PREFIX, Algorithm, ISSUER_PATHS, PathPattern, PatternSegment};
use super::{
    AdminConfig, AuthMode, CertPair, Config, CorsConfig, ForwardAuthConfig, IntrospectionConfig,
    IssuerConfig, IssuerSection, KeySourceConfig, RouteConfig, Secret, UpstreamConfig,
    UpstreamProtocol,
};

mod issuer;
mod server;

const DEFAULT_INTROSPECTION_CACHE: Duration = Duration::from_secs(60);
const DEFAULT_INTROSPECTION_CONCURRENCY: usize = 32;
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that may never carry identity: the proxy manages them itself.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "proxy-connection",
];

struct Checker<'a> {
    file: &'a Path,
    locations: Locations,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let (line, column) = self.locations.find(key);
        self.errors.push(ConfigError::at(
            self.file,
            line,
            column,
            Some(key.to_owned()),
            message,
        ));
    }
}

/// Turns the raw file into a [`Config`], or every error found.
pub fn validate(raw: RawConfig, file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        file,
        locations: Locations::index(text),
        errors: Vec::new(),
    };
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();

    let server = server::server(&mut c, raw.server, &base_dir);
    let admin = raw.admin.map(|a| AdminConfig { listen: a.listen.0 });
    let forward_auth = raw.forward_auth.map(|f| ForwardAuthConfig {
        listen: f.listen.0,
        trust_request_line: f.trust_request_line.unwrap_or(false),
    });
    server::distinct_listeners(
        &mut c,
        &[
            ("server.listen", Some(server.listen)),
            ("admin.listen", admin.as_ref().map(|a| a.listen)),
            (
                "forward_auth.listen",
                forward_auth.as_ref().map(|f| f.listen),
            ),
        ],
    );

    let issuer = raw.issuer.map(|r| issuer::section(&mut c, r));
    let issuers = issuers(&mut c, raw.issuers, &base_dir, issuer.as_ref());
    let upstreams: Vec<UpstreamConfig> = raw
        .upstreams
        .into_iter()
        .map(|(name, u)| upstream(&mut c, name, u, &base_dir))
        .collect();
    let routes: Vec<RouteConfig> = raw
        .routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(&mut c, i, r, &issuers, &upstreams, issuer.is_some()))
        .collect();
    if routes.is_empty() && issuer.is_none() && c.errors.is_empty() {
        c.error(
            "routes",
            "no `routes` and no `issuer`: this configuration would serve nothing (an empty or truncated file?)",
        );
    }
    if issuers.is_empty() && c.errors.is_empty() {
        if let Some(i) = routes.iter().position(|r| r.auth != AuthMode::Anonymous) {
            c.error(&format!("routes[{i}]"), "this route needs a token but no `issuers` are configured (use `auth: anonymous` for open routes)");
        }
    }
    let identity_headers = match raw.identity_headers {
        None => super::default_identity_headers(),
        Some(map) => identity(&mut c, map.into_iter().map(|(k, v)| (k, v.0)).collect()),
    };

    if !c.errors.is_empty() {
        c.errors.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors::new(c.errors));
    }
    Ok(Config {
        source: file.to_owned(),
        server,
        admin,
        issuers,
        upstreams,
        routes,
        identity_headers,
        issuer,
        forward_auth,
    })
}

fn upstream(c: &mut Checker<'_>, name: String, u: RawUpstream, base: &Path) -> UpstreamConfig {
    let key = format!("upstreams.{name}");
    let url = u.url.0.0;
    if url.query().is_some() {
        c.error(
            &format!("{key}.url"),
            "an upstream URL must not carry a query",
        );
    }
    let https = url.scheme_str() == Some("https");
    if !https && u.ca_file.is_some() {
        c.error(
            &format!("{key}.ca_file"),
            "`ca_file` applies to `https://` upstreams only",
        );
    }
    if !https && u.client_cert.is_some() {
        c.error(
            &format!("{key}.client_cert"),
            "`client_cert` applies to `https://` upstreams only",
        );
    }
    UpstreamConfig {
        name,
        url,
        connect_timeout: u
            .connect_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        timeout: u.timeout.map(|d| d.0).unwrap_or(DEFAULT_TIMEOUT),
        protocol: match u.protocol {
            None | Some(RawProtocol::Http1) => UpstreamProtocol::Http1,
            Some(RawProtocol::H2) => UpstreamProtocol::H2,
        },
        ca_file: u.ca_file.map(|f| resolve(base, &f)),
        client_cert: u.client_cert.map(|p| CertPair {
            cert: resolve(base, &p.cert),
            key: resolve(base, &p.key),
        }),
    }
}

fn issuers(
    c: &mut Checker<'_>,
    raw: Vec<RawIssuer>,
    base: &Path,
    builtin: Option<&IssuerSection>,
) -> Vec<IssuerConfig> {
    let mut ids = HashSet::new();
    let mut iss_values = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("issuers[{i}]");
        if r.id.is_empty() {
            c.error(&format!("{key}.id"), "an issuer id must not be empty");
        }
        if !ids.insert(r.id.clone()) {
            c.error(
                &format!("{key}.id"),
                format!("issuer id `{}` is used twice", r.id),
            );
        }
        let allow_plain_http = r.allow_plain_http.unwrap_or(false);
        let plain = |c: &mut Checker, field: &str, uri: &Uri| {
            if !super::transport_ok(uri, allow_plain_http) {
                c.error(
                    &format!("{key}.{field}"),
                    format!("plain http:// to `{}`, which is not a loopback host: anyone on the way could swap the keys or read the tokens; use https://, or set `allow_plain_http: true` on this issuer if that network is trusted", uri.host().unwrap_or_default()),
                );
            }
        };
        if let Some(u) = &r.jwks_uri {
            plain(c, "jwks_uri", &u.0.0);
        }
        if let Some(u) = &r.discovery_url {
            plain(c, "discovery_url", &u.0.0);
        }
        if let Some(i) = &r.introspection {
            plain(c, "introspection.url", &i.url.0.0);
        }
        let mut sources = Vec::new();
        if let Some(u) = r.jwks_uri {
            sources.push(KeySourceConfig::JwksUri(u.0.0));
        }
        if let Some(u) = r.discovery_url {
            sources.push(KeySourceConfig::Discovery(u.0.0));
        }
        if let Some(f) = r.jwks_file {
            sources.push(KeySourceConfig::File(resolve(base, &f)));
        }
        if r.builtin == Some(true) {
            sources.push(KeySourceConfig::Builtin);
        }
        let keys = match sources.len() {
            1 => sources.remove(0),
            // Opaque tokens only.
            0 if r.introspection.is_some() => KeySourceConfig::None,
            0 => {
                c.error(&key, "an issuer needs exactly one of `jwks_uri`, `discovery_url`, `jwks_file` or `builtin: true`, or `introspection` for opaque tokens");
                continue;
            }
            _ => {
                c.error(&key, "an issuer takes only one of `jwks_uri`, `discovery_url`, `jwks_file` and `builtin: true`");
                continue;
            }
        };
        let builtin = match (&keys, builtin) {
            (KeySourceConfig::Builtin, None) => {
                c.error(&format!("{key}.builtin"), "`builtin: true` needs the top-level `issuer:` section of the built-in issuer, which this configuration does not have");
                continue;
            }
            (KeySourceConfig::Builtin, Some(section)) => Some(section),
            _ => None,
        };
        let issuer = match (builtin, r.issuer) {
            (Some(_), Some(_)) => {
                c.error(&format!("{key}.issuer"), "a `builtin: true` issuer takes its `iss` from `issuer.url`; leave `issuer` out");
                continue;
            }
            (Some(section), None) => section.url.clone(),
            (None, Some(issuer)) if !issuer.is_empty() => issuer,
            (None, _) => {
                c.error(
                    &key,
                    "missing `issuer`: the exact `iss` value of this issuer's tokens",
                );
                continue;
            }
        };
        if builtin.is_some() && r.introspection.is_some() {
            c.error(
                &format!("{key}.introspection"),
                "a `builtin: true` issuer's tokens are JWTs verified in process; it takes no `introspection`",
            );
        }
        let introspection = r.introspection.map(|i| {
            if i.client_id.is_empty() {
                c.error(
                    &format!("{key}.introspection.client_id"),
                    "`client_id` must not be empty",
                );
            }
            let cache = i.cache.map(|d| d.0).unwrap_or(DEFAULT_INTROSPECTION_CACHE);
            if cache > Duration::from_secs(3_600) {
                c.error(
                    &format!("{key}.introspection.cache"),
                    "`cache` must be at most 1h: a revoked token would pass that long",
                );
            }
            let max_concurrent = i
                .max_concurrent
                .unwrap_or(DEFAULT_INTROSPECTION_CONCURRENCY);
            if !(1..=4096).contains(&max_concurrent) {
                c.error(
                    &format!("{key}.introspection.max_concurrent"),
                    "`max_concurrent` must be between 1 and 4096",
                );
            }
            IntrospectionConfig {
                url: i.url.0.0,
                client_id: i.client_id,
                client_secret: Secret::new(i.client_secret),
                cache,
                max_concurrent: max_concurrent.clamp(1, 4096),
            }
        });
        if builtin.is_some() && r.ca_file.is_some() {
            c.error(
                &format!("{key}.ca_file"),
                "`ca_file` does not apply to a `builtin: true` issuer, whose keys are in process",
            );
        }
        if !iss_values.insert(issuer.clone()) {
            c.error(&format!("{key}.issuer"), format!("issuer `{issuer}` is configured twice; tokens are routed to an issuer by their `iss`"));
        }
        let audiences = r.audiences.unwrap_or_default();
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            c.error(
                &format!("{key}.audiences"),
                "`audiences` is required: at least one non-empty audience",
            );
        }
        let algorithms: Vec<Algorithm> = match (r.algorithms, builtin) {
            (Some(list), _) => list.into_iter().map(|a| a.0).collect(),
            // The built-in issuer signs with exactly these.
            (None, Some(section)) => section.signing_algs.iter().map(|a| a.algorithm()).collect(),
            (None, None) => Algorithm::ALL.to_vec(),
        };
        // A built-in issuer's empty `signing_algs` is reported on its own.
        if algorithms.is_empty() && builtin.is_none() {
            c.error(
                &format!("{key}.algorithms"),
                "`algorithms` must not be empty",
            );
        }
        out.push(IssuerConfig {
            id: r.id,
            issuer,
            keys,
            audiences,
            algorithms,
            leeway: r.leeway.map(|d| d.0).unwrap_or(DEFAULT_LEEWAY),
            org_claim: r.org_claim.unwrap_or_else(|| "org_id".to_owned()),
            roles_claim: r.roles_claim,
            ca_file: r.ca_file.map(|f| resolve(base, &f)),
            introspection,
            allow_plain_http,
        });
    }
    out
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn route(
    c: &mut Checker<'_>,
    i: usize,
    r: RawRoute,
    issuers: &[IssuerConfig],
    upstreams: &[UpstreamConfig],
    issuer_on: bool,
) -> Option<RouteConfig> {
    let key = format!("routes[{i}]");
    if issuer_on {
        if let Some(shadowed) = shadowed_by_issuer(&r.path.0) {
            c.error(
                &format!("{key}.path"),
                format!(
                    "`{}` would never see `{shadowed}`: the built-in issuer answers it on this listener before any route; narrow the pattern (a catch-all `/*` is fine)",
                    r.path.0
                ),
            );
        }
    }
    let upstream = upstreams.iter().position(|u| u.name == r.upstream);
    if upstream.is_none() {
        c.error(
            &format!("{key}.upstream"),
            format!("unknown upstream `{}`", r.upstream),
        );
    }
    let auth = match r.auth {
        None | Some(RawAuth::Required) => AuthMode::Required,
        Some(RawAuth::Optional) => AuthMode::Optional,
        Some(RawAuth::Anonymous) => AuthMode::Anonymous,
    };
    let pattern = r.path.0;
    if let Some(param) = &r.org_param {
        if !pattern.params().any(|p| p == param) {
            c.error(
                &format!("{key}.org_param"),
                format!("`{param}` is not a `{{parameter}}` of the path `{pattern}`"),
            );
        }
    }
    let has_requirements = !r.scopes.is_empty()
        || !r.any_scopes.is_empty()
        || !r.roles.is_empty()
        || r.org_param.is_some()
        || r.issuers.is_some();
    if auth == AuthMode::Anonymous && has_requirements {
        c.error(&key, "an `auth: anonymous` route examines no token, so `scopes`, `any_scopes`, `roles`, `org_param` and `issuers` cannot apply");
    }
    // What a route requires must be something a token can carry and the
    // identity headers can forward as one item.
    for (field, items, sep) in [
        ("scopes", &r.scopes, b' '),
        ("any_scopes", &r.any_scopes, b' '),
        ("roles", &r.roles, b','),
    ] {
        for (j, item) in items.iter().enumerate() {
            if !super::is_list_item(item, sep) {
                let what = if sep == b' ' {
                    "a scope cannot be empty or contain spaces, control characters, quotes or backslashes"
                } else {
                    "a role cannot be empty or contain commas, control characters, quotes or backslashes, or begin or end with a space"
                };
                c.error(&format!("{key}.{field}[{j}]"), format!("`{item}`: {what}"));
            }
        }
    }
    let methods = r
        .methods
        .map(|m| m.into_iter().map(|m| m.0).collect::<Vec<_>>());
    if methods.as_ref().is_some_and(Vec::is_empty) {
        c.error(
            &format!("{key}.methods"),
            "`methods` must not be empty (leave it out to allow every method)",
        );
    }
    let route_issuers = r.issuers.map(|ids| {
        ids.iter()
            .enumerate()
            .filter_map(|(j, id)| {
                let found = issuers.iter().position(|i| &i.id == id);
                if found.is_none() {
                    c.error(
                        &format!("{key}.issuers[{j}]"),
                        format!("unknown issuer `{id}`"),
                    );
                }
                found
            })
            .collect::<Vec<_>>()
    });
    Some(RouteConfig {
        path: pattern.to_string(),
        pattern,
        methods,
        upstream: upstream?,
        auth,
        scopes: r.scopes,
        any_scopes: r.any_scopes,
        roles: r.roles,
        org_param: r.org_param,
        issuers: route_issuers,
        forward_token: r.forward_token.unwrap_or(true),
        matrix_params: r.matrix_params.unwrap_or(false),
        method_override: r.method_override.unwrap_or(false),
        max_body: r.max_body.map(|b| b.0.0),
        websocket: r.websocket.unwrap_or(false),
        cors: r.cors.map(|raw| cors(c, &key, raw)),
    })
}

/// A route's CORS policy: origins are `*` or exact `scheme://host[:port]`;
/// credentials are never allowed with `*` (the Fetch standard refuses it).
fn cors(c: &mut Checker<'_>, route: &str, raw: RawCors) -> CorsConfig {
    let key = format!("{route}.cors");
    if raw.allow_origins.is_empty() {
        c.error(
            &format!("{key}.allow_origins"),
            "`allow_origins` must name at least one origin (or `*`)",
        );
    }
    let wildcard = raw.allow_origins.iter().any(|o| o == "*");
    for (i, o) in raw.allow_origins.iter().enumerate() {
        if o != "*" && !is_origin(o) {
            c.error(
                &format!("{key}.allow_origins[{i}]"),
                format!("`{o}` is not an origin such as `https://app.example.test` (scheme, host and optional port; no path)"),
            );
        }
    }
    if wildcard && raw.allow_origins.len() > 1 {
        c.error(
            &format!("{key}.allow_origins"),
            "`*` already allows every origin; list it alone",
        );
    }
    let allow_credentials = raw.allow_credentials.unwrap_or(false);
    if wildcard && allow_credentials {
        c.error(
            &format!("{key}.allow_credentials"),
            "`allow_credentials: true` cannot go with `allow_origins: [\"*\"]`; list the origins",
        );
    }
    CorsConfig {
        allow_origins: raw.allow_origins,
        allow_methods: raw
            .allow_methods
            .map(|m| m.into_iter().map(|m| m.0).collect())
            .unwrap_or_default(),
        allow_headers: raw
            .allow_headers
            .map(|h| h.into_iter().map(|h| h.0).collect())
            .unwrap_or_default(),
        expose_headers: raw
            .expose_headers
            .map(|h| h.into_iter().map(|h| h.0).collect())
            .unwrap_or_default(),
        max_age: raw.max_age.map(|d| d.0),
        allow_credentials,
    }
}

/// `scheme://host[:port]`, lower-case scheme and host, nothing else.
fn is_origin(s: &str) -> bool {
    let Ok(uri) = s.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && uri
            .path_and_query()
            .is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        && !s.ends_with('/')
        && s.bytes().all(|b| !b.is_ascii_uppercase())
        && !s.contains('@')
}

fn identity(c: &mut Checker<'_>, map: Vec<(String, HeaderName)>) -> Vec<(String, HeaderName)> {
    let mut seen = HashSet::new();
    for (claim, header) in &map {
        let key = format!("identity_headers.{claim}");
        // In any spelling: CGI-style upstreams read `_` as `-`.
        let canonical = header.as_str().replace('_', "-");
        if RESERVED_HEADERS.contains(&canonical.as_str())
            || crate::proxy::headers::is_forwarded_family(&canonical)
            || crate::proxy::headers::is_url_override(&canonical)
            || crate::proxy::overrides::METHOD_OVERRIDES
                .iter()
                .any(|n| n.as_str() == canonical)
        {
            c.error(&key, format!("`{header}` cannot be an identity header"));
        }
        if !seen.insert(canonical) {
            c.error(&key, format!("header `{header}` is mapped from two claims"));
        }
    }
    map
}

/// An issuer path (or the admin API's prefix) that `pattern` would match but
/// never receive, for a pattern that names the issuer's own first segment
/// (`/oauth/*`, `/login`, `/.well-known/*`, `/admin/v1/*`, …). Patterns that
/// begin with a parameter or are the catch-all `/*` are general on purpose
/// and may be shadowed; so may patterns broader than the admin API (`/admin/*`,
/// see [`partly_shadowed_by_issuer`]).
pub(super) fn shadowed_by_issuer(pattern: &PathPattern) -> Option<String> {
    let Some(PatternSegment::Literal(first)) = pattern.segments.first() else {
        return None;
    };
    let starts =
        |path: &str| path.trim_start_matches('/').split('/').next() == Some(first.as_str());
    if let Some(path) = ISSUER_PATHS
        .iter()
        .find(|p| starts(p) && pattern_matches(pattern, p))
    {
        return Some((*path).to_owned());
    }
    // The admin API: a pattern whose every path lies below its prefix.
    let prefix = admin_prefix();
    let literal = |k: usize| matches!(pattern.segments.get(k), Some(PatternSegment::Literal(l)) if l == prefix[k]);
    let within = (0..prefix.len()).all(literal)
        && (pattern.segments.len() > prefix.len() || pattern.wildcard);
    within.then(|| format!("{ADMIN_API_PREFIX}*"))
}

/// Whether part of what `pattern` matches is the admin API's (`/admin/*`,
/// `/admin/{version}/users`): allowed, but those requests go to the issuer,
/// which the server says when it starts.
pub fn partly_shadowed_by_issuer(pattern: &PathPattern) -> bool {
    let prefix = admin_prefix();
    if shadowed_by_issuer(pattern).is_some()
        || !matches!(pattern.segments.first(), Some(PatternSegment::Literal(l)) if l == prefix[0])
    {
        return false;
    }
    let compatible = |k: usize| match pattern.segments.get(k) {
        Some(PatternSegment::Literal(l)) => l == prefix[k],
        Some(PatternSegment::Param(_)) => true,
        None => pattern.wildcard,
    };
    let n = pattern.segments.len();
    (0..prefix.len()).all(|k| k >= n || compatible(k)) && (n > prefix.len() || pattern.wildcard)
}

/// The admin API's prefix as segments (`["admin", "v1"]`).
fn admin_prefix() -> Vec<&'static str> {
    ADMIN_API_PREFIX.trim_matches('/').split('/').collect()
}

/// Whether `pattern` matches the (plain, decoded) `path`.
fn pattern_matches(pattern: &PathPattern, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let n = pattern.segments.len();
    if segments.len() < n || (segments.len() > n && !pattern.wildcard) {
        return false;
    }
    pattern
        .segments
        .iter()
        .zip(&segments)
        .all(|(p, s)| match p {
            PatternSegment::Literal(l) => l == s,
            PatternSegment::Param(_) => !s.is_empty(),
        })
}
