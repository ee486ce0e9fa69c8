//! YAML text → a small positioned tree.
//!
//! saphyr resolves scalars with the YAML 1.2 core schema (`True` is a boolean, `1e3` a float,
//! timestamps stay strings) and resolves anchors and aliases itself. On top of it this module
//! keeps every node's position, keeps the source text of non-string scalars (so `api: 0123`
//! stays `"0123"` when a string is wanted), implements `<<` merge keys (YAML 1.1, but uni-api's
//! ruamel loader honours them) and rejects duplicate keys.

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, YamlData};

use super::diag::{Sink, quote};
use super::schema::Pos;

/// Deeper nesting than this is certainly not a config (and would risk the stack).
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// Non-string scalars carry the text they were written as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool, String),
    Int(i64, String),
    Float(f64, String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub(crate) fn null(pos: Pos) -> Self {
        Self {
            pos,
            value: Value::Null,
        }
    }
}

/// Parse one YAML document. `None` when the text is not valid YAML (the error is in `sink`).
/// Smaller problems are reported to `sink` and the offending node is dropped.
/// An empty or comment-only text gives a `Null` node.
pub(crate) fn load(text: &str, sink: &mut Sink) -> Option<Node> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            let message = if e.info() == "duplicated key in mapping" {
                duplicate_key_message(text, e.marker().index())
            } else {
                format!("invalid YAML: {}", e.info())
            };
            sink.error(pos_of(e.marker()), "", message);
            return None;
        }
    };
    let mut docs = docs.into_iter();
    let Some(first) = docs.next() else {
        return Some(Node::null(Pos { line: 1, col: 1 }));
    };
    if let Some(second) = docs.next() {
        sink.error(
            pos_of(&second.span.start),
            "",
            "a second YAML document starts here; api.yaml must contain exactly one document",
        );
        return None;
    }
    // Problems found while converting (a repeated key, a list used as a key) are in `sink`; the
    // offending entry is dropped and the rest is still checked, so every error gets reported.
    Some(convert(&first, &Source::new(text), sink, "", 0))
}

/// saphyr only gives the position of the repeated key; read the key itself from the source.
fn duplicate_key_message(text: &str, char_index: usize) -> String {
    let rest: String = text.chars().skip(char_index).take(200).collect();
    let key = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
        _ => rest.split([':', '\n']).next().unwrap_or("").trim_end(),
    };
    if key.is_empty() {
        "duplicate key: this key already appears earlier in the same mapping".to_owned()
    } else {
        format!("duplicate key `{key}`: it already appears earlier in the same mapping")
    }
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col()).unwrap_or(u32::MAX).saturating_add(1),
    }
}

/// Slices the input by saphyr's character indices.
struct Source<'a> {
    text: &'a str,
    /// Byte offset of each char, plus the end; empty when the text is ASCII.
    offsets: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let offsets = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(b, _)| b)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        Self { text, offsets }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.offsets.is_empty() {
            char_index.min(self.text.len())
        } else {
            self.offsets
                .get(char_index)
                .copied()
                .unwrap_or(self.text.len())
        }
    }

    fn slice(&self, node: &MarkedYaml<'_>) -> &'a str {
        let start = self.byte(node.span.start.index());
        let end = self.byte(node.span.end.index()).max(start);
        self.text.get(start..end).unwrap_or("").trim()
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    src: &Source<'_>,
    sink: &mut Sink,
    path: &str,
    depth: usize,
) -> Node {
    let pos = pos_of(&node.span.start);
    if depth > MAX_DEPTH {
        sink.error(pos, path, format!("nesting deeper than {MAX_DEPTH} levels"));
        return Node::null(pos);
    }
    let value = match &node.data {
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b, src.slice(node).to_owned()),
            Scalar::Integer(i) => Value::Int(*i, src.slice(node).to_owned()),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner(), src.slice(node).to_owned()),
            Scalar::String(s) => Value::Str(s.to_string()),
        },
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, src, sink, &format!("{path}[{i}]"), depth + 1))
                .collect(),
        ),
        YamlData::Mapping(map) => Value::Map(convert_map(map.iter(), src, sink, path, depth)),
        YamlData::Tagged(_, inner) => return convert(inner, src, sink, path, depth + 1),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Alias(_) | YamlData::BadValue => {
            sink.error(
                pos,
                path,
                "this value cannot be read (a tag like `!!int` that does not fit the value, or an unknown alias)",
            );
            Value::Null
        }
    };
    Node { pos, value }
}

