//! Which wire format and transport a channel speaks, decided from its base_url the way uni-api
//! does (reference uni-api.md §4.1), or forced with `engine:`.

use http::Uri;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// OpenAI chat completions and the OpenAI-compatible family (DeepSeek, Groq, xAI, vLLM, ...).
    OpenAi,
    /// OpenAI-compatible with OpenRouter's quirks.
    OpenRouter,
    Azure,
    AzureDatabricks,
    Claude,
    Gemini,
    VertexGemini,
    VertexClaude,
    Aws,
    Cohere,
    Cloudflare,
    Codex,
    DoubaoTranslation,
    /// The built-in demo provider (`llmux serve --demo`): answers in process.
    Demo,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::OpenAi => "gpt",
            Engine::OpenRouter => "openrouter",
            Engine::Azure => "azure",
            Engine::AzureDatabricks => "azure-databricks",
            Engine::Claude => "claude",
            Engine::Gemini => "gemini",
            Engine::VertexGemini => "vertex-gemini",
            Engine::VertexClaude => "vertex-claude",
            Engine::Aws => "aws",
            Engine::Cohere => "cohere",
            Engine::Cloudflare => "cloudflare",
            Engine::Codex => "codex",
            Engine::DoubaoTranslation => "doubao-translation",
            Engine::Demo => "demo",
        }
    }

    /// `engine:` values accepted in the config.
    pub fn from_name(name: &str) -> Option<Engine> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "gpt" | "openai" => Engine::OpenAi,
            "openrouter" => Engine::OpenRouter,
            "azure" => Engine::Azure,
            "azure-databricks" | "databricks" => Engine::AzureDatabricks,
            "claude" | "anthropic" => Engine::Claude,
            "gemini" => Engine::Gemini,
            "vertex-gemini" => Engine::VertexGemini,
            "vertex-claude" => Engine::VertexClaude,
            "aws" | "bedrock" => Engine::Aws,
            "cohere" => Engine::Cohere,
            "cloudflare" => Engine::Cloudflare,
            "codex" => Engine::Codex,
            "doubao-translation" => Engine::DoubaoTranslation,
            "demo" => Engine::Demo,
            _ => return None,
        })
    }

    /// True when requests and responses are OpenAI chat-completions bytes, so the same-format
    /// fast path (forward bytes, patch the model) applies.
    pub fn speaks_openai(self) -> bool {
        matches!(self, Engine::OpenAi | Engine::OpenRouter)
    }
}

/// How a provider's error bodies and rate-limit headers read, by engine and host.
pub fn flavor(engine: Engine, base_url: &str) -> crate::keypool::classify::Flavor {
    use crate::keypool::classify::Flavor;
    let host = base_url
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    match engine {
        Engine::Claude => Flavor::Anthropic,
        Engine::Gemini => Flavor::Gemini,
        Engine::VertexGemini | Engine::VertexClaude => Flavor::Vertex,
        Engine::Azure => Flavor::Azure,
        Engine::Aws => Flavor::Bedrock,
        Engine::Cloudflare => Flavor::WorkersAi,
        _ if host == "api.openai.com" => Flavor::OpenAi,
        _ if host == "api.groq.com" => Flavor::Groq,
        _ => Flavor::OpenAiCompatible,
    }
}

/// Engine for one (provider, upstream model) pair. `forced` is the provider's `engine:`.
pub fn detect(base_url: &str, forced: Option<Engine>, upstream_model: &str) -> Engine {
    if let Some(engine) = forced {
        return engine;
    }
    let (host, path) = match base_url.parse::<Uri>() {
        Ok(uri) => (
            uri.host().unwrap_or("").to_ascii_lowercase(),
            uri.path().trim_end_matches('/').to_string(),
        ),
        Err(_) => (String::new(), base_url.to_string()),
    };
    let by_url = if host.ends_with("volces.com") && path.ends_with("/api/v3/responses") {
        Engine::DoubaoTranslation
    } else if path.ends_with("/v1beta")
        || (host == "generativelanguage.googleapis.com" && !path.contains("/v1beta/openai"))
    {
        Engine::Gemini
    } else if host.ends_with("aiplatform.googleapis.com") || path.contains("google-vertex-ai") {
        if upstream_model.to_ascii_lowercase().contains("claude") {
            Engine::VertexClaude
        } else {
            Engine::VertexGemini
        }
    } else if host.ends_with("azure.com") {
        Engine::Azure
    } else if host.ends_with("azuredatabricks.net") {
        Engine::AzureDatabricks
    } else if host == "api.cloudflare.com" {
        Engine::Cloudflare
    } else if host == "api.anthropic.com" || path.ends_with("v1/messages") {
        Engine::Claude
    } else if host.contains("amazonaws.com") {
        Engine::Aws
    } else if host == "api.cohere.com" {
        Engine::Cohere
    } else {
        Engine::OpenAi
    };
    // uni-api sends models of no known family through its OpenRouter adapter; for the
    // OpenAI-format engines that is the same wire format, so keep it only for them.
    if by_url == Engine::OpenAi {
        let m = upstream_model.to_ascii_lowercase();
        let known = [
            "claude", "gpt", "deepseek", "gemini", "gemma", "learnlm", "grok",
        ];
        if !known.iter().any(|f| m.contains(f)) {
            return Engine::OpenRouter;
        }
    }
    by_url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_like_uni_api() {
        let d = |url, model| detect(url, None, model);
        assert_eq!(
            d("https://api.openai.com/v1/chat/completions", "gpt-4o"),
            Engine::OpenAi
        );
        assert_eq!(
            d("https://api.anthropic.com/v1/messages", "claude-3"),
            Engine::Claude
        );
        assert_eq!(
            d("https://x.example/v1/messages", "claude-3"),
            Engine::Claude
        );
        assert_eq!(
            d(
                "https://generativelanguage.googleapis.com/v1beta",
                "gemini-2.5-flash"
            ),
            Engine::Gemini
        );
        assert_eq!(
            d(
                "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
                "gemini-2.5-flash"
            ),
            Engine::OpenAi
        );
        assert_eq!(
            d("https://aiplatform.googleapis.com/", "claude-opus-4"),
            Engine::VertexClaude
        );
        assert_eq!(
            d("https://aiplatform.googleapis.com/", "gemini-3-pro"),
            Engine::VertexGemini
        );
        assert_eq!(d("https://res.openai.azure.com", "gpt-4o"), Engine::Azure);
        assert_eq!(
            d("https://bedrock-runtime.us-east-1.amazonaws.com", "x"),
            Engine::Aws
        );
        assert_eq!(
            d("https://api.cohere.com/v2/chat", "command-r"),
            Engine::Cohere
        );
        assert_eq!(
            d("https://api.groq.com/openai/v1/chat/completions", "llama-3"),
            Engine::OpenRouter
        );
        assert_eq!(
            detect(
                "https://api.anthropic.com/v1/messages",
                Some(Engine::OpenAi),
                "x"
            ),
            Engine::OpenAi
        );
    }
}
