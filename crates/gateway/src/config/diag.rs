//! Diagnostics: one problem in a config file, with its position and key path.

use std::fmt;

use super::schema::Pos;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found while loading a config. `Display` gives
/// `file:line:col: path.to.key: message` (warnings: `file:line:col: warning: path: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub col: u32,
    /// Key path such as `providers[2].preferences.api_key_rate_limit`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<String>,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            Severity::Error,
            file.into(),
            pos,
            path.into(),
            message.into(),
        )
    }

    pub fn warning(
        file: impl Into<String>,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            Severity::Warning,
            file.into(),
            pos,
            path.into(),
            message.into(),
        )
    }

    fn new(severity: Severity, file: String, pos: Pos, path: String, message: String) -> Self {
        // Position 0 means "no position": point at the start of the file instead.
        Self {
            severity,
            file,
            line: pos.line.max(1),
            col: pos.col.max(1),
            path,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects diagnostics for one file.
pub(crate) struct Sink {
    file: String,
    pub(crate) list: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.list
            .push(Diagnostic::error(self.file.as_str(), pos, path, message));
    }

    pub(crate) fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.list
            .push(Diagnostic::warning(self.file.as_str(), pos, path, message));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics in file order (stable, so several at one spot keep their order).
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| (d.line, d.col));
        self.list
    }
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain word (model names with dots).
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        return format!("{parent}[{}]", quote(key));
    }
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A double-quoted rendering of `s` for messages and paths.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pos(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn display_error_and_warning() {
        let e = Diagnostic::error("api.yaml", pos(7, 5), "providers[1].api", "bad");
        assert_eq!(e.to_string(), "api.yaml:7:5: providers[1].api: bad");
        let w = Diagnostic::warning("api.yaml", pos(2, 1), "foo", "unknown key");
        assert_eq!(w.to_string(), "api.yaml:2:1: warning: foo: unknown key");
        let root = Diagnostic::error("api.yaml", Pos::default(), "", "empty");
        assert_eq!(root.to_string(), "api.yaml:1:1: empty");
    }

    #[test]
    fn paths() {
        assert_eq!(key_path("", "providers"), "providers");
        assert_eq!(
            key_path(&index_path("providers", 2), "preferences"),
            "providers[2].preferences"
        );
        assert_eq!(
            key_path("preferences.model_price", "gpt-5.2"),
            "preferences.model_price[\"gpt-5.2\"]"
        );
        assert_eq!(key_path("a", "say \"hi\""), "a[\"say \\\"hi\\\"\"]");
    }
}
