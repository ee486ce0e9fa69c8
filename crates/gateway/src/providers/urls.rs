//! Sibling endpoint URLs derived from a provider's base_url (uni-api's `BaseAPI`): a base_url may
//! name the chat endpoint (`.../v1/chat/completions`) or just the API root (`.../v1`).

/// Endpoint suffixes a base_url may end with; stripped to find the API root.
const KNOWN_SUFFIXES: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/responses",
    "/messages",
    "/embeddings",
    "/images/generations",
    "/audio/transcriptions",
    "/audio/speech",
    "/moderations",
    "/models",
];

/// The OpenAI endpoints llmux forwards, relative to the API root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Models,
    Embeddings,
    ImagesGenerations,
    AudioTranscriptions,
    AudioSpeech,
    Moderations,
}

impl Endpoint {
    /// How many endpoints there are (for tables indexed by `endpoint as usize`).
    pub const COUNT: usize = Endpoint::Moderations as usize + 1;

    pub fn suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Models => "/models",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::ImagesGenerations => "/images/generations",
            Endpoint::AudioTranscriptions => "/audio/transcriptions",
            Endpoint::AudioSpeech => "/audio/speech",
            Endpoint::Moderations => "/moderations",
        }
    }

    /// The client-facing path, used in logs and `exclude_endpoints`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Models => "/v1/models",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::ImagesGenerations => "/v1/images/generations",
            Endpoint::AudioTranscriptions => "/v1/audio/transcriptions",
            Endpoint::AudioSpeech => "/v1/audio/speech",
            Endpoint::Moderations => "/v1/moderations",
        }
    }
}

/// API root of an OpenAI-style base_url, without a trailing slash. A bare host gets `/v1`.
pub fn api_root(base_url: &str) -> String {
    let (without_query, _) = base_url.split_once('?').unwrap_or((base_url, ""));
    let mut root = without_query.trim_end_matches('/').to_string();
    for suffix in KNOWN_SUFFIXES {
        if root.ends_with(suffix) {
            root.truncate(root.len() - suffix.len());
            break;
        }
    }
    let after_scheme = root
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(&root);
    if !after_scheme.contains('/') {
        root.push_str("/v1");
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_roots() {
        assert_eq!(
            api_root("https://api.openai.com/v1/chat/completions"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("https://api.openai.com/v1/"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("https://api.openai.com"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("https://api.groq.com/openai/v1/chat/completions"),
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(
            api_root("http://127.0.0.1:9000/v1"),
            "http://127.0.0.1:9000/v1"
        );
        assert_eq!(
            api_root("http://localhost:11434/v1/models"),
            "http://localhost:11434/v1"
        );
    }
}
