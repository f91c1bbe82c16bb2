//! The discovery documents: OpenID Connect Discovery and the RFC 8414
//! metadata, listing what this issuer implements and nothing more.

use bytes::Bytes;

use crate::config::IssuerSection;
use crate::config::value::ANONYMOUS_GRANT;

/// The OpenID Connect Discovery document and the RFC 8414 metadata, listing
/// what this issuer serves today.
pub(super) fn discovery_documents(section: &IssuerSection) -> (Bytes, Bytes) {
    let base = section.url.trim_end_matches('/');
    let algs: Vec<&str> = section.signing_algs.iter().map(|a| a.as_str()).collect();
    let mut scopes: Vec<String> = section
        .resources
        .iter()
        .flat_map(|r| r.scopes.clone())
        .collect();
    scopes.extend(["openid", "profile", "email", "offline_access"].map(String::from));
    scopes.sort();
    scopes.dedup();
    let doc = serde_json::json!({
        "issuer": section.url,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "end_session_endpoint": format!("{base}/logout"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", ANONYMOUS_GRANT],
        // `none`: public clients identify themselves by `client_id` alone
        // (with PKCE). No `*_jwt` method exists, so no
        // `token_endpoint_auth_signing_alg_values_supported` either.
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        // Revocation accepts public clients; introspection does not.
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        // Codes come back in the query only (the OIDC default would also
        // claim `fragment`).
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        // Absent, these default to true (`request_uri`) or would be read as
        // support; none of them is implemented.
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "org_id", "roles",
            "anonymous", "auth_time", "nonce", "email", "email_verified", "name", "picture", "org_name", "role"],
    });
    let text = Bytes::from(doc.to_string());
    (text.clone(), text)
}
