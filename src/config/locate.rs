//! Finds where a YAML path (`routes[1].upstream`) sits in the file, so that the
//! cross-checks, which run on parsed values, can still name a line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// YAML path → (line, column), both 1-based, of the key (or sequence item).
#[derive(Debug, Default)]
pub struct Locations {
    map: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    map: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// The path of the value about to start, recording where it starts.
    fn child_path(&mut self) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Map { path, key } => {
                let k = key.take()?;
                Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                })
            }
            Frame::Seq { path, index } => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        // A mapping is located by its first key.
                        self.map.entry(path.clone()).or_insert(pos);
                        let full = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        self.map.entry(full).or_insert(pos);
                        *key = Some(value);
                        return;
                    }
                }
                if let Some(p) = self.child_path() {
                    self.map.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() {
                    String::new()
                } else {
                    self.child_path().unwrap_or_default()
                };
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.child_path().unwrap_or_default();
                self.map.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.child_path();
            }
            _ => {}
        }
    }
}

impl Locations {
    /// Indexes every key of the document; an unparsable text gives an empty index.
    pub fn index(text: &str) -> Locations {
        let mut b = Builder {
            stack: Vec::new(),
            map: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return Locations::default();
        }
        Locations { map: b.map }
    }

    /// The position of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }

    /// The innermost key written at `line` that starts at or before `column`
    /// (for errors found in the text itself, such as an unset `${VAR}`).
    pub fn key_at(&self, line: usize, column: usize) -> Option<String> {
        self.map
            .iter()
            .filter(|(_, (l, c))| *l == line && *c <= column)
            .max_by_key(|(path, (_, c))| (*c, path.len()))
            .map(|(path, _)| path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "server:\n  listen: x\nroutes:\n  - path: /a\n    upstream: api\n  - path: /b\n    upstream: nope\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("server.listen"), (2, 3));
        assert_eq!(loc.find("routes[1].upstream"), (7, 5));
        assert_eq!(loc.find("routes[0].path"), (4, 5));
        assert_eq!(loc.find("routes[1].missing"), (6, 5));
    }

    #[test]
    fn finds_the_key_written_at_a_position() {
        let text = "upstreams:\n  api: { url: \"${U}\", timeout: 5s }\nroutes:\n  - path: ${P}\n";
        let loc = Locations::index(text);
        assert_eq!(loc.key_at(2, 17).as_deref(), Some("upstreams.api.url"));
        assert_eq!(loc.key_at(4, 11).as_deref(), Some("routes[0].path"));
        assert_eq!(loc.key_at(3, 1).as_deref(), Some("routes"));
        assert_eq!(loc.key_at(9, 1), None);
    }
}
