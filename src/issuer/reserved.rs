//! What the issuer reserves for itself: the admin API's audience and its one
//! scope, and the access-token claims a blocking hook may never set
//! ([`HOOK_RESERVED_CLAIMS`]). The admin API's resource is `{issuer.url}/admin/v1`, declared by the
//! issuer (never by the configuration, the CLI or the admin API), and
//! `portcullis:admin` exists on that resource only: a token for any other API
//! never carries it, so no upstream ever receives a token it could replay
//! against `/admin/v1`, and the admin API accepts only tokens whose `aud` is
//! its own.

use super::store::ApiResource;

pub use crate::config::value::{ADMIN_SCOPE, admin_audience};

/// Access-token claims a `token.pre_issue` hook can never set: a hook that
/// names one has it ignored (and logged), never applied. They are the token's
/// identity and lifetime (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`),
/// what it grants and to whom (`client_id`, `scope`, `scp`, `azp`), what the
/// gateway authorises with (`org_id`, `roles`, `role`, and `typ` /
/// `token_use`, which it reads to tell access tokens from others), what the
/// issuer says about the sign-in (`auth_time`, `acr`, `amr`, `sid`, `nonce`,
/// `at_hash`, `c_hash`), token binding and delegation (`cnf`, `act`,
/// `may_act`), and `anonymous`, which only the issuer may say of a user.
pub const HOOK_RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "scp",
    "azp",
    "org_id",
    "roles",
    "role",
    "typ",
    "token_use",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "nonce",
    "at_hash",
    "c_hash",
    "cnf",
    "act",
    "may_act",
    "anonymous",
];

/// Whether a hook may set the access-token claim `name`.
pub fn hook_may_set(name: &str) -> bool {
    !HOOK_RESERVED_CLAIMS.contains(&name)
}

/// The admin API's resource, as the issuer declares it.
pub fn admin_resource(url: &str) -> ApiResource {
    ApiResource {
        identifier: admin_audience(url),
        scopes: vec![ADMIN_SCOPE.to_owned()],
    }
}

/// The scopes of `scopes` that a token for `resource` may carry from the
/// issuer at `url`: all of them, except `portcullis:admin` unless `resource`
/// is the admin API's. Applied wherever scopes are granted (client
/// credentials, authorization codes, refresh), so that a resource, client or
/// role stored before the admin scope was confined cannot leak it.
pub fn confine<'a, I>(url: &str, resource: Option<&str>, scopes: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a String>,
{
    let admin = resource.is_some_and(|r| r == admin_audience(url));
    scopes
        .into_iter()
        .filter(|s| admin || s.as_str() != ADMIN_SCOPE)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_audience_hangs_off_the_issuer_url() {
        assert_eq!(
            admin_audience("https://id.example.test"),
            "https://id.example.test/admin/v1"
        );
        assert_eq!(
            admin_audience("https://id.example.test/"),
            "https://id.example.test/admin/v1"
        );
    }

    #[test]
    fn hooks_cannot_set_what_identifies_limits_or_authorises_a_token() {
        for name in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "scope",
            "org_id",
            "roles",
        ] {
            assert!(!hook_may_set(name), "{name}");
        }
        for name in ["email", "plan", "https://example.test/tier", "Sub"] {
            assert!(hook_may_set(name), "{name}");
        }
    }

    #[test]
    fn the_admin_scope_is_granted_for_the_admin_audience_only() {
        let url = "https://id.example.test";
        let scopes = vec!["read".to_owned(), ADMIN_SCOPE.to_owned()];
        assert_eq!(
            confine(url, Some("https://api.example.test"), &scopes),
            ["read"]
        );
        assert_eq!(confine(url, None, &scopes), ["read"]);
        assert_eq!(
            confine(url, Some("https://id.example.test/admin/v1"), &scopes),
            scopes
        );
    }
}
