//! The authorization request (RFC 6749 §4.1.1, RFC 7636, RFC 8707, OIDC Core
//! §3.1.2.1), checked in two steps: the client and its redirect URI first —
//! failures there are shown on a page, never redirected — then everything else,
//! whose failures go back to the client's redirect URI.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::AuthorizeError;
use super::pkce;
use crate::issuer::body::{Decoded, decode_form};
use crate::issuer::store::{Client, Store};

/// The parameters of a request: each at most once (`malformed` says otherwise).
#[derive(Debug, Default)]
pub struct Params {
    map: HashMap<String, String>,
    /// Some parameter appeared more than once, or a name or value holds a
    /// NUL character (no stored value can: PostgreSQL refuses them outright).
    /// Whatever reads the parameters refuses the request.
    pub malformed: bool,
}

/// Where an error or a code may be sent: the client's verified redirect URI and
/// the request's `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// A checked authorization request, kept with its login transaction and
/// turned into a code once the user is known.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: String,
    pub target: Target,
    pub nonce: Option<String>,
    /// The requested scopes; `None` when `scope` was absent.
    pub scope: Option<Vec<String>>,
    /// The API the tokens are for (`None`: the client has no API).
    pub resource: Option<String>,
    /// The client's allowed scopes at `resource`.
    pub allowed: Vec<String>,
    /// The S256 challenge, when sent.
    pub code_challenge: Option<String>,
    /// The organization the request names, if any.
    pub organization: Option<String>,
    /// The client may use refresh tokens (so `offline_access` may be granted).
    pub offline: bool,
    /// What `prompt` asks of the login page.
    #[serde(default)]
    pub prompt: Prompt,
    /// `max_age`: the longest time since the user last typed their password
    /// that is still good enough (seconds).
    #[serde(default)]
    pub max_age: Option<i64>,
    /// `login_hint`: the email the form starts with.
    #[serde(default)]
    pub login_hint: Option<String>,
}

/// The `prompt` parameter (OIDC Core §3.1.2.1). `consent` and `select_account`
/// are accepted: this issuer asks no consent of first-party users, and the
/// organization chooser appears whenever the user has several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    /// Sign in when there is no session.
    #[default]
    Default,
    /// Never show a page: answer `login_required` (or
    /// `account_selection_required`) instead.
    None,
    /// Ask for the password even when there is a session.
    Login,
}

// === impl Params ===

impl From<Decoded> for Params {
    fn from(form: Decoded) -> Self {
        Params {
            malformed: form.fault.is_some(),
            map: form.pairs,
        }
    }
}

impl Params {
    /// Parses a query string or a form body.
    pub fn parse(raw: &[u8]) -> Params {
        Params::from(decode_form(raw))
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Step one: the client and the exact redirect URI.
pub async fn client_and_target(
    store: &dyn Store,
    params: &Params,
) -> Result<(Client, Target), AuthorizeError> {
    if params.malformed {
        // A repeated client_id or redirect_uri makes the target itself
        // doubtful; a NUL is in no stored id. Checked before any lookup.
        return Err(AuthorizeError::BadRedirectUri);
    }
    let client_id = params
        .get("client_id")
        .ok_or(AuthorizeError::UnknownClient)?;
    let client = store
        .get_client(client_id)
        .await
        .map_err(|e| AuthorizeError::store(&e))?
        .ok_or(AuthorizeError::UnknownClient)?;
    let redirect_uri = params
        .get("redirect_uri")
        .filter(|uri| client.redirect_uris.iter().any(|r| r == uri))
        .ok_or(AuthorizeError::BadRedirectUri)?;
    let target = Target {
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
    };
    Ok((client, target))
}

/// Step two: response type, grant, PKCE, scope, resource, organization.
pub async fn validate(
    store: &dyn Store,
    params: &Params,
    client: Client,
    target: Target,
) -> Result<AuthRequest, AuthorizeError> {
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(AuthorizeError::UnsupportedResponseType),
        None => return Err(AuthorizeError::InvalidRequest("response_type is required")),
    }
    unsupported(params)?;
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(AuthorizeError::UnauthorizedClient);
    }
    let code_challenge = pkce_challenge(params, &client)?;
    let scope = match params.get("scope") {
        None => None,
        Some(raw) => {
            let scopes: Vec<String> = raw
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let valid = |s: &String| {
                s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            };
            if !scopes.iter().all(valid) {
                return Err(AuthorizeError::InvalidScope);
            }
            Some(scopes)
        }
    };
    let resource = match params.get("resource") {
        Some(r) => Some(r.to_owned()),
        None => {
            let mut apis = client.scopes.keys();
            match (apis.next(), apis.next()) {
                (Some(only), None) => Some(only.clone()),
                (None, _) => None,
                (Some(_), Some(_)) => return Err(AuthorizeError::InvalidTarget),
            }
        }
    };
    if let Some(r) = &resource {
        let known = store
            .get_api_resource(r)
            .await
            .map_err(|e| AuthorizeError::store(&e))?;
        if known.is_none() || !client.scopes.contains_key(r) {
            return Err(AuthorizeError::InvalidTarget);
        }
    }
    let allowed = resource
        .as_ref()
        .and_then(|r| client.scopes.get(r).cloned())
        .unwrap_or_default();
    let prompt = prompt(params.get("prompt"))?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(
            AuthorizeError::InvalidRequest("max_age must be a non-negative integer"),
        )?),
    };
    Ok(AuthRequest {
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        target,
        nonce: params.get("nonce").map(str::to_owned),
        scope,
        resource,
        allowed,
        code_challenge,
        organization: params.get("organization").map(str::to_owned),
        offline: client.grant_types.iter().any(|g| g == "refresh_token"),
        prompt,
        max_age,
        login_hint: params
            .get("login_hint")
            .filter(|h| h.len() <= 320)
            .map(str::to_owned),
    })
}

