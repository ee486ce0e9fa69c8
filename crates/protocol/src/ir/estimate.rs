//! A cheap prompt-token estimate for any request, used by the count-tokens endpoints and for
//! admission before an upstream reports real usage. It is deliberately simple and documented:
//! about four characters per token (OpenAI's rule of thumb for English), a small overhead per
//! message, and a fixed cost per image and audio clip.

use super::{ChatRequest, Part};

/// Tokens charged per image (a 1024×1024 image is ~765 tokens for OpenAI, ~1,400 for
/// Anthropic; the midpoint keeps both estimates within a factor of two).
pub const IMAGE_TOKENS: u64 = 1_000;
/// Tokens charged per audio clip or file whose length is unknown here.
pub const MEDIA_TOKENS: u64 = 1_000;
/// Per-message framing (role markers and separators).
const MESSAGE_OVERHEAD: u64 = 4;

/// Estimated prompt tokens of `req`: text, tool calls and results, tool schemas and media.
pub fn input_tokens(req: &ChatRequest) -> u64 {
    let mut chars = 0u64;
    let mut fixed = 0u64;
    let count = |parts: &[Part], chars: &mut u64, fixed: &mut u64| {
        for part in parts {
            part_cost(part, chars, fixed);
        }
    };
    count(&req.system, &mut chars, &mut fixed);
    for m in &req.messages {
        fixed += MESSAGE_OVERHEAD;
        count(&m.content, &mut chars, &mut fixed);
    }
    for t in &req.tools {
        chars += t.name.chars().count() as u64;
        chars += t
            .description
            .as_deref()
            .map_or(0, |d| d.chars().count() as u64);
        chars += t.parameters.to_string().chars().count() as u64;
    }
    chars.div_ceil(4) + fixed
}

fn part_cost(part: &Part, chars: &mut u64, fixed: &mut u64) {
    let len = |s: &str| s.chars().count() as u64;
    match part {
        Part::Text { text, .. } => *chars += len(text),
        Part::Reasoning { text, .. } => *chars += len(text),
        Part::RedactedReasoning { .. } => {}
        Part::Image { .. } => *fixed += IMAGE_TOKENS,
        Part::Audio { .. } | Part::File { .. } => *fixed += MEDIA_TOKENS,
        Part::ToolCall {
            name, arguments, ..
        } => *chars += len(name) + len(arguments),
        Part::ToolResult { content, .. } => {
            for p in content {
                part_cost(p, chars, fixed);
            }
        }
    }
}

#[cfg(test)]
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
        assert_eq!(input_tokens(&req), 4 + MESSAGE_OVERHEAD + IMAGE_TOKENS);
        assert_eq!(input_tokens(&ChatRequest::default()), 0);
    }
}
