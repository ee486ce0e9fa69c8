//! `${VAR}` and `${VAR:-default}` in string values, as uni-api's `config/env.py` does it:
//! the same pattern (`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}`, the default ends at the first
//! `}` and cannot span lines), no recursion into defaults or substituted values, `$VAR`
//! without braces untouched, keys untouched. Done on parsed scalars, so positions stay right
//! and a value containing `: ` cannot change the YAML structure.
//!
//! One deliberate difference: uni-api replaces an unset variable without default by the empty
//! string; we keep `${VAR}` as written and warn, so the mistake is visible (an empty key or URL
//! fails much later and more obscurely).

use super::diag::{Sink, index_path, key_path};
use super::yaml::{Node, Value};

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub text: String,
    /// Variables that were unset and had no default, in order of appearance.
    pub unset: Vec<String>,
}

pub(crate) fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Expanded {
    let mut text = String::with_capacity(input.len());
    let mut unset = Vec::new();
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let after = &rest[start..];
        match reference(after) {
            Some(r) => {
                match (env(r.name), r.default) {
                    (Some(value), _) => text.push_str(&value),
                    (None, Some(default)) => text.push_str(default),
                    (None, None) => {
                        text.push_str(&after[..r.len]);
                        if !unset.iter().any(|n| n == r.name) {
                            unset.push(r.name.to_owned());
                        }
                    }
                }
                rest = &after[r.len..];
            }
            None => {
                text.push('$');
                rest = &after[1..];
            }
        }
    }
    text.push_str(rest);
    Expanded { text, unset }
}

struct Reference<'a> {
    name: &'a str,
    default: Option<&'a str>,
    /// Bytes from `$` to the closing `}` included.
    len: usize,
}

/// Parses a reference at the start of `s` (which starts with `${`).
fn reference(s: &str) -> Option<Reference<'_>> {
    let body = s.get(2..)?;
    let bytes = body.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let name_len = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(bytes.len());
    let name = &body[..name_len];
    let tail = &body[name_len..];
    if tail.starts_with('}') {
        return Some(Reference {
            name,
            default: None,
            len: 2 + name_len + 1,
        });
    }
    let default_text = tail.strip_prefix(":-")?;
    let close = default_text.find(['}', '\n'])?;
    if default_text.as_bytes().get(close) != Some(&b'}') {
        return None;
    }
    Some(Reference {
        name,
        default: Some(&default_text[..close]),
        len: 2 + name_len + 2 + close + 1,
    })
}

/// Expands every string value of the tree (not keys), warning once per unset variable per value.
pub(crate) fn expand_tree(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    sink: &mut Sink,
) {
    match &mut node.value {
        Value::Str(s) if s.contains("${") => {
            let expanded = expand(s, env);
            for name in &expanded.unset {
                sink.warn(
                    node.pos,
                    path,
                    format!(
                        "environment variable `{name}` is not set and has no default; \
                         `${{{name}}}` is kept as written (use `${{{name}:-default}}` to give a default)"
                    ),
                );
            }
            *s = expanded.text;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &index_path(path, i), env, sink);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                let child = key_path(path, &entry.key);
                expand_tree(&mut entry.value, &child, env, sink);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B" => Some("b: with colon".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn exp(s: &str) -> (String, Vec<String>) {
        let e = expand(s, &env);
        (e.text, e.unset)
    }

    #[test]
    fn simple_and_default() {
        assert_eq!(exp("${A}").0, "alpha");
        assert_eq!(exp("${A:-x}").0, "alpha");
        assert_eq!(exp("${NOPE:-x}").0, "x");
        assert_eq!(exp("${NOPE:-}").0, "");
        // set but empty wins over the default (uni-api checks `name in env`)
        assert_eq!(exp("${EMPTY:-x}").0, "");
        assert_eq!(exp("${B}").0, "b: with colon");
    }

    #[test]
    fn several_in_one_string() {
        assert_eq!(
            exp("https://${A}.example/${NOPE:-v1}/${A}").0,
            "https://alpha.example/v1/alpha"
        );
    }

    #[test]
    fn unset_without_default_is_kept_and_reported() {
        assert_eq!(
            exp("x ${NOPE} y ${NOPE} ${OTHER}"),
            (
                "x ${NOPE} y ${NOPE} ${OTHER}".to_owned(),
                vec!["NOPE".to_owned(), "OTHER".to_owned()]
            )
        );
    }

    #[test]
    fn not_references() {
        assert_eq!(exp("$A and $$ and $").0, "$A and $$ and $");
        assert_eq!(exp("$${A}").0, "$alpha");
        assert_eq!(exp("${1A} ${} ${A:x} ${A").0, "${1A} ${} ${A:x} ${A");
        // the default ends at the first `}` and cannot span lines
        assert_eq!(exp("${NOPE:-a}b}").0, "ab}");
        assert_eq!(exp("${NOPE:-a\n}").0, "${NOPE:-a\n}");
        // substituted text is not scanned again
        assert_eq!(exp("${NOPE:-${A}}").0, "${A}");
    }

    #[test]
    fn unicode_around_references() {
        assert_eq!(exp("é${A}ü${NOPE:-ß}").0, "éalphaüß");
    }
}
