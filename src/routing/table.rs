//! First-match route lookup over compiled patterns, in file order.

use http::Method;

use super::normalize::NormalPath;
use crate::config::{PathPattern, PatternSegment, RouteConfig};

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The first route whose pattern and methods match.
    Found(usize),
    /// Some pattern matched, but none of those routes allows the method.
    MethodNotAllowed(Vec<Method>),
    /// No pattern matched.
    NotFound,
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: PathPattern,
    methods: Option<Vec<Method>>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles the routes, keeping file order.
    pub fn new(routes: &[RouteConfig]) -> RouteTable {
        RouteTable {
            entries: routes
                .iter()
                .map(|r| Entry {
                    pattern: r.pattern.clone(),
                    methods: r.methods.clone(),
                })
                .collect(),
        }
    }

    /// Finds the first route whose pattern and methods match.
    pub fn lookup(&self, method: &Method, path: &NormalPath) -> RouteMatch {
        let mut allow: Option<Vec<Method>> = None;
        for (i, e) in self.entries.iter().enumerate() {
            if !matches(&e.pattern, path) {
                continue;
            }
            match &e.methods {
                None => return RouteMatch::Found(i),
                Some(m) if allows(m, method) => return RouteMatch::Found(i),
                Some(m) => {
                    let allow = allow.get_or_insert_with(Vec::new);
                    for x in m {
                        if !allow.contains(x) {
                            allow.push(x.clone());
                        }
                    }
                }
            }
        }
        match allow {
            Some(a) => RouteMatch::MethodNotAllowed(a),
            None => RouteMatch::NotFound,
        }
    }
}

/// Whether a route's `methods` take `method`. A route that takes GET takes
/// HEAD too: upstreams answer a HEAD with their GET handler (RFC 9110 §9.3.2),
/// so a HEAD judged by some later, weaker route would run that handler
/// unchecked.
fn allows(methods: &[Method], method: &Method) -> bool {
    methods.contains(method) || (*method == Method::HEAD && methods.contains(&Method::GET))
}

/// Whether `pattern` matches the whole `path` (a trailing `/*` also matches the
/// prefix itself and anything below it).
pub fn matches(pattern: &PathPattern, path: &NormalPath) -> bool {
    let n = pattern.segments.len();
    if path.len() < n || (!pattern.wildcard && path.len() != n) {
        return false;
    }
    pattern
        .segments
        .iter()
        .enumerate()
        .all(|(i, seg)| match seg {
            PatternSegment::Literal(l) => path.segment(i) == Some(l.as_str()),
            PatternSegment::Param(_) => true,
        })
}

/// The index of parameter `name` among the path's segments.
pub fn param_position(pattern: &PathPattern, name: &str) -> Option<usize> {
    pattern
        .segments
        .iter()
        .position(|s| matches!(s, PatternSegment::Param(p) if p == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::ParseValue;
    use crate::routing::normalize;

    fn table(specs: &[(&str, Option<&[&str]>)]) -> RouteTable {
        RouteTable {
            entries: specs
                .iter()
                .map(|(p, m)| Entry {
                    pattern: PathPattern::parse_value(p).expect("pattern"),
                    methods: m.map(|m| {
                        m.iter()
                            .map(|x| Method::from_bytes(x.as_bytes()).expect("method"))
                            .collect()
                    }),
                })
                .collect(),
        }
    }

    fn look(t: &RouteTable, method: Method, path: &str) -> RouteMatch {
        t.lookup(
            &method,
            &normalize(&path.parse().expect("uri"), false).expect("path"),
        )
    }

    #[test]
    fn wildcard_matches_prefix_and_below() {
        let t = table(&[("/public/*", None)]);
        assert_eq!(look(&t, Method::GET, "/public"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::GET, "/public/"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::GET, "/public/a/b"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::GET, "/publicity"), RouteMatch::NotFound);
        assert_eq!(look(&t, Method::GET, "/"), RouteMatch::NotFound);
    }

    #[test]
    fn params_match_one_segment() {
        let t = table(&[("/orgs/{org}/items", None)]);
        assert_eq!(
            look(&t, Method::GET, "/orgs/acme/items"),
            RouteMatch::Found(0)
        );
        assert_eq!(look(&t, Method::GET, "/orgs/items"), RouteMatch::NotFound);
        assert_eq!(
            look(&t, Method::GET, "/orgs/a/b/items"),
            RouteMatch::NotFound
        );
        assert_eq!(
            look(&t, Method::GET, "/orgs/acme/items/1"),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn first_match_in_order_wins_with_methods() {
        let t = table(&[
            ("/a/*", Some(&["GET", "HEAD"])),
            ("/a/b", None),
            ("/*", Some(&["GET"])),
        ]);
        assert_eq!(look(&t, Method::GET, "/a/b"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::POST, "/a/b"), RouteMatch::Found(1));
        assert_eq!(look(&t, Method::GET, "/zzz"), RouteMatch::Found(2));
        assert_eq!(
            look(&t, Method::DELETE, "/a/c"),
            RouteMatch::MethodNotAllowed(vec![Method::GET, Method::HEAD])
        );
    }

    #[test]
    fn a_route_that_takes_get_takes_head() {
        let t = table(&[("/reports/*", Some(&["GET"])), ("/*", None)]);
        assert_eq!(look(&t, Method::HEAD, "/reports/q3"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::POST, "/reports/q3"), RouteMatch::Found(1));
        let t = table(&[("/reports/*", Some(&["GET"]))]);
        assert_eq!(
            look(&t, Method::DELETE, "/reports/q3"),
            RouteMatch::MethodNotAllowed(vec![Method::GET])
        );
        let t = table(&[("/reports/*", Some(&["POST"])), ("/*", None)]);
        assert_eq!(look(&t, Method::HEAD, "/reports/q3"), RouteMatch::Found(1));
    }

    #[test]
    fn matching_is_case_sensitive_and_decoded() {
        let t = table(&[("/Items/caf\u{e9}", None)]);
        assert_eq!(
            look(&t, Method::GET, "/items/caf%C3%A9"),
            RouteMatch::NotFound
        );
        assert_eq!(
            look(&t, Method::GET, "/Items/caf%C3%A9"),
            RouteMatch::Found(0)
        );
        assert_eq!(
            look(&t, Method::GET, "//Items//caf%c3%a9"),
            RouteMatch::Found(0)
        );
    }

    #[test]
    fn root_pattern() {
        let t = table(&[("/", None)]);
        assert_eq!(look(&t, Method::GET, "/"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::GET, "/x"), RouteMatch::NotFound);
        let t = table(&[("/*", None)]);
        assert_eq!(look(&t, Method::GET, "/"), RouteMatch::Found(0));
        assert_eq!(look(&t, Method::GET, "/x/y"), RouteMatch::Found(0));
    }
}
