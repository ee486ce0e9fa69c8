//! Token usage in canonical form (OpenAI semantics).

/// Token counts of one response. `input_tokens` includes cached prompt
/// tokens (read and written); `output_tokens` includes reasoning tokens.
/// Converters from formats that count differently (Anthropic reports cache
/// reads/writes apart from `input_tokens`; Gemini reports thoughts apart
/// from candidates) add them up at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`, Gemini `cachedContentTokenCount`).
    pub cache_read_tokens: u64,
    /// Prompt tokens written to cache (Anthropic
    /// `cache_creation_input_tokens`).
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Field-wise maximum: streams report usage cumulatively (Anthropic's
    /// `message_start` then `message_delta`, Gemini on every chunk), so the
    /// largest value seen per field is the final one.
    pub fn merge_max(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.max(other.input_tokens);
        self.output_tokens = self.output_tokens.max(other.output_tokens);
        self.cache_read_tokens = self.cache_read_tokens.max(other.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.max(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.max(other.reasoning_tokens);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_largest_count_per_field() {
        let mut u = Usage {
            input_tokens: 10,
            output_tokens: 1,
            ..Usage::default()
        };
        u.merge_max(&Usage {
            input_tokens: 0,
            output_tokens: 7,
            reasoning_tokens: 3,
            ..Usage::default()
        });
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (10, 7, 3)
        );
        assert_eq!(u.total(), 17);
    }
}
