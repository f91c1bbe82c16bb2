//! Configuration errors: each names the file, the line and column, and the key.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (the file cannot be read).
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// The YAML path of the key (`routes[1].upstream`), when known.
    pub key: Option<String>,
    pub message: String,
}

/// Every problem found in one file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

// === impl ConfigError ===

impl ConfigError {
    /// A problem at a known position.
    pub fn at(
        file: &Path,
        line: usize,
        column: usize,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// The file could not be read.
    pub fn io(file: &Path, err: &std::io::Error) -> Self {
        Self::at(file, 0, 0, None, format!("cannot read the file: {err}"))
    }

    /// A YAML syntax or type error reported by the parser.
    pub fn parse(file: &Path, err: &serde_yaml_ng::Error) -> Self {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // serde_yaml renders `path: message at line L column C`; keep the path as
        // the key and drop the position suffix, which we print in front.
        let text = err.to_string();
        let text = match text.rfind(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        };
        let (key, message) = split_key(&text);
        Self::at(file, line, column, key, message)
    }
}

/// serde_yaml prefixes messages with the YAML path (`routes[0].upstream: …`).
fn split_key(text: &str) -> (Option<String>, String) {
    if let Some((head, rest)) = text.split_once(": ") {
        let looks_like_path = !head.is_empty()
            && !head.contains(' ')
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c));
        if looks_like_path {
            return (Some(head.to_owned()), rest.to_owned());
        }
    }
    (None, text.to_owned())
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        match &self.key {
            Some(key) => write!(f, ": {key}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

// === impl ConfigErrors ===

impl ConfigErrors {
    /// Wraps a non-empty list.
    pub fn new(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }

    /// One error.
    pub fn single(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
