//! The hosted pages, rendered on the server as plain HTML forms (no
//! JavaScript): the login form, the organization chooser, the logout
//! confirmation, error pages and the signed-out page. Every interpolated
//! value is HTML-escaped; every page is uncacheable, may not be framed and,
//! by its Content-Security-Policy, loads nothing but its own stylesheet
//! (admitted by hash, never `'unsafe-inline'`): no script, no third-party
//! resource. The forms work with the keyboard alone and every field has a
//! label.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, PRAGMA, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Escapes text for an HTML element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages' one stylesheet, inline: the CSP admits exactly this text, by
/// its hash ([`style_source`]), and nothing else.
const STYLE: &str = "body{font-family:sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}\
label,input,button{display:block;width:100%;margin:.4rem 0}\
fieldset{border:0;margin:0;padding:0}legend{font-weight:bold}\
label.choice{display:flex;gap:.5rem;align-items:center}label.choice input{width:auto;margin:0}\
:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}\
.error{color:#a00}";

/// The CSP source of [`STYLE`]: `'sha256-…'` of its bytes, as browsers hash
/// the text of a `<style>` element.
fn style_source() -> &'static str {
    static SOURCE: LazyLock<String> = LazyLock::new(|| {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
        format!("'sha256-{}'", STANDARD.encode(digest.as_ref()))
    });
    &SOURCE
}

/// The Content-Security-Policy of every page: nothing may load but the
/// stylesheet above (no script, image, font, frame or connection at all),
/// forms may post to this origin and, when a form's answer redirects to a
/// client, to `form_target` (a CSP source, see [`form_target_source`]), no
/// other site may frame the page, and no `<base>` may re-target its links.
fn csp(form_target: Option<&str>) -> String {
    let target = form_target.map(|t| format!(" {t}")).unwrap_or_default();
    format!(
        "default-src 'none'; style-src {}; form-action 'self'{target}; \
         frame-ancestors 'none'; base-uri 'none'",
        style_source()
    )
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// The email and password form of login transaction `txn`. The first empty
/// field has the focus (the password when the email is filled in); a message
/// is announced (`role="alert"`) and describes both fields.
pub fn login_form(txn: &str, csrf: &str, client: &str, email: &str, error: Option<&str>) -> String {
    let (error, described) = match error {
        Some(e) => (
            format!(
                "<p id=\"error\" class=\"error\" role=\"alert\">{}</p>",
                escape(e)
            ),
            " aria-describedby=\"error\"",
        ),
        None => (String::new(), ""),
    };
    let (email_focus, password_focus) = match email.is_empty() {
        true => (" autofocus", ""),
        false => ("", " autofocus"),
    };
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>to continue to {client}</p>{error}\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"txn\" value=\"{txn}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" \
             required{email_focus}{described} value=\"{email}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required{password_focus}{described}>\
             <button type=\"submit\">Sign in</button></form>",
            client = escape(client),
            txn = escape(txn),
            csrf = escape(csrf),
            email = escape(email),
        ),
    )
}

/// The organization chooser of login transaction `txn`: one radio button per
/// `(id, name)`, in a group named by its legend; the first is chosen and has
/// the focus (the arrow keys move the choice, Enter submits).
pub fn org_chooser(txn: &str, csrf: &str, orgs: &[(String, String)]) -> String {
    let options: String = orgs
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<label class=\"choice\"><input type=\"radio\" name=\"organization\" \
                 value=\"{}\"{}> {}</label>",
                escape(id),
                if i == 0 { " checked autofocus" } else { "" },
                escape(name)
            )
        })
        .collect();
    layout(
        "Choose an organization",
        &format!(
            "<h1>Choose an organization</h1>\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"txn\" value=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <fieldset><legend>Organization</legend>{options}</fieldset>\
             <button type=\"submit\">Continue</button></form>",
            escape(txn),
            escape(csrf),
        ),
    )
}

/// A page explaining why the request cannot go on.
pub fn error_page(message: &str) -> String {
    layout(
        "Sign-in error",
        &format!(
            "<h1>Sign-in error</h1><p class=\"error\">{}</p>",
            escape(message)
        ),
    )
}

/// The logout confirmation: a form that POSTs `csrf` and the `carried`
/// parameters of the logout request back to `/logout`.
pub fn logout_confirmation(csrf: &str, carried: &[(&str, &str)]) -> String {
    let fields: String = carried
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    layout(
        "Sign out",
        &format!(
            "<h1>Sign out?</h1><p>You will be signed out of every application that \
             uses this sign-in.</p>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}\
             <button type=\"submit\">Sign out</button></form>",
            escape(csrf),
        ),
    )
}

/// The page shown after logout when there is nowhere to return to.
pub fn signed_out() -> String {
    layout("Signed out", "<h1>You are signed out</h1>")
}

/// The CSP source that lets a form's answer redirect to `uri`: its origin
/// (`https://app.example.test:8443`), or its scheme (`com.example.app:`) for
/// a URI without an authority. `None` when `uri` cannot be one safely.
pub fn form_target_source(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return None;
    }
    let source = match rest.strip_prefix("//") {
        Some(after) => {
            let authority = after.split(['/', '?', '#']).next()?;
            // Without any user information.
            let host = authority.rsplit('@').next()?;
            if host.is_empty() {
                return None;
            }
            format!("{scheme}://{host}")
        }
        None => format!("{scheme}:"),
    };
    let safe = source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-.:/[]_~".contains(&b));
    safe.then_some(source)
}

/// As [`html`], for a page whose form's answer redirects to `target` (a
/// client's redirect URI): CSP `form-action` lets the redirect through as
/// well as the post to this origin (browsers apply `form-action` to the
/// redirects after a submission).
pub fn html_with_form_target(
    status: StatusCode,
    body: String,
    target: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut resp = html(status, body);
    if let Some(source) = target.and_then(form_target_source) {
        if let Ok(v) = HeaderValue::from_str(&csp(Some(&source))) {
            resp.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
        }
    }
    resp
}

/// An HTML response that no cache stores, no other site frames, and that
/// loads nothing but its own inline stylesheet ([`csp`]); the browser may
/// not guess another content type and sends no `Referer` from it (the page's
/// URL carries the login transaction).
pub fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
        HeaderValue::from_str(&csp(None))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
    });
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

#[cfg(test)]
mod tests;
