//! The mock's "model": one set of deterministic rules that every wire format
//! applies to its own request shape, so a conversation sent through any
//! format gets the same reply text, tool calls, thinking and token counts.
//!
//! Each format module reduces its request to a [`Convo`] (the last user
//! text, whether the conversation ends on the user, the callable tools and
//! the tool choice) and turns the resulting [`Plan`] back into its own wire
//! shape. The rules themselves are documented in the crate docs.

use serde_json::{Map, Value, json};

use crate::server::Ctx;
use crate::util::{base64, fnv1a64, tokens_for_chars, truncate_words, word_ends};

/// The echoed part of the default reply is capped so big prompts stay cheap.
pub(crate) const MAX_ECHO_WORDS: usize = 32;
pub(crate) const DEFAULT_REPLY: &str = "Hello! This is a mock reply.";
/// What the model "thinks" when a request enables thinking or reasoning.
pub(crate) const THINKING_TEXT: &str = "Let me think about how to answer this.";

/// The default reply when none is scripted: `"You said: "` followed by the
/// first 32 whitespace-separated words of the last user message, or
/// [`DEFAULT_REPLY`] when there is no user text.
pub(crate) fn derive_reply(last_user: Option<&str>) -> String {
    let words: Vec<&str> = last_user
        .unwrap_or("")
        .split_whitespace()
        .take(MAX_ECHO_WORDS)
        .collect();
    if words.is_empty() {
        DEFAULT_REPLY.to_owned()
    } else {
        format!("You said: {}", words.join(" "))
    }
}

/// A function the request offers the model.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToolDef<'a> {
    pub name: &'a str,
    /// JSON schema of the arguments (any dialect: `"type": "STRING"` too).
    pub params: Option<&'a Value>,
}

/// How the request constrains tool use, normalised across formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice<'a> {
    Auto,
    None,
    /// At least one tool must be called (OpenAI `required`, Anthropic `any`,
    /// Gemini `ANY`).
    Required,
    /// This tool must be called.
    Named(&'a str),
}

/// What the rules need to know about a conversation.
#[derive(Debug)]
pub(crate) struct Convo<'a> {
    /// Text of the last user turn (text parts joined by a space); tool-result
    /// turns are not user turns.
    pub last_user: Option<String>,
    /// Whether the conversation ends with a user turn.
    pub last_is_user: bool,
    pub tools: Vec<ToolDef<'a>>,
    pub choice: Choice<'a>,
    /// Several tools may be called at once.
    pub parallel: bool,
}

/// The tools the model calls (empty = it answers with text): a named choice
/// calls that tool; otherwise tools are called when forced or when the last
/// turn is the user's and mentions "weather"; all of them if the user also
/// says "parallel" and parallel calls are allowed, else the first.
pub(crate) fn choose_tools<'a>(c: &Convo<'a>) -> Vec<ToolDef<'a>> {
    if c.tools.is_empty() {
        return Vec::new();
    }
    let forced = match c.choice {
        Choice::None => return Vec::new(),
        Choice::Named(name) => {
            let params = c
                .tools
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.params);
            return vec![ToolDef { name, params }];
        }
        Choice::Required => true,
        Choice::Auto => false,
    };
    let user = c.last_user.as_deref().unwrap_or("").to_lowercase();
    let asked = c.last_is_user && user.contains("weather");
    if !(forced || asked) {
        return Vec::new();
    }
    if c.parallel && user.contains("parallel") {
        c.tools.clone()
    } else {
        c.tools.iter().take(1).copied().collect()
    }
}

/// Placeholder arguments that satisfy the tool's JSON schema shape: each
/// property gets its first `enum` value, else `"mock"` / `1` / `true` / `[]`
/// / `{}` by type (matched case-insensitively), else `null`.
pub(crate) fn fake_arguments(parameters: Option<&Value>) -> Value {
    let mut args = Map::new();
    if let Some(props) = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            let value = if let Some(first) = schema
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                first.clone()
            } else {
                let kind = schema
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase);
                match kind.as_deref() {
                    Some("string") => json!("mock"),
                    Some("integer" | "number") => json!(1),
                    Some("boolean") => json!(true),
                    Some("array") => json!([]),
                    Some("object") => json!({}),
                    _ => Value::Null,
                }
            };
            args.insert(name.clone(), value);
        }
    }
    Value::Object(args)
}

