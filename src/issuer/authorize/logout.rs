//! `/logout` (OIDC RP-Initiated Logout 1.0), which changes nothing on a GET.
//!
//! The session cookie is `SameSite=Lax`, so any site can make a browser GET
//! `/logout` with it; a GET therefore only shows a confirmation page, whose
//! form POSTs back with a CSRF token bound to the session (derived from the
//! session's identifier, which only the browser holds). Only that POST ends
//! the session.
//!
//! An RP-initiated logout with a valid `id_token_hint` is confirmed too: the
//! specification says the OP SHOULD ask, and a hint proves little (ID tokens
//! travel in URLs and logs, and an expired one is accepted as a hint), so any
//! site holding an old ID token of the user could sign them out otherwise.
//! What the hint does is name the client whose `post_logout_redirect_uri` is
//! followed after the confirmation. Without a session there is nothing to
//! end and nothing to confirm: the browser goes straight back (or sees the
//! signed-out page). A POST without the CSRF field is an RP-initiated logout
//! sent as a form, and is treated like the GET.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::csrf;
use super::login::{read_form, server_error, unreadable_form};
use super::page;
use super::request::Params;
use super::{Flow, SESSION_COOKIE, add_cookie, redirect, with_query};
use crate::issuer::body::{BodyError, RequestBody};
use crate::issuer::token::token_hash;

/// The parameters a logout carries through its confirmation.
const CARRIED: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
];

/// The CSRF token of the logout confirmation for session `session_id`: a hash
/// of the identifier with a label of its own (the store keys sessions by a
/// plain hash of it, which this never equals), so only a page shown to the
/// session's own browser carries it.
fn logout_csrf(session_id: &str) -> String {
    token_hash(&format!("portcullis logout confirmation\0{session_id}"))
}

// === impl Flow ===

impl Flow {
    /// `GET` or `POST /logout`.
    pub(super) async fn logout(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        let query = Params::parse(req.uri().query().unwrap_or_default().as_bytes());
        let post = req.method() == Method::POST;
        let headers = req.headers().clone();
        // A POST that is not a readable form is an RP-initiated logout with
        // its parameters in the query; one whose form stopped arriving is
        // answered, as its connection cannot go on.
        let params = match post {
            true => match read_form(req).await {
                Ok((form, _)) => form,
                Err(BodyError::Stalled) => return unreadable_form(BodyError::Stalled),
                Err(BodyError::MediaType | BodyError::Unreadable) => query,
            },
            false => query,
        };
        let cookie = csrf::cookie(&headers, &self.jar.name(SESSION_COOKIE));
        let session = match cookie {
            Some(id) => match self.state.session(id, self.clock.now_unix()).await {
                Ok(found) => found.map(|_| id),
                Err(e) => return server_error(&e),
            },
            None => None,
        };
        let confirmed = match (post, params.get("csrf")) {
            (true, Some(token)) => Some(token),
            _ => None,
        };
        let back = self.logout_target(&params).await;
        match (session, confirmed) {
            // Nothing to end: no page to confirm, go back at once.
            (None, _) => {
                let mut resp = match back {
                    Ok(target) => self.signed_out(target.as_deref()),
                    Err(message) => page::html(StatusCode::BAD_REQUEST, page::error_page(message)),
                };
                if cookie.is_some() {
                    add_cookie(&mut resp, &self.jar.set(SESSION_COOKIE, "", "Lax", 0));
                }
                resp
            }
            (Some(id), None) => match back {
                Ok(target) => self.confirm_page(id, &params, target.as_deref()),
                Err(message) => page::html(StatusCode::BAD_REQUEST, page::error_page(message)),
            },
            (Some(id), Some(token)) => {
                if !csrf::ct_eq(&logout_csrf(id), token) {
                    tracing::debug!(reason = "csrf", "Logout refused");
                    return page::html(
                        StatusCode::FORBIDDEN,
                        page::error_page("the sign-out could not be verified; nothing changed"),
                    );
                }
                if let Err(e) = self.state.end_session(id).await {
                    return server_error(&e);
                }
                tracing::debug!("User signed out");
                // The user asked to sign out: they are, even if the return
                // address was tampered with on the way.
                let mut resp = match back {
                    Ok(target) => self.signed_out(target.as_deref()),
                    Err(message) => page::html(StatusCode::BAD_REQUEST, page::error_page(message)),
                };
                add_cookie(&mut resp, &self.jar.set(SESSION_COOKIE, "", "Lax", 0));
                resp
            }
        }
    }

