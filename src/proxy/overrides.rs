//! Method overrides: the `X-HTTP-Method-Override`, `X-HTTP-Method` and
//! `X-Method-Override` headers and the `_method` query parameter, with which
//! frameworks (Rails, Symfony, Laravel, Express's `method-override`, ASP.NET)
//! turn a POST into another method. What the gateway honours, and how it reads
//! them; removing them on the way upstream is [`super::headers`]' job.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The method-override headers a route may opt in to (`method_override: true`).
pub static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The methods an override may name: what the frameworks that honour one turn a
/// POST into (HEAD, OPTIONS, CONNECT, TRACE and custom methods have other
/// semantics in front of and behind the upstream).
pub const TARGETS: [Method; 4] = [Method::GET, Method::PUT, Method::PATCH, Method::DELETE];

/// Why a method override could not be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadOverride {
    /// Malformed, a list, a repeated `_method`, or sources that disagree.
    #[error("the method override is invalid or ambiguous")]
    Ambiguous,
    /// On a request other than a POST, or naming a method outside [`TARGETS`].
    #[error("the method override is not allowed")]
    NotAllowed,
}

/// The method a request on an opted-in route asks for, from the override
/// headers and the `_method` query parameter (see [`is_method_param`]);
/// `None` without any. Values are upper-cased, as the frameworks do. Several
/// lines, lists, a repeated `_method`, or sources that disagree are refused
/// (frameworks differ in which one they take); so is an override of anything
/// but a POST (Rails, Symfony, Laravel and Express honour it only there) or to
/// a method outside [`TARGETS`].
pub fn method_override(
    real: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Method>, BadOverride> {
    let mut found: Option<Method> = None;
    let mut agree = |m: Method| match &found {
        Some(prev) if *prev != m => Err(BadOverride::Ambiguous),
        _ => {
            found = Some(m);
            Ok(())
        }
    };
    for name in &METHOD_OVERRIDES {
        for v in headers.get_all(name) {
            let text = v.to_str().map_err(|_| BadOverride::Ambiguous)?.trim();
            agree(parse(text)?)?;
        }
    }
    let mut params = query.into_iter().flat_map(method_params);
    if let Some(value) = params.next() {
        if params.next().is_some() {
            return Err(BadOverride::Ambiguous);
        }
        agree(parse(&value)?)?;
    }
    match found {
        Some(m) if *real != Method::POST || !TARGETS.contains(&m) => Err(BadOverride::NotAllowed),
        found => Ok(found),
    }
}

fn parse(text: &str) -> Result<Method, BadOverride> {
    let upper = text.to_ascii_uppercase();
    Method::from_bytes(upper.as_bytes()).map_err(|_| BadOverride::Ambiguous)
}

/// Whether the query carries a `_method` parameter, in any spelling a framework
/// reads as one (see [`is_method_param`]).
pub fn has_method_param(query: Option<&str>) -> bool {
    query.is_some_and(|q| method_params(q).next().is_some())
}

/// The decoded values of every `_method` parameter of `query`.
fn method_params(query: &str) -> impl Iterator<Item = String> + '_ {
    // `;` separates parameters too for some parsers (older Rack, Python's cgi).
    query.split(['&', ';']).filter_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        is_method_param(&decode(name)).then(|| decode(value))
    })
}