/// One tool call of a [`Plan`].
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub name: String,
    pub args: Value,
    /// `args` as compact JSON (keys sorted), the "generated" text.
    pub arguments: String,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    End,
    MaxTokens,
    /// A stop sequence matched (index into the request's list).
    Sequence(usize),
    ToolUse,
}

/// The answer the rules produce for a conversation.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The thinking text, when thinking is on (possibly cut by the limit).
    pub thinking: Option<String>,
    /// Reply text (empty when tools are called).
    pub text: String,
    pub calls: Vec<Call>,
    pub stop: Stop,
}

impl Plan {
    /// Output tokens spent thinking: its word count.
    pub fn thinking_tokens(&self) -> u64 {
        self.thinking
            .as_deref()
            .map_or(0, |t| word_ends(t).len() as u64)
    }

    /// Visible output tokens: the reply's words, or ceil(characters of all
    /// argument strings / 4) (at least 1) when tools are called.
    pub fn answer_tokens(&self) -> u64 {
        if self.calls.is_empty() {
            word_ends(&self.text).len() as u64
        } else {
            tokens_for_chars(self.calls.iter().map(|c| c.arguments.chars().count()).sum())
        }
    }

    pub fn output_tokens(&self) -> u64 {
        self.thinking_tokens() + self.answer_tokens()
    }
}

/// Options that shape a [`Plan`] beyond the conversation itself.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits<'a> {
    /// Output token limit (thinking words count against it first).
    pub max_tokens: Option<u64>,
    pub thinking: bool,
    pub stop_sequences: &'a [String],
}

/// Applies the rules: the `EmptyReply` fault gives empty text and no tools;
/// tools chosen by [`choose_tools`] are called with [`fake_arguments`];
/// otherwise the scripted reply or [`derive_reply`] is cut before the
/// earliest stop sequence it contains and to the words left under the limit.
pub(crate) fn plan(ctx: &Ctx<'_>, convo: &Convo<'_>, limits: Limits<'_>) -> Plan {
    if ctx.mode.empty_reply {
        return Plan {
            thinking: None,
            text: String::new(),
            calls: Vec::new(),
            stop: Stop::End,
        };
    }
    let mut budget = limits
        .max_tokens
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let thinking = limits.thinking.then(|| {
        let (cut, _) = truncate_words(THINKING_TEXT, budget.unwrap_or(usize::MAX));
        let words = word_ends(cut).len();
        budget = budget.map(|b| b.saturating_sub(words));
        cut.to_owned()
    });
    let tools = choose_tools(convo);
    if !tools.is_empty() {
        let calls = tools
            .iter()
            .map(|t| {
                let args = fake_arguments(t.params);
                Call {
                    name: t.name.to_owned(),
                    arguments: args.to_string(),
                    args,
                }
            })
            .collect();
        return Plan {
            thinking,
            text: String::new(),
            calls,
            stop: Stop::ToolUse,
        };
    }
    let full = match ctx.shared.reply() {
        Some(r) => r.to_string(),
        None => derive_reply(convo.last_user.as_deref()),
    };
    let (text, stop) = cut_text(&full, budget, limits.stop_sequences);
    Plan {
        thinking,
        text,
        calls: Vec::new(),
        stop,
    }
}

/// Cuts `full` before the earliest stop sequence, then to `max_words`.
pub(crate) fn cut_text(full: &str, max_words: Option<usize>, stops: &[String]) -> (String, Stop) {
    let hit = stops
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .filter_map(|(i, s)| full.find(s.as_str()).map(|at| (at, i)))
        .min();
    let (head, stop) = match hit {
        Some((at, i)) => (&full[..at], Stop::Sequence(i)),
        None => (full, Stop::End),
    };
    match max_words {
        Some(max) => {
            let (cut, truncated) = truncate_words(head, max);
            if truncated {
                (cut.to_owned(), Stop::MaxTokens)
            } else {
                (head.to_owned(), stop)
            }
        }
        None => (head.to_owned(), stop),
    }
}

