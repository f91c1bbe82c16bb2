//! The hosted pages, rendered on the server as plain HTML forms (no
//! JavaScript): the login form, the organization chooser, the logout
//! confirmation, error pages and the signed-out page. Every interpolated value is HTML-escaped; every page is
//! uncacheable and may not be framed.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
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

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>body{{font-family:sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;margin:.4rem 0}}\
         .error{{color:#a00}}</style></head><body>{body}</body></html>\n",
        escape(title)
    )
}

/// The email and password form of login transaction `txn`.
pub fn login_form(txn: &str, csrf: &str, client: &str, email: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>to continue to {client}</p>{error}\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"txn\" value=\"{txn}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            client = escape(client),
            txn = escape(txn),
            csrf = escape(csrf),
            email = escape(email),
        ),
    )
}

/// The organization chooser of login transaction `txn`: one radio button per
/// `(id, name)`.
pub fn org_chooser(txn: &str, csrf: &str, orgs: &[(String, String)]) -> String {
    let options: String = orgs
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<label><input type=\"radio\" name=\"organization\" value=\"{}\"{}> {}</label>",
                escape(id),
                if i == 0 { " checked" } else { "" },
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
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">{options}\
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
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {source}; frame-ancestors 'none'"
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            resp.headers_mut().insert("content-security-policy", v);
        }
    }
    resp
}

/// An HTML response that no cache stores and no other site frames.
pub fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_values_are_escaped() {
        let page = login_form("t\"x", "c", "<script>", "a'b@c", Some("&"));
        assert!(page.contains("value=\"t&quot;x\""));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("a&#39;b@c"));
        assert!(!page.contains("<script>"));
        let page = logout_confirmation("c\"1", &[("state", "<x>")]);
        assert!(page.contains("name=\"csrf\" value=\"c&quot;1\""));
        assert!(page.contains("name=\"state\" value=\"&lt;x&gt;\""));
    }

    #[test]
    fn forms_may_redirect_to_their_target_only() {
        assert_eq!(
            form_target_source("https://app.test:8443/cb?x=1").as_deref(),
            Some("https://app.test:8443")
        );
        assert_eq!(
            form_target_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(form_target_source("not a uri"), None);
        assert_eq!(
            form_target_source("https://user:pw@app.test/cb").as_deref(),
            Some("https://app.test")
        );
        assert_eq!(form_target_source("https://app.test;x/cb"), None);
        let resp = html_with_form_target(
            StatusCode::OK,
            String::new(),
            Some("http://127.0.0.1:3000/cb"),
        );
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:3000;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        let resp = html_with_form_target(StatusCode::OK, String::new(), None);
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("form-action 'self';"), "{csp}");
    }
}