/// Whether a decoded parameter name is `_method` to some framework: any letter
/// case, and as PHP reads names (leading spaces dropped; ` `, `.` and `[`
/// become `_`; `_method[x]` is an array under `_method`).
fn is_method_param(name: &str) -> bool {
    let name = name.trim_start_matches(' ');
    let base = match name.find('[') {
        Some(i) if name[i..].contains(']') => &name[..i],
        _ => name,
    };
    let canonical: String = base
        .chars()
        .map(|c| match c {
            ' ' | '.' | '[' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    canonical == "_method"
}

/// Form decoding: `+` is a space, `%XX` a byte (invalid escapes stay as they
/// are, as PHP and Rack leave them); not UTF-8 becomes replacement characters.
fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Writes the judged method into every method-override header the client sent,
/// so the upstream reads exactly the method the policy was checked against.
pub fn set_method_override(headers: &mut HeaderMap, method: &Method) {
    let Ok(value) = HeaderValue::from_str(method.as_str()) else {
        return;
    };
    for name in &METHOD_OVERRIDES {
        if headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn method_overrides_must_agree() {
        let post = &Method::POST;
        assert_eq!(method_override(post, &HeaderMap::new(), None), Ok(None));
        let h = map(&[("x-http-method-override", " delete ")]);
        assert_eq!(method_override(post, &h, None), Ok(Some(Method::DELETE)));
        let h = map(&[("x-http-method-override", "PUT"), ("x-http-method", "put")]);
        assert_eq!(method_override(post, &h, None), Ok(Some(Method::PUT)));
        let h = map(&[("x-http-method", "PATCH")]);
        assert_eq!(
            method_override(post, &h, Some("_method=patch")),
            Ok(Some(Method::PATCH))
        );
        for bad in [
            &[
                ("x-http-method-override", "PUT"),
                ("x-method-override", "DELETE"),
            ][..],
            &[
                ("x-http-method-override", "PUT"),
                ("x-http-method-override", "GET"),
            ][..],
            &[("x-http-method-override", "DELETE, GET")][..],
            &[("x-http-method-override", "")][..],
        ] {
            assert_eq!(
                method_override(post, &map(bad), None),
                Err(BadOverride::Ambiguous),
                "{bad:?}"
            );
        }
        let h = map(&[("x-http-method-override", "PUT")]);
        for q in [
            "_method=DELETE",
            "_method=PUT&_method=PUT",
            "_method=",
            "_method=%20PUT",
        ] {
            assert_eq!(
                method_override(post, &h, Some(q)),
                Err(BadOverride::Ambiguous),
                "{q}"
            );
        }
    }

    #[test]
    fn only_a_post_becomes_get_put_patch_or_delete() {
        for m in TARGETS {
            let h = map(&[("x-http-method-override", m.as_str())]);
            assert_eq!(method_override(&Method::POST, &h, None), Ok(Some(m)));
        }
        for target in [
            "HEAD", "OPTIONS", "CONNECT", "TRACE", "POST", "PROPFIND", "X",
        ] {
            let h = map(&[("x-http-method", target)]);
            assert_eq!(
                method_override(&Method::POST, &h, None),
                Err(BadOverride::NotAllowed),
                "{target}"
            );
        }
        for real in [Method::GET, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let h = map(&[("x-method-override", "DELETE")]);
            assert_eq!(
                method_override(&real, &h, None),
                Err(BadOverride::NotAllowed),
                "{real}"
            );
            assert_eq!(
                method_override(&real, &HeaderMap::new(), Some("_method=DELETE")),
                Err(BadOverride::NotAllowed),
                "{real}"
            );
        }
    }

    #[test]
    fn method_params_are_found_in_every_spelling() {
        for q in [
            "_method=DELETE",
            "a=1&_METHOD=DELETE",
            "a=1;_Method=DELETE",
            "%5Fmethod=DELETE",
            "%5fMETHOD=DELETE",
            "_method",
            "_method[]=DELETE",
            "_method[x]=DELETE",
            ".method=DELETE",
            "+_method=DELETE",
            "%20_method=DELETE",
            "[method=DELETE",
            "++_method=DELETE",
        ] {
            assert!(has_method_param(Some(q)), "{q}");
        }
        for q in [
            "method=DELETE",
            "x_method=DELETE",
            "_methods=1",
            "a=_method",
            "%255fmethod=1",
        ] {
            assert!(!has_method_param(Some(q)), "{q}");
        }
        assert!(!has_method_param(None));
    }

    #[test]
    fn the_judged_method_is_written_into_the_headers_sent() {
        let mut h = map(&[("x-http-method-override", "delete")]);
        set_method_override(&mut h, &Method::DELETE);
        assert_eq!(h["x-http-method-override"], "DELETE");
        assert!(!h.contains_key("x-http-method"));
    }
}
