//! Value types of the `issuer:` section: signing algorithms, grant types, webhook
//! events and secrets, blocking hook events and their failure mode, the issuer URL, and secrets that never print themselves.
//! Each parses itself while the YAML is read (see [`ParseValue`]).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Algorithm, HttpUrl, ParseValue};

/// An algorithm the built-in issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlg {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys).
    RS256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm the issuer can sign with.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm as a verifier allowlist entry.
    pub fn algorithm(self) -> Algorithm {
        match self {
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    /// Looks a JOSE `alg` value up (exact, case-sensitive).
    pub fn from_name(s: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ParseValue for SigningAlg {
    const EXPECTING: &'static str = "a signing algorithm: ES256, RS256 or EdDSA";
    fn parse_value(s: &str) -> Result<Self, String> {
        SigningAlg::from_name(s).ok_or_else(|| {
            format!("unknown signing algorithm `{s}`, expected one of ES256, RS256, EdDSA")
        })
    }
}

/// An OAuth 2.0 grant type a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// Machine-to-machine tokens (RFC 6749 §4.4).
    ClientCredentials,
    /// The authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636).
    AuthorizationCode,
    /// Refresh-token rotation (RFC 6749 §6).
    RefreshToken,
    /// Anonymous users created without credentials by a public client
    /// ([`ANONYMOUS_GRANT`] at the token endpoint).
    Anonymous,
}

/// The `grant_type` value of the anonymous grant at the token endpoint; a
/// client's `grant_types` names it `anonymous`.
pub const ANONYMOUS_GRANT: &str = "urn:portcullis:params:oauth:grant-type:anonymous";

impl GrantType {
    /// Every grant type, in the order of the documentation.
    pub const ALL: [GrantType; 4] = [
        GrantType::ClientCredentials,
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::Anonymous,
    ];

    /// The name in a client's `grant_types` (for the first three, the
    /// `grant_type` value too; the anonymous grant's is [`ANONYMOUS_GRANT`]).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Anonymous => "anonymous",
        }
    }
}

impl ParseValue for GrantType {
    const EXPECTING: &'static str =
        "a grant type: client_credentials, authorization_code, refresh_token or anonymous";
    fn parse_value(s: &str) -> Result<Self, String> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("unknown grant type `{s}`, expected one of client_credentials, authorization_code, refresh_token, anonymous"))
    }
}

/// An event the issuer can deliver to webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    UserCreated,
    UserUpdated,
    UserDeleted,
    OrganizationCreated,
    MembershipCreated,
    MembershipDeleted,
    TokenRevoked,
    TokenReuseDetected,
    KeyRotated,
    UserAnonymousCreated,
    UserAnonymousPromoted,
    UserAnonymized,
}

impl WebhookEvent {
    /// Every event, in the order of the contract.
    pub const ALL: [WebhookEvent; 12] = [
        WebhookEvent::UserCreated,
        WebhookEvent::UserUpdated,
        WebhookEvent::UserDeleted,
        WebhookEvent::OrganizationCreated,
        WebhookEvent::MembershipCreated,
        WebhookEvent::MembershipDeleted,
        WebhookEvent::TokenRevoked,
        WebhookEvent::TokenReuseDetected,
        WebhookEvent::KeyRotated,
        WebhookEvent::UserAnonymousCreated,
        WebhookEvent::UserAnonymousPromoted,
        WebhookEvent::UserAnonymized,
    ];

    /// The event name (`user.created`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::UserCreated => "user.created",
            WebhookEvent::UserUpdated => "user.updated",
            WebhookEvent::UserDeleted => "user.deleted",
            WebhookEvent::OrganizationCreated => "organization.created",
            WebhookEvent::MembershipCreated => "membership.created",
            WebhookEvent::MembershipDeleted => "membership.deleted",
            WebhookEvent::TokenRevoked => "token.revoked",
            WebhookEvent::TokenReuseDetected => "token.reuse_detected",
            WebhookEvent::KeyRotated => "key.rotated",
            WebhookEvent::UserAnonymousCreated => "user.anonymous.created",
            WebhookEvent::UserAnonymousPromoted => "user.anonymous.promoted",
            WebhookEvent::UserAnonymized => "user.anonymized",
        }
    }
}

