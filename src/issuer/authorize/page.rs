//! The hosted pages, rendered on the server as plain HTML forms (no
//! JavaScript): the login form, the organization chooser, error pages and the
//! signed-out page. Every interpolated value is HTML-escaped; every page is
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

/// The page shown after logout when there is nowhere to return to.
pub fn signed_out() -> String {
    layout("Signed out", "<h1>You are signed out</h1>")
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
    }
}