    /// Where the browser goes after the logout: `post_logout_redirect_uri`
    /// (with `state`) when it is one of the client's redirect URIs, the
    /// client being named by `client_id` or by the audience of
    /// `id_token_hint` (an ID token of ours, expired or not); `None` for the
    /// signed-out page. A refused hint or a repeated parameter is an error.
    async fn logout_target(&self, params: &Params) -> Result<Option<String>, &'static str> {
        let client_id = self.logout_client(params)?;
        let (Some(uri), Some(client_id)) = (params.get("post_logout_redirect_uri"), client_id)
        else {
            return Ok(None);
        };
        let Ok(Some(client)) = self.store.get_client(&client_id).await else {
            return Ok(None);
        };
        if !client.redirect_uris.iter().any(|r| r == uri) {
            return Ok(None);
        }
        Ok(Some(match params.get("state") {
            Some(state) => with_query(uri, &[("state", state)]),
            None => uri.to_owned(),
        }))
    }

    /// The end of a logout: back to `target`, or the signed-out page.
    fn signed_out(&self, target: Option<&str>) -> Response<Full<Bytes>> {
        match target {
            Some(uri) => redirect(uri),
            None => page::html(StatusCode::OK, page::signed_out()),
        }
    }

    /// The confirmation page for session `id`, carrying the request's
    /// parameters into its form; its CSP lets the form's answer go on to
    /// `target`.
    fn confirm_page(
        &self,
        id: &str,
        params: &Params,
        target: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let carried: Vec<(&str, &str)> = CARRIED
            .iter()
            .filter_map(|name| params.get(name).map(|v| (*name, v)))
            .collect();
        let body = page::logout_confirmation(&logout_csrf(id), &carried);
        page::html_with_form_target(StatusCode::OK, body, target)
    }

    /// The client a logout request names: `client_id`, or the audience of
    /// `id_token_hint`; both must agree when both are sent. A hint that is not
    /// an ID token of ours is refused.
    fn logout_client(&self, params: &Params) -> Result<Option<String>, &'static str> {
        if params.malformed {
            return Err("the logout request repeats a parameter or holds a NUL character");
        }
        let named = params.get("client_id").map(str::to_owned);
        let Some(hint) = params.get("id_token_hint") else {
            return Ok(named);
        };
        let claims = self
            .own_tokens()
            .signed(hint)
            // Access tokens are `at+jwt` and carry `client_id`; ID tokens neither.
            .filter(|t| !t.access && !t.claims.contains_key("client_id"))
            .map(|t| t.claims)
            .ok_or("the id_token_hint is not an ID token of this issuer")?;
        let aud = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => Some(a.clone()),
            Some(serde_json::Value::Array(a)) if a.len() == 1 => a[0].as_str().map(str::to_owned),
            _ => None,
        };
        let aud = aud.ok_or("the id_token_hint is not an ID token of this issuer")?;
        match named {
            Some(c) if c != aud => Err("client_id does not match the id_token_hint"),
            _ => Ok(Some(aud)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_token_is_bound_to_the_session_and_is_not_its_key() {
        let a = logout_csrf("session-a");
        assert_eq!(a, logout_csrf("session-a"));
        assert_ne!(a, logout_csrf("session-b"));
        // The store keys sessions by `token_hash(id)`: the page never shows it.
        assert_ne!(a, token_hash("session-a"));
    }
}