fn convert_map<'y, 'i: 'y>(
    entries: impl Iterator<Item = (&'y MarkedYaml<'i>, &'y MarkedYaml<'i>)>,
    src: &Source<'_>,
    sink: &mut Sink,
    path: &str,
    depth: usize,
) -> Vec<Entry> {
    let mut own: Vec<Entry> = Vec::new();
    let mut merged: Vec<Entry> = Vec::new();
    for (k, v) in entries {
        let key_pos = pos_of(&k.span.start);
        let key = match &k.data {
            YamlData::Value(Scalar::String(s)) => {
                // Only a plain `<<` is a merge key; `'<<'` is an ordinary key.
                if s == "<<" && src.slice(k) == "<<" {
                    let value = convert(v, src, sink, &format!("{path}.<<"), depth + 1);
                    merge_sources(value, sink, path, &mut merged);
                    continue;
                }
                s.to_string()
            }
            YamlData::Value(Scalar::Null) => String::new(),
            YamlData::Value(_) => src.slice(k).to_owned(),
            YamlData::Tagged(_, inner) if !inner.data.is_sequence() && !inner.data.is_mapping() => {
                src.slice(inner).to_owned()
            }
            _ => {
                sink.error(
                    key_pos,
                    path,
                    "a mapping key must be a plain value, found a list or mapping used as a key",
                );
                continue;
            }
        };
        let child_path = super::diag::key_path(path, &key);
        if let Some(first) = own.iter().find(|e| e.key == key) {
            sink.error(
                key_pos,
                &child_path,
                format!(
                    "duplicate key {} (first at line {}:{})",
                    quote(&key),
                    first.key_pos.line,
                    first.key_pos.col
                ),
            );
            continue;
        }
        let mut value = convert(v, src, sink, &child_path, depth + 1);
        if value.value == Value::Null && src.slice(v).is_empty() {
            // `key:` with nothing after it: point at the key, not at the colon.
            value.pos = key_pos;
        }
        own.push(Entry {
            key,
            key_pos,
            value,
        });
    }
    // Explicit keys win over merged ones; merged keys follow in source order (ruamel's order).
    for entry in merged {
        if !own.iter().any(|e| e.key == entry.key) {
            own.push(entry);
        }
    }
    own
}