/// Reads `prompt`: space-separated values, `none` only alone, unknown values
/// refused.
fn prompt(raw: Option<&str>) -> Result<Prompt, AuthorizeError> {
    let Some(raw) = raw else {
        return Ok(Prompt::Default);
    };
    let mut out = Prompt::Default;
    let values: Vec<&str> = raw.split(' ').filter(|v| !v.is_empty()).collect();
    for v in &values {
        match *v {
            "none" if values.len() == 1 => out = Prompt::None,
            "none" => {
                return Err(AuthorizeError::InvalidRequest(
                    "prompt=none cannot be combined with other values",
                ));
            }
            "login" => out = Prompt::Login,
            "consent" | "select_account" => {}
            _ => {
                return Err(AuthorizeError::InvalidRequest(
                    "prompt has an unknown value",
                ));
            }
        }
    }
    Ok(out)
}

/// The S256 challenge: required for public clients and those with
/// `require_pkce`; `plain` (or a missing method, which means plain) refused.
fn pkce_challenge(params: &Params, client: &Client) -> Result<Option<String>, AuthorizeError> {
    match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (Some(c), Some("S256")) if pkce::valid_challenge(c) => Ok(Some(c.to_owned())),
        (Some(_), Some("S256")) => Err(AuthorizeError::InvalidRequest(
            "code_challenge is not a valid S256 challenge",
        )),
        (Some(_), _) | (None, Some(_)) => Err(AuthorizeError::InvalidRequest(
            "code_challenge_method must be S256",
        )),
        (None, None) if client.public || client.require_pkce => {
            Err(AuthorizeError::InvalidRequest(
                "code_challenge with code_challenge_method=S256 is required",
            ))
        }
        (None, None) => Ok(None),
    }
}

/// The scope a code grants: the requested API scopes (all of them when `scope`
/// was absent) that the client may have and the user's roles grant, plus the
/// OpenID Connect scopes that were requested (`offline_access` only for clients
/// with refresh tokens).
pub fn granted_scope(req: &AuthRequest, role_grants: &[String]) -> Vec<String> {
    let api = |s: &String| req.allowed.contains(s) && role_grants.contains(s);
    match &req.scope {
        None => req.allowed.iter().filter(|s| api(s)).cloned().collect(),
        Some(requested) => {
            let mut out: Vec<String> = Vec::new();
            for s in requested {
                let oidc = matches!(s.as_str(), "openid" | "profile" | "email")
                    || (s == "offline_access" && req.offline);
                if (oidc || api(s)) && !out.contains(s) {
                    out.push(s.clone());
                }
            }
            out
        }
    }
}

/// Parameters that change what the request means but that the issuer does
/// not implement are refused, never ignored: a client asking for
/// `response_mode=form_post` or a signed request object (`request`,
/// `request_uri`) would otherwise get a different protocol than it asked
/// for (OpenID Connect Core §3.1.2.6; discovery says they are unsupported).
fn unsupported(params: &Params) -> Result<(), AuthorizeError> {
    let refuse = |code, description| Err(AuthorizeError::NotSupported { code, description });
    match params.get("response_mode") {
        None | Some("query") => {}
        Some(_) => {
            return refuse("invalid_request", "response_mode: only query is supported");
        }
    }
    if params.get("request").is_some() {
        return refuse(
            "request_not_supported",
            "request objects (the request parameter) are not supported",
        );
    }
    if params.get("request_uri").is_some() {
        return refuse(
            "request_uri_not_supported",
            "the request_uri parameter is not supported",
        );
    }
    if params.get("registration").is_some() {
        return refuse(
            "registration_not_supported",
            "the registration parameter is not supported",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(scope: Option<&str>) -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            client_name: "c".into(),
            target: Target {
                redirect_uri: "http://x/cb".into(),
                state: None,
            },
            nonce: None,
            scope: scope.map(|s| s.split(' ').map(str::to_owned).collect()),
            resource: Some("https://api".into()),
            allowed: vec!["read".into(), "write".into()],
            code_challenge: None,
            organization: None,
            offline: false,
            prompt: Prompt::Default,
            max_age: None,
            login_hint: None,
        }
    }

    #[test]
    fn prompt_values_are_read_and_none_stands_alone() {
        assert_eq!(prompt(None), Ok(Prompt::Default));
        assert_eq!(prompt(Some("none")), Ok(Prompt::None));
        assert_eq!(prompt(Some("login consent")), Ok(Prompt::Login));
        assert_eq!(prompt(Some("select_account")), Ok(Prompt::Default));
        assert!(prompt(Some("none login")).is_err());
        assert!(prompt(Some("bogus")).is_err());
    }

    #[test]
    fn scopes_are_requested_and_allowed_and_granted_by_roles() {
        let roles = vec!["read".to_owned(), "admin".to_owned()];
        assert_eq!(granted_scope(&req(None), &roles), ["read"]);
        assert_eq!(
            granted_scope(&req(Some("openid write read admin offline_access")), &roles),
            ["openid", "read"]
        );
        assert!(granted_scope(&req(Some("write")), &roles).is_empty());
    }

    #[test]
    fn repeated_parameters_are_noticed() {
        let p = Params::parse(b"a=1&b=&a=2");
        assert!(p.malformed);
        assert_eq!(p.get("b"), None);
        assert!(!Params::parse(b"a=1&b=2").malformed);
        assert!(Params::parse(b"client_id=web%00x").malformed);
        assert!(Params::parse(b"a%00=1").malformed);
    }
}
