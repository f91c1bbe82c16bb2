//! First-match route lookup over compiled patterns, in file order.

use std::collections::HashMap;

use foldhash::fast::RandomState;

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

/// The compiled route table: the routes in file order, and a segment trie over
/// their patterns, so that a lookup visits only the routes whose patterns can
/// match the path — the cost of a request does not grow with the number of
/// routes. The first route in file order whose pattern and methods match wins,
/// exactly as a scan of the list would decide.
#[derive(Debug, Clone)]
pub struct RouteTable {
    entries: Vec<Entry>,
    root: Node,
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: PathPattern,
    methods: Option<Vec<Method>>,
}

/// One position in the trie: the patterns that have consumed the same
/// segments so far.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Literal segments: a fast seeded hash (the keys are the configuration's;
    /// a request's segment is only looked up).
    literal: HashMap<Box<str>, Node, RandomState>,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends here.
    exact: Vec<usize>,
    /// Routes whose pattern ends here with a trailing `/*`: this path and
    /// everything below it.
    prefix: Vec<usize>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles the routes, keeping file order.
    pub fn new(routes: &[RouteConfig]) -> RouteTable {
        RouteTable::from_entries(
            routes
                .iter()
                .map(|r| Entry {
                    pattern: r.pattern.clone(),
                    methods: r.methods.clone(),
                })
                .collect(),
        )
    }

    fn from_entries(entries: Vec<Entry>) -> RouteTable {
        let mut root = Node::default();
        for (i, e) in entries.iter().enumerate() {
            let mut node = &mut root;
            for seg in &e.pattern.segments {
                node = match seg {
                    PatternSegment::Literal(l) => {
                        node.literal.entry(l.as_str().into()).or_default()
                    }
                    PatternSegment::Param(_) => node.param.get_or_insert_with(Box::default),
                };
            }
            match e.pattern.wildcard {
                true => node.prefix.push(i),
                false => node.exact.push(i),
            }
        }
        RouteTable { entries, root }
    }

    /// Finds the first route whose pattern and methods match.
    pub fn lookup(&self, method: &Method, path: &NormalPath) -> RouteMatch {
        let mut best = None;
        self.root.visit(path, 0, &mut |i| {
            if best.is_some_and(|b| b < i) {
                return;
            }
            let takes = match &self.entries[i].methods {
                None => true,
                Some(m) => allows(m, method),
            };
            if takes {
                best = Some(i);
            }
        });
        if let Some(i) = best {
            return RouteMatch::Found(i);
        }
        // No route takes the method: which methods would the matching ones take?
        let mut matching = Vec::new();
        self.root.visit(path, 0, &mut |i| matching.push(i));
        if matching.is_empty() {
            return RouteMatch::NotFound;
        }
        matching.sort_unstable();
        let mut allow: Vec<Method> = Vec::new();
        for i in matching {
            for m in self.entries[i].methods.iter().flatten() {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
        RouteMatch::MethodNotAllowed(allow)
    }
}

// === impl Node ===

impl Node {
    /// Calls `found` with every route whose pattern matches `path`, given that
    /// this node has consumed its first `depth` segments (in no set order).
    fn visit(&self, path: &NormalPath, depth: usize, found: &mut impl FnMut(usize)) {
        self.prefix.iter().for_each(|&i| found(i));
        let Some(segment) = path.segment(depth) else {
            self.exact.iter().for_each(|&i| found(i));
            return;
        };
        if let Some(next) = self.literal.get(segment) {
            next.visit(path, depth + 1, found);
        }
        if let Some(next) = &self.param {
            next.visit(path, depth + 1, found);
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
        RouteTable::from_entries(
            specs
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
        )
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

    /// The old first-match scan over the whole list: the trie must agree.
    fn scan(t: &RouteTable, method: &Method, path: &NormalPath) -> RouteMatch {
        let mut allow: Option<Vec<Method>> = None;
        for (i, e) in t.entries.iter().enumerate() {
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

    proptest::proptest! {
        #[test]
        fn the_trie_decides_as_a_scan_of_the_list_would(
            routes in proptest::collection::vec(
                (
                    proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "{p}"]), 0..4),
                    proptest::bool::ANY,
                    proptest::option::of(proptest::sample::subsequence(vec!["GET", "POST", "DELETE"], 1..3)),
                ),
                1..12,
            ),
            paths in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "d"]), 0..5),
                1..8,
            ),
        ) {
            let specs: Vec<(String, Option<Vec<&str>>)> = routes
                .iter()
                .map(|(segs, wild, methods)| {
                    let mut p = String::new();
                    for (k, s) in segs.iter().enumerate() {
                        p.push('/');
                        match *s {
                            "{p}" => p.push_str(&format!("{{p{k}}}")),
                            lit => p.push_str(lit),
                        }
                    }
                    match (*wild, p.is_empty()) {
                        (true, _) => p.push_str("/*"),
                        (false, true) => p.push('/'),
                        (false, false) => {}
                    }
                    (p, methods.clone())
                })
                .collect();
            let refs: Vec<(&str, Option<&[&str]>)> = specs
                .iter()
                .map(|(p, m)| (p.as_str(), m.as_deref()))
                .collect();
            let t = table(&refs);
            for segs in &paths {
                let text = format!("/{}", segs.join("/"));
                let path = normalize(&text.parse().expect("uri"), false).expect("path");
                for method in [Method::GET, Method::HEAD, Method::POST, Method::DELETE, Method::PUT] {
                    proptest::prop_assert_eq!(
                        t.lookup(&method, &path),
                        scan(&t, &method, &path),
                        "{} {} in {:?}", method, text, specs
                    );
                }
            }
        }
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
