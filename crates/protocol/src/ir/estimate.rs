//! A cheap prompt-token estimate for any request, used by the count-tokens endpoints and for
//! admission before an upstream reports real usage: about four characters per token (OpenAI's
//! rule of thumb for English), plus each format's documented framing and media costs.

use super::{ChatRequest, Part};

/// What a format charges beyond text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    pub image: u64,
    /// Documents (PDF pages of text plus page images) and audio, whose real cost depends on
    /// pages and duration we cannot see.
    pub file: u64,
    pub audio: u64,
    /// Framing per message (role markers, separators).
    pub per_message: u64,
    /// Framing per tool definition.
    pub per_tool: u64,
}

/// OpenAI: a 1024×1024 high-detail image is 765 tokens; ~4 tokens of framing per message.
pub const OPENAI: Costs = Costs {
    image: 765,
    file: 1_000,
    audio: 1_000,
    per_message: 4,
    per_tool: 0,
};

/// Anthropic: an image is about width×height/750, at most ~1,600 for a full-size one.
pub const ANTHROPIC: Costs = Costs {
    image: 1_600,
    file: 3_000,
    audio: 3_000,
    per_message: 4,
    per_tool: 4,
};

/// Gemini bills a small image at 258 tokens; the same flat figure stands in for other media.
pub const GEMINI: Costs = Costs {
    image: 258,
    file: 258,
    audio: 258,
    per_message: 0,
    per_tool: 0,
};

/// Estimated prompt tokens of `req`: text, reasoning, tool calls and results, tool names,
/// descriptions and schemas (characters / 4, rounded up) plus the format's fixed costs.
pub fn input_tokens(req: &ChatRequest, costs: &Costs) -> u64 {
    let mut chars = 0u64;
    let mut fixed = 0u64;
    for part in &req.system {
        part_cost(part, costs, &mut chars, &mut fixed);
    }
    for m in &req.messages {
        fixed += costs.per_message;
        for part in &m.content {
            part_cost(part, costs, &mut chars, &mut fixed);
        }
    }
    for t in &req.tools {
        fixed += costs.per_tool;
        chars += t.name.chars().count() as u64;
        chars += t
            .description
            .as_deref()
            .map_or(0, |d| d.chars().count() as u64);
        chars += t.parameters.to_string().chars().count() as u64;
    }
    chars.div_ceil(4) + fixed
}

fn part_cost(part: &Part, costs: &Costs, chars: &mut u64, fixed: &mut u64) {
    let len = |s: &str| s.chars().count() as u64;
    match part {
        Part::Text { text, .. } | Part::Reasoning { text, .. } => *chars += len(text),
        Part::RedactedReasoning { .. } => {}
        Part::Image { .. } => *fixed += costs.image,
        Part::Audio { .. } => *fixed += costs.audio,
        Part::File { .. } => *fixed += costs.file,
        Part::ToolCall {
            name, arguments, ..
        } => *chars += len(name) + len(arguments),
        Part::ToolResult { content, .. } => {
            for p in content {
                part_cost(p, costs, chars, fixed);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ir::{MediaSource, Message, Role, Tool};

    #[test]
    fn counts_text_media_and_tools() {
        let req = ChatRequest {
            system: vec![Part::text("abcd")],
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    Part::text("12345678"),
                    Part::Image {
                        source: MediaSource::from_url("https://x.test/a.png"),
                        detail: None,
                        cache_control: None,
                    },
                ],
                name: None,
            }],
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: serde_json::json!({}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        };
        // chars: 4 + 8 + 1 + 2 ("{}") = 15 → 4 tokens; fixed: 4 + 1000.
        assert_eq!(input_tokens(&req, &OPENAI), 4 + 4 + 765);
        assert_eq!(input_tokens(&req, &ANTHROPIC), 4 + 4 + 4 + 1_600);
        assert_eq!(input_tokens(&ChatRequest::default(), &OPENAI), 0);
    }
}