impl ParseValue for WebhookEvent {
    const EXPECTING: &'static str = "a webhook event such as `user.created`";
    fn parse_value(s: &str) -> Result<Self, String> {
        WebhookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!(
                    "unknown webhook event `{s}`, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A blocking hook's event: the issuer waits for the hook's answer before it
/// goes on (`issuer.hooks[i].event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// Before an access token is signed, for every grant that issues one.
    TokenPreIssue,
    /// Before a user is created.
    UserPreCreate,
}

impl HookEvent {
    /// Every hook event.
    pub const ALL: [HookEvent; 2] = [HookEvent::TokenPreIssue, HookEvent::UserPreCreate];

    /// The event name (`token.pre_issue`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::TokenPreIssue => "token.pre_issue",
            HookEvent::UserPreCreate => "user.pre_create",
        }
    }
}

impl ParseValue for HookEvent {
    const EXPECTING: &'static str = "a hook event: token.pre_issue or user.pre_create";
    fn parse_value(s: &str) -> Result<Self, String> {
        HookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!("unknown hook event `{s}`, expected token.pre_issue or user.pre_create")
            })
    }
}

/// What a blocking hook's failure (timeout, no connection, non-2xx, an answer
/// of the wrong shape) means (`issuer.hooks[i].on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The operation is refused (fail closed): the default.
    #[default]
    Deny,
    /// The operation goes on as if the hook had allowed it, adding nothing.
    Allow,
}

impl ParseValue for OnFailure {
    const EXPECTING: &'static str = "`deny` or `allow`";
    fn parse_value(s: &str) -> Result<Self, String> {
        match s {
            "deny" => Ok(OnFailure::Deny),
            "allow" => Ok(OnFailure::Allow),
            _ => Err(format!("unknown on_failure `{s}`, expected deny or allow")),
        }
    }
}

/// A Standard Webhooks signing secret (`whsec_` and base64 of 24 to 64 bytes).
/// Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// The decoded HMAC-SHA256 key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl ParseValue for WebhookSecret {
    const EXPECTING: &'static str = "a Standard Webhooks secret `whsec_…`";
    fn parse_value(s: &str) -> Result<Self, String> {
        // Never echo the value: it is a secret.
        let body = s
            .strip_prefix("whsec_")
            .ok_or("a webhook secret must start with `whsec_`")?;
        let key = STANDARD
            .decode(body)
            .map_err(|_| "a webhook secret must be `whsec_` followed by base64".to_owned())?;
        if !(24..=64).contains(&key.len()) {
            return Err("a webhook secret must decode to 24 to 64 bytes".to_owned());
        }
        Ok(WebhookSecret(key))
    }
}

/// The built-in issuer's public base URL, kept exactly as written: it is the
/// `iss` of every token. http(s), a host, no query, fragment or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrl(pub String);

impl ParseValue for IssuerUrl {
    const EXPECTING: &'static str = "the issuer's http:// or https:// base URL";
    fn parse_value(s: &str) -> Result<Self, String> {
        if s.contains(['?', '#']) {
            return Err(format!(
                "issuer URL `{s}` must not carry a query or a fragment"
            ));
        }
        HttpUrl::parse_value(s)?;
        if s.ends_with('/') {
            return Err(format!("issuer URL `{s}` must not end with `/`"));
        }
        Ok(IssuerUrl(s.to_owned()))
    }
}

/// The paths the built-in issuer answers on the public listener, before any
/// route (matched on the normalised path).
pub const ISSUER_PATHS: &[&str] = &[
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/authorize",
    "/oauth/userinfo",
    "/login",
    "/logout",
];

/// Everything below this prefix is the built-in issuer's admin API.
pub const ADMIN_API_PREFIX: &str = "/admin/v1/";

/// The scope of the built-in issuer's admin API. It exists only on the admin
/// API's own resource, [`admin_audience`].
pub const ADMIN_SCOPE: &str = "portcullis:admin";

/// The audience of the built-in issuer's admin API for the issuer at `url`:
/// `{url}/admin/v1`. The issuer declares this resource itself.
pub fn admin_audience(url: &str) -> String {
    format!("{}/admin/v1", url.trim_end_matches('/'))
}