/// `<<: *a` or `<<: [*a, *b]`; earlier sources take precedence over later ones.
fn merge_sources(value: Node, sink: &mut Sink, path: &str, merged: &mut Vec<Entry>) {
    let add = |entries: Vec<Entry>, merged: &mut Vec<Entry>| {
        for entry in entries {
            if !merged.iter().any(|e| e.key == entry.key) {
                merged.push(entry);
            }
        }
    };
    match value.value {
        Value::Map(entries) => add(entries, merged),
        Value::Seq(items) => {
            for item in items {
                match item.value {
                    Value::Map(entries) => add(entries, merged),
                    _ => sink.error(
                        item.pos,
                        path,
                        "a `<<` merge list may only contain mappings (usually aliases like `*defaults`)",
                    ),
                }
            }
        }
        _ => sink.error(
            value.pos,
            path,
            "the merge key `<<` needs a mapping or a list of mappings (usually an alias like `*defaults`)",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Node {
        let mut sink = Sink::new("t.yaml");
        let node = load(text, &mut sink);
        assert!(!sink.has_errors(), "{:?}", sink.list);
        node.unwrap_or_else(|| Node::null(Pos::default()))
    }

    fn load_err(text: &str) -> Vec<String> {
        let mut sink = Sink::new("t.yaml");
        let _ = load(text, &mut sink);
        assert!(sink.has_errors());
        sink.into_sorted().iter().map(ToString::to_string).collect()
    }

    fn map(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_text() {
        let root = load_ok(
            "a: 1e3\nb: True\nc: 2024-01-01T00:00:00+08:00\nd: 0123\ne: '5'\nf:\ng: yes\nh: 1,2\n",
        );
        let m = map(&root);
        assert_eq!(m[0].value.value, Value::Float(1000.0, "1e3".into()));
        assert_eq!(m[1].value.value, Value::Bool(true, "True".into()));
        assert_eq!(
            m[2].value.value,
            Value::Str("2024-01-01T00:00:00+08:00".into())
        );
        assert_eq!(m[3].value.value, Value::Int(123, "0123".into()));
        assert_eq!(m[4].value.value, Value::Str("5".into()));
        assert_eq!(m[5].value.value, Value::Null);
        assert_eq!(m[6].value.value, Value::Str("yes".into()));
        assert_eq!(m[7].value.value, Value::Str("1,2".into()));
        assert_eq!(m[3].key_pos, Pos { line: 4, col: 1 });
        assert_eq!(m[3].value.pos, Pos { line: 4, col: 4 });
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let root = load_ok("é: [ü, 12]\n");
        let m = map(&root);
        let Value::Seq(items) = &m[0].value.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos, Pos { line: 1, col: 8 });
        assert_eq!(items[1].value, Value::Int(12, "12".into()));
    }

    #[test]
    fn empty_and_comment_only_are_null() {
        assert_eq!(load_ok("").value, Value::Null);
        assert_eq!(load_ok("# nothing\n\n").value, Value::Null);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let root = load_ok(
            "base: &b\n  x: 1\n  y: 2\nother: &o\n  z: 9\n  x: 7\nh:\n  y: 3\n  <<: [*b, *o]\n",
        );
        let m = map(&root);
        let h = map(&m[2].value);
        let keys: Vec<&str> = h.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["y", "x", "z"]);
        assert_eq!(h[0].value.value, Value::Int(3, "3".into()));
        assert_eq!(h[1].value.value, Value::Int(1, "1".into()));
        // a merged entry points at its definition
        assert_eq!(h[1].key_pos, Pos { line: 2, col: 3 });
    }

    #[test]
    fn quoted_merge_key_is_a_plain_key() {
        let root = load_ok("'<<': 1\n");
        assert_eq!(map(&root)[0].key, "<<");
    }

    #[test]
    fn syntax_error_position() {
        let errs = load_err("a: [1, 2\nb: 3\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.yaml:2:2: invalid YAML: "),
            "{errs:?}"
        );
    }

    #[test]
    fn duplicate_keys() {
        let errs = load_err("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            errs,
            ["t.yaml:3:1: duplicate key `a`: it already appears earlier in the same mapping"]
        );
        // `1` and `"1"` differ for YAML but are the same key for us
        let errs = load_err("x:\n  1: a\n  \"1\": b\n");
        assert_eq!(
            errs,
            ["t.yaml:3:3: x.1: duplicate key \"1\" (first at line 2:3)"]
        );
    }

    #[test]
    fn duplicate_quoted_key_is_named() {
        let errs = load_err("x:\n  'a: b': 1\n  \"a: b\": 2\n");
        assert_eq!(
            errs,
            ["t.yaml:3:3: duplicate key `a: b`: it already appears earlier in the same mapping"]
        );
    }

    #[test]
    fn several_documents_are_rejected() {
        let errs = load_err("a: 1\n---\nb: 2\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.yaml:3:1: a second YAML document"),
            "{errs:?}"
        );
    }

    #[test]
    fn bom_is_ignored() {
        let root = load_ok("\u{feff}a: 1\n");
        assert_eq!(map(&root)[0].key, "a");
    }
}
