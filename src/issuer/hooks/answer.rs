//! A blocking hook's answer: `{"allow": true, "claims": {…}}` (claims
//! optional) or `{"allow": false, "reason": "…"}`. Anything else, `allow`
//! missing or not a boolean, `claims` not an object, `reason` not a string,
//! is no answer (the call failed). Unknown members are ignored. The reason
//! is made plain text of bounded length before anyone sees it ([`Reason`]);
//! reserved claims are dropped ([`AddedClaims::merge`]).

use http::Uri;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::issuer::events::shown;
use crate::issuer::reserved::hook_may_set;

/// The longest reason shown to a caller, in characters; a longer one is cut
/// and ends with `…`.
pub const MAX_REASON_CHARS: usize = 200;

/// What a denial says when the hook gave no reason (or only characters that
/// are dropped).
const DEFAULT_REASON: &str = "the request was denied";

/// A hook's decision.
#[derive(Debug, PartialEq)]
pub(super) enum Answer {
    Allow(Map<String, Value>),
    Deny(Reason),
}

/// A hook's reason for a denial, as the caller sees it: one line of plain
/// text, at most [`MAX_REASON_CHARS`] characters, without control or
/// bidirectional-formatting characters (so that it cannot forge lines in a
/// terminal or a log, nor reorder what is shown around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

/// Claims hooks add to an access token: never one of the reserved claims.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct AddedClaims(Map<String, Value>);

/// The answer as sent.
#[derive(Deserialize)]
struct Wire {
    allow: bool,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    #[serde(default)]
    reason: Option<String>,
}

// === impl Answer ===

impl Answer {
    /// Reads an answer body.
    pub(super) fn parse(body: &[u8]) -> Result<Answer, serde_json::Error> {
        let value: Value = serde_json::from_slice(body)?;
        // A derived struct would also take `[true]`: only an object is an
        // answer.
        if !value.is_object() {
            return Err(serde::de::Error::custom("the answer is not a JSON object"));
        }
        let wire: Wire = serde_json::from_value(value)?;
        Ok(match wire.allow {
            true => Answer::Allow(wire.claims.unwrap_or_default()),
            false => Answer::Deny(Reason::new(wire.reason.as_deref().unwrap_or(""))),
        })
    }
}

// === impl Reason ===

impl Reason {
    /// `text` made safe to show: control and bidirectional-formatting
    /// characters become spaces, runs of white space one space, the ends
    /// trimmed, the length capped; nothing left gives a fixed phrase.
    pub fn new(text: &str) -> Reason {
        let mut out = String::with_capacity(text.len().min(4 * MAX_REASON_CHARS));
        let mut count = 0;
        let mut space = false;
        for c in text.chars() {
            let c = match c.is_control() || is_bidi_format(c) {
                true => ' ',
                false => c,
            };
            if c.is_whitespace() {
                space = !out.is_empty();
                continue;
            }
            if count + usize::from(space) >= MAX_REASON_CHARS {
                out.push('…');
                return Reason(out);
            }
            if space {
                out.push(' ');
                count += 1;
                space = false;
            }
            out.push(c);
            count += 1;
        }
        match out.is_empty() {
            true => Reason(DEFAULT_REASON.to_owned()),
            false => Reason(out),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unicode's bidirectional embedding, override and isolate controls, and the
/// marks (format characters that `char::is_control` does not cover).
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

// === impl AddedClaims ===

impl AddedClaims {
    /// Adds `claims` from the hook at `hook` (for the log), over what earlier
    /// hooks added. Reserved claims are dropped and their names logged.
    pub(super) fn merge(&mut self, claims: Map<String, Value>, event: &str, hook: &Uri) {
        let mut ignored: Vec<String> = Vec::new();
        for (name, value) in claims {
            match hook_may_set(&name) {
                true => {
                    self.0.insert(name, value);
                }
                false => ignored.push(name),
            }
        }
        if !ignored.is_empty() {
            // The names are the hook's own words: quoted by the formatter,
            // and reserved names are short, known ones.
            tracing::warn!(hook = %shown(hook), event, ignored = ?ignored, "Blocking hook tried to set reserved claims; ignored");
        }
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The claims, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Answer, serde_json::Error> {
        Answer::parse(v.to_string().as_bytes())
    }

    #[test]
    fn answers_allow_deny_or_are_no_answer() {
        assert_eq!(
            parse(json!({"allow": true})).unwrap(),
            Answer::Allow(Map::new())
        );
        let claims = json!({"plan": "gold", "n": 3});
        assert_eq!(
            parse(json!({"allow": true, "claims": claims, "extra": 1})).unwrap(),
            Answer::Allow(claims.as_object().unwrap().clone())
        );
        assert_eq!(
            parse(json!({"allow": false, "reason": "over quota"})).unwrap(),
            Answer::Deny(Reason("over quota".into()))
        );
        assert_eq!(
            parse(json!({"allow": false})).unwrap(),
            Answer::Deny(Reason(DEFAULT_REASON.into()))
        );
        for bad in [
            json!({}),
            json!({"allow": "yes"}),
            json!({"allow": 1}),
            json!({"allow": true, "claims": ["a"]}),
            json!({"allow": false, "reason": 7}),
            json!([true]),
            json!(null),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert!(Answer::parse(b"<html>ok</html>").is_err());
        assert!(Answer::parse(b"").is_err());
    }

    #[test]
    fn reasons_are_one_line_of_plain_text_and_bounded() {
        assert_eq!(
            Reason::new("  line one\r\nline\ttwo \u{1b}[31mred  ").as_str(),
            "line one line two [31mred"
        );
        assert_eq!(Reason::new("abc\u{202e}fed\u{2066}x").as_str(), "abc fed x");
        assert_eq!(Reason::new("\n\u{7}\t").as_str(), DEFAULT_REASON);
        let long = "é".repeat(1000);
        let cut = Reason::new(&long);
        assert_eq!(cut.as_str().chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.as_str().ends_with('…'));
        let exact = "x".repeat(MAX_REASON_CHARS);
        assert_eq!(Reason::new(&exact).as_str(), exact);
    }

    #[test]
    fn reserved_claims_are_never_added() {
        let mut added = AddedClaims::default();
        let hook = Uri::from_static("https://hooks.example.test/pre-issue");
        let first = json!({"plan": "gold", "sub": "someone-else", "roles": ["admin"]});
        added.merge(first.as_object().unwrap().clone(), "token.pre_issue", &hook);
        let second = json!({"plan": "platinum", "exp": 9999999999_i64, "tier": 2});
        added.merge(
            second.as_object().unwrap().clone(),
            "token.pre_issue",
            &hook,
        );
        let names: Vec<&String> = added.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["plan", "tier"]);
        assert_eq!(added.0["plan"], "platinum", "a later hook wins");
    }
}
