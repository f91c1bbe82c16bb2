//! `${VAR}` and `${VAR:-default}` expansion, applied to the file's text before parsing.
//!
//! Comments are left alone (an unset variable named in a comment is not an error),
//! `$${` writes a literal `${`, and expansion never adds or removes lines, so the
//! line numbers of later errors stay true.

use super::error::ConfigError;

/// An expansion failure, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl EnvError {
    /// Attaches the file name.
    pub fn in_file(self, path: &std::path::Path) -> ConfigError {
        ConfigError::at(path, self.line, self.column, None, self.message)
    }
}

/// Replaces every `${VAR}` and `${VAR:-default}` outside comments.
///
/// Collects every unset variable (without a default) and every malformed reference.
pub fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        expand_line(line, idx + 1, lookup, &mut out, &mut errors);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<EnvError>,
) {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let mut prev_space = true;
    while i < bytes.len() {
        let c = bytes[i];
        match (quote, c) {
            (None, b'#') if prev_space => {
                out.push_str(&line[i..]);
                return;
            }
            (None, b'"') | (None, b'\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            _ => {}
        }
        if c == b'$' && bytes.get(i + 1) == Some(&b'$') && bytes.get(i + 2) == Some(&b'{') {
            out.push_str("${");
            i += 3;
            prev_space = false;
            continue;
        }
        if c == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let Some(end) = line[i + 2..].find('}') else {
                errors.push(EnvError {
                    line: line_no,
                    column: i + 1,
                    message: "unterminated `${` reference".to_owned(),
                });
                out.push_str(&line[i..]);
                return;
            };
            let inner = &line[i + 2..i + 2 + end];
            // As in the shell and Compose: `${VAR:-d}` when VAR is unset or
            // empty, `${VAR-d}` when it is unset (names hold no `-`).
            let name_len = inner
                .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                .unwrap_or(inner.len());
            let (name, rest) = inner.split_at(name_len);
            let (name, default, empty_too) = if rest.is_empty() {
                (name, None, false)
            } else if let Some(d) = rest.strip_prefix(":-") {
                (name, Some(d), true)
            } else if let Some(d) = rest.strip_prefix('-') {
                (name, Some(d), false)
            } else {
                // Not an operator: reported as a name that is not valid.
                (inner, None, false)
            };
            if !valid_name(name) {
                errors.push(EnvError {
                    line: line_no,
                    column: i + 1,
                    message: format!("invalid environment variable name `{name}`"),
                });
            } else {
                match (lookup(name), default) {
                    (Some(v), Some(d)) if v.is_empty() && empty_too => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => errors.push(EnvError {
                        line: line_no,
                        column: i + 1,
                        message: format!(
                            "environment variable `{name}` is not set and has no default"
                        ),
                    }),
                }
            }
            i += 2 + end + 1;
            prev_space = false;
            continue;
        }
        prev_space = c == b' ' || c == b'\t';
        let ch_len = utf8_len(c);
        out.push_str(&line[i..i + ch_len]);
        i += ch_len;
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.test".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let out = expand(
            "a: ${HOST}\nb: ${PORT:-8080}\nc: '${EMPTY:-x}'\nd: '${EMPTY-x}'\ne: ${PORT-80}\nf: '${EMPTY}'\n",
            &env,
        );
        // `:-` stands in for an unset or empty variable, `-` for an unset
        // one only, as in the shell.
        assert_eq!(
            out,
            Ok("a: example.test\nb: 8080\nc: 'x'\nd: ''\ne: 80\nf: ''\n".to_owned())
        );
        // A default may hold either operator itself.
        let out = expand("u: ${NOPE-http://h:-1}\nv: ${NOPE:-a-b}\n", &env);
        assert_eq!(out, Ok("u: http://h:-1\nv: a-b\n".to_owned()));
    }

    #[test]
    fn unset_variable_is_an_error_with_its_position() {
        let errs = expand("a: 1\nb: ${NOPE}\n", &env).expect_err("must fail");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
        assert_eq!(errs[0].column, 4);
        assert!(errs[0].message.contains("NOPE"));
    }

    #[test]
    fn comments_and_escapes_are_left_alone() {
        let out = expand(
            "a: x # ${NOPE}\n# ${ALSO}\nb: \"#${HOST}\"\nc: $${HOST}\n",
            &env,
        );
        assert_eq!(
            out,
            Ok("a: x # ${NOPE}\n# ${ALSO}\nb: \"#example.test\"\nc: ${HOST}\n".to_owned())
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("a: ${1BAD}\n", &env).is_err());
        assert!(expand("a: ${OPEN\n", &env).is_err());
    }
}