/// A signature the mock can later recognise: base64 of `label:` followed by
/// the 16-hex-digit FNV-1a hash of `content`.
pub(crate) fn signature(label: &str, content: &str) -> String {
    base64(format!("{label}:{:016x}", fnv1a64(content.as_bytes())).as_bytes())
}

/// The text characters a JSON value carries: every string inside it,
/// recursively (how tool results that are JSON objects are counted).
pub(crate) fn string_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(string_chars).sum(),
        Value::Object(map) => map.values().map(string_chars).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo<'a>(user: &str, tools: Vec<ToolDef<'a>>, choice: Choice<'a>) -> Convo<'a> {
        Convo {
            last_user: Some(user.to_owned()),
            last_is_user: true,
            tools,
            choice,
            parallel: true,
        }
    }

    #[test]
    fn default_reply_rules() {
        assert_eq!(derive_reply(None), DEFAULT_REPLY);
        assert_eq!(derive_reply(Some("  ")), DEFAULT_REPLY);
        assert_eq!(
            derive_reply(Some("Hi   there\nfriend")),
            "You said: Hi there friend"
        );
        let long = "w ".repeat(100);
        assert_eq!(
            word_ends(&derive_reply(Some(&long))).len(),
            MAX_ECHO_WORDS + 2
        );
    }

    #[test]
    fn tool_triggers() {
        let a = ToolDef {
            name: "a",
            params: None,
        };
        let b = ToolDef {
            name: "b",
            params: None,
        };
        let names = |c: &Convo<'_>| -> Vec<String> {
            choose_tools(c).iter().map(|t| t.name.to_owned()).collect()
        };
        assert!(names(&convo("hello", vec![a, b], Choice::Auto)).is_empty());
        assert_eq!(
            names(&convo("the Weather?", vec![a, b], Choice::Auto)),
            ["a"]
        );
        assert_eq!(
            names(&convo("weather in parallel", vec![a, b], Choice::Auto)),
            ["a", "b"]
        );
        assert_eq!(names(&convo("hi", vec![a, b], Choice::Required)), ["a"]);
        assert_eq!(
            names(&convo("weather", vec![a, b], Choice::Named("b"))),
            ["b"]
        );
        assert!(names(&convo("weather", vec![a, b], Choice::None)).is_empty());
        let mut c = convo("weather in parallel", vec![a, b], Choice::Auto);
        c.parallel = false;
        assert_eq!(names(&c), ["a"]);
        c.last_is_user = false;
        assert!(names(&c).is_empty());
    }

    #[test]
    fn fake_arguments_follow_schema() {
        let params = json!({"type":"object","properties":{
            "location":{"type":"string"},
            "unit":{"type":"string","enum":["celsius","fahrenheit"]},
            "days":{"type":"INTEGER"}}});
        assert_eq!(
            fake_arguments(Some(&params)),
            json!({"location":"mock","unit":"celsius","days":1})
        );
        assert_eq!(fake_arguments(None), json!({}));
    }

    #[test]
    fn stop_sequences_and_limits() {
        let stops = vec!["there".to_owned(), "said".to_owned()];
        assert_eq!(
            cut_text("You said: hi there", None, &stops),
            ("You ".to_owned(), Stop::Sequence(1))
        );
        assert_eq!(
            cut_text("You said: hi there", Some(1), &stops),
            ("You ".to_owned(), Stop::Sequence(1))
        );
        assert_eq!(
            cut_text("a b c d", Some(2), &[]),
            ("a b".to_owned(), Stop::MaxTokens)
        );
        assert_eq!(
            cut_text("a b c d", Some(4), &[]),
            ("a b c d".to_owned(), Stop::End)
        );
    }

    #[test]
    fn signatures_are_stable_and_content_bound() {
        assert_eq!(signature("x", "abc"), signature("x", "abc"));
        assert_ne!(signature("x", "abc"), signature("x", "abd"));
        assert_ne!(signature("x", "abc"), signature("y", "abc"));
    }
}