/// A secret taken from the file (a client secret). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for hashing; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Whether `s` is an absolute URI without a fragment (RFC 6749 §3.1.2, RFC 8707):
/// a scheme, `:`, and more; http(s) URIs also need a host.
pub fn absolute_uri(s: &str) -> Result<(), String> {
    let scheme_ok = s.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !scheme_ok {
        return Err(format!("`{s}` is not an absolute URI"));
    }
    if s.contains('#') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{s}` must not carry a fragment, spaces or control characters"
        ));
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") {
        HttpUrl::parse_value(s)?;
    }
    Ok(())
}

/// Whether `s` is a valid OAuth scope token (RFC 6749 §3.3): printable ASCII
/// without space, `"` or `\`.
pub fn scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_algs_are_the_three_the_issuer_makes() {
        assert_eq!(SigningAlg::parse_value("EdDSA"), Ok(SigningAlg::EdDSA));
        assert_eq!(SigningAlg::ES256.algorithm(), Algorithm::ES256);
        for bad in ["PS256", "es256", "HS256", "none"] {
            assert!(SigningAlg::parse_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grant_types_and_events_parse_by_name() {
        assert_eq!(
            GrantType::parse_value("refresh_token"),
            Ok(GrantType::RefreshToken)
        );
        assert_eq!(
            GrantType::parse_value("anonymous"),
            Ok(GrantType::Anonymous)
        );
        // The URN is the wire value, not a name for `grant_types`.
        assert!(GrantType::parse_value(ANONYMOUS_GRANT).is_err());
        assert!(GrantType::parse_value("password").is_err());
        assert!(GrantType::parse_value("implicit").is_err());
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse_value(e.as_str()), Ok(e));
        }
        assert!(WebhookEvent::parse_value("user.exploded").is_err());
        for e in HookEvent::ALL {
            assert_eq!(HookEvent::parse_value(e.as_str()), Ok(e));
        }
        assert!(HookEvent::parse_value("user.created").is_err());
        assert_eq!(OnFailure::parse_value("allow"), Ok(OnFailure::Allow));
        assert!(OnFailure::parse_value("Deny").is_err());
    }

    #[test]
    fn webhook_secrets_decode_and_never_print() {
        let good = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let s = WebhookSecret::parse_value(&good).expect("valid");
        assert_eq!(s.key(), &[7u8; 32]);
        assert!(!format!("{s:?}").contains("Bw"));
        let short = format!("whsec_{}", STANDARD.encode([7u8; 8]));
        let wrong_prefix = STANDARD.encode([7u8; 32]);
        for bad in [short.as_str(), wrong_prefix.as_str(), "whsec_!!!"] {
            let err = WebhookSecret::parse_value(bad).expect_err("refused");
            assert!(!err.contains(bad), "the secret is echoed: {err}");
        }
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(redacted)"
        );
    }

    #[test]
    fn issuer_urls_are_kept_exactly() {
        assert_eq!(
            IssuerUrl::parse_value("http://127.0.0.1:8080"),
            Ok(IssuerUrl("http://127.0.0.1:8080".into()))
        );
        assert!(IssuerUrl::parse_value("https://id.example.test/tenant").is_ok());
        for bad in [
            "https://id.example.test/",
            "https://id.example.test?x=1",
            "https://id.example.test#f",
            "ftp://id.example.test",
            "id.example.test",
        ] {
            assert!(IssuerUrl::parse_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_uris_and_scope_tokens() {
        for good in [
            "http://127.0.0.1:3000/callback",
            "https://app.example.test/cb?x=1",
            "com.example.app:/oauth2redirect",
            "urn:example:api",
        ] {
            assert_eq!(absolute_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "/callback",
            "127.0.0.1:3000/cb",
            "https://app.example.test/cb#frag",
            "http:///nohost",
            "https://a b",
            "",
        ] {
            assert!(absolute_uri(bad).is_err(), "{bad}");
        }
        assert!(scope_token("read:data"));
        assert!(!scope_token("read data"));
        assert!(!scope_token(""));
        assert!(!scope_token("a\"b"));
    }
}
