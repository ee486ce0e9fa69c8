//! Where and how one attempt reaches its upstream: the wire format an engine speaks, the URL
//! for an endpoint and model, and the auth headers for a key. Formats themselves (bodies,
//! streams) live in `protocol::convert`; this module is only transport.

use http::{HeaderName, HeaderValue, header};
use protocol::convert::openai_chat::{MaxTokensField, OpenAiOptions};
use protocol::ir::Format;

use crate::providers::engine::Engine;
use crate::providers::urls::Endpoint;
use crate::runtime::Channel;
use crate::secret::Credential;

/// Anthropic API version sent when the provider's `headers` do not set one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Azure OpenAI `api-version` used when the base_url names none (uni-api's default).
pub const AZURE_API_VERSION: &str = "2025-01-01-preview";

/// The wire format of one upstream call: one of the client-facing API formats, or one only
/// spoken to upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Api(Format),
    /// AWS Bedrock Converse / ConverseStream (binary event stream).
    Bedrock,
    /// Cohere Chat v2.
    Cohere,
    /// Cloudflare Workers AI text generation.
    Cloudflare,
    /// Databricks serving endpoints: OpenAI chat, with reasoning as content blocks and errors
    /// in Databricks' own envelope, so answers always go through the IR.
    Databricks,
}

impl Wire {
    /// Who issued a reasoning signature that came over this wire (`ir::provenance`).
    pub fn issuer(self) -> &'static str {
        match self {
            Wire::Api(f) => f.as_str(),
            Wire::Bedrock => "bedrock",
            Wire::Cohere => "cohere",
            Wire::Cloudflare => "cloudflare",
            Wire::Databricks => "databricks",
        }
    }

    /// The client-facing format this wire is, if it is one.
    pub fn api(self) -> Option<Format> {
        match self {
            Wire::Api(f) => Some(f),
            _ => None,
        }
    }

    /// The format whose answers and stream events this wire's look like, for the content
    /// checks (Databricks answers in OpenAI chat chunks).
    pub fn content_format(self) -> Option<Format> {
        match self {
            Wire::Api(f) => Some(f),
            Wire::Databricks => Some(Format::OpenAiChat),
            Wire::Bedrock | Wire::Cohere | Wire::Cloudflare => None,
        }
    }
}

/// The chat wire format an engine speaks; `None` for engines this build cannot serve.
pub fn chat_format(engine: Engine, base_url: &str) -> Option<Wire> {
    let api = |f| Some(Wire::Api(f));
    match engine {
        Engine::OpenAi | Engine::OpenRouter | Engine::Azure | Engine::AzureDatabricks
            if is_responses_url(base_url) =>
        {
            api(Format::OpenAiResponses)
        }
        Engine::OpenAi | Engine::OpenRouter | Engine::Azure => api(Format::OpenAiChat),
        Engine::AzureDatabricks => Some(Wire::Databricks),
        Engine::Demo => api(Format::OpenAiChat),
        Engine::Codex => api(Format::OpenAiResponses),
        Engine::Claude | Engine::VertexClaude => api(Format::Anthropic),
        Engine::Gemini | Engine::VertexGemini => api(Format::Gemini),
        Engine::Aws => Some(Wire::Bedrock),
        Engine::Cohere => Some(Wire::Cohere),
        Engine::Cloudflare => Some(Wire::Cloudflare),
        Engine::DoubaoTranslation => None,
    }
}

/// Upstreams that cannot fetch image URLs themselves: llmux inlines the bytes.
pub fn needs_inline_media(wire: Wire) -> bool {
    matches!(wire, Wire::Api(Format::Gemini) | Wire::Bedrock)
}

/// Whether the engine serves this endpoint at all (the non-chat OpenAI endpoints only exist on
/// OpenAI-style upstreams).
pub fn serves(engine: Engine, endpoint: Endpoint) -> bool {
    match endpoint {
        Endpoint::ChatCompletions => true,
        _ => matches!(
            engine,
            Engine::OpenAi | Engine::OpenRouter | Engine::Azure | Engine::Demo
        ),
    }
}

/// The wire format to call a channel in for a client speaking `client`: the client's own when
/// the channel speaks it (bytes pass through), else the channel's natural chat format.
/// OpenAI's own API also serves the Responses API, so Responses clients pass through to it.
pub fn format_for(engine: Engine, base_url: &str, client: Format) -> Option<Wire> {
    let natural = chat_format(engine, base_url)?;
    if client == Format::OpenAiResponses
        && natural == Wire::Api(Format::OpenAiChat)
        && matches!(engine, Engine::OpenAi | Engine::OpenRouter)
        && host_of(base_url) == "api.openai.com"
    {
        return Some(Wire::Api(Format::OpenAiResponses));
    }
    Some(natural)
}

/// How to write OpenAI chat bodies for this vendor and model (see `OpenAiOptions`): OpenAI
/// itself and Azure want `max_completion_tokens` (reasoning models reject `max_tokens`);
/// DeepSeek needs the reasoning of tool-call turns sent back; OpenRouter forwards
/// `cache_control` to Anthropic; xAI refuses some parameters per model; Databricks takes
/// reasoning as content blocks, and Anthropic's `thinking` for its Claude endpoints.
pub fn openai_options(engine: Engine, base_url: &str, model: &str) -> OpenAiOptions {
    let host = host_of(base_url);
    let mut opts = OpenAiOptions::default();
    if host == "api.openai.com" || matches!(engine, Engine::Azure) {
        opts.max_tokens_field = MaxTokensField::MaxCompletionTokens;
    }
    if host.ends_with("deepseek.com") {
        opts.send_reasoning_content = true;
    }
    if host.ends_with("openrouter.ai") {
        opts.send_cache_control = true;
    }
    if host == "api.x.ai" {
        let model = model.to_ascii_lowercase();
        opts.omit_penalties_and_stop = xai_reasoning_model(&model);
        opts.omit_reasoning_effort = xai_refuses_effort(&model);
    }
    if engine == Engine::AzureDatabricks {
        opts.send_reasoning_blocks = true;
        opts.thinking_object = model.to_ascii_lowercase().contains("claude");
    }
    opts
}

/// Whether a same-format OpenAI chat body for this base_url may need fields removed (see
/// `OpenAiOptions::omitted_fields`): a substring test, so the common case costs no URL parse.
pub fn may_refuse_fields(base_url: &str) -> bool {
    base_url.contains("api.x.ai")
}

/// xAI reasoning models (docs.x.ai, guides/reasoning: "presencePenalty, frequencyPenalty and
/// stop parameters are not supported by reasoning models"): Grok 3 Mini, Grok 4 and later,
/// Grok Code, except the `-non-reasoning` variants.
fn xai_reasoning_model(model: &str) -> bool {
    !model.contains("non-reasoning")
        && (model.starts_with("grok-3-mini")
            || model.starts_with("grok-4")
            || model.starts_with("grok-code"))
}

/// xAI models that answer `reasoning_effort` with an error (docs.x.ai guides/reasoning:
/// "reasoning_effort is not supported by grok-3, grok-4 and grok-4-fast-reasoning"; the fast,
/// 4.20 non-multi-agent and code models have no effort setting either). Later models
/// (grok-3-mini, grok-4.3 and on) take it, so unknown names keep it.
fn xai_refuses_effort(model: &str) -> bool {
    const NO_EFFORT: [&str; 5] = [
        "grok-4-fast",
        "grok-4-1-fast",
        "grok-4.20-0309",
        "grok-code-fast",
        "grok-2",
    ];
    let base = ["grok-3", "grok-4", "grok-4-0709", "grok-4-latest"];
    base.contains(&model)
        || model.starts_with("grok-3-latest")
        || model.starts_with("grok-3-beta")
        || model.starts_with("grok-3-fast")
        || NO_EFFORT.iter().any(|p| model.starts_with(p))
}

fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

fn is_responses_url(base_url: &str) -> bool {
    let path = base_url.split_once('?').map_or(base_url, |(p, _)| p);
    path.trim_end_matches('/').ends_with("/responses")
}

/// Whether and how an attempt streams (Gemini's method and `alt` depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    No,
    Sse,
    /// Gemini's default stream framing: one JSON array, element by element.
    JsonArray,
}

/// The URL of one attempt. The channel's plain `{api_root}{endpoint suffix}` (OpenAI-style
/// engines) is parsed once per channel; engines that build their own URL are parsed per call.
pub fn uri(
    channel: &Channel,
    engine: Engine,
    wire: Wire,
    endpoint: Endpoint,
    upstream_model: &str,
    streaming: Streaming,
) -> Result<http::Uri, http::uri::InvalidUri> {
    let upstream_model = crate::providers::suffixes::upstream_model(engine, upstream_model);
    if endpoint == Endpoint::ChatCompletions
        && wire == Wire::Api(Format::OpenAiResponses)
        && !matches!(engine, Engine::Azure | Engine::AzureDatabricks)
    {
        return format!("{}/responses", channel.api_root).parse();
    }
    let url = match engine {
        Engine::Aws => {
            let root = channel.base_url.trim_end_matches('/');
            let root = root.split_once("/model/").map_or(root, |(r, _)| r);
            let op = if streaming == Streaming::No {
                "converse"
            } else {
                "converse-stream"
            };
            format!("{root}/model/{}/{op}", path_segment(upstream_model))
        }
        Engine::Cohere => {
            // `https://api.cohere.com`, `.../v2` or `.../v2/chat` all mean the v2 chat endpoint.
            let root = channel.base_url.trim_end_matches('/');
            let root = root.strip_suffix("/chat").unwrap_or(root);
            let root = root
                .strip_suffix("/v2")
                .or_else(|| root.strip_suffix("/v1"))
                .unwrap_or(root);
            format!("{root}/v2/chat")
        }
        Engine::Cloudflare => {
            let root = channel.base_url.trim_end_matches('/');
            let root = root.split_once("/client/v4").map_or(root, |(r, _)| r);
            let account = channel.config.cf_account_id.as_deref().unwrap_or_default();
            format!("{root}/client/v4/accounts/{account}/ai/run/{upstream_model}")
        }
        Engine::Azure => azure_url(&channel.base_url, endpoint, upstream_model),
        Engine::AzureDatabricks => databricks_url(&channel.base_url, upstream_model),
        Engine::Claude => format!("{}/messages", channel.api_root),
        Engine::VertexGemini | Engine::VertexClaude => {
            vertex_url(channel, engine, upstream_model, streaming)
        }
        Engine::Gemini => {
            let method = match streaming {
                Streaming::No => "generateContent",
                Streaming::Sse => "streamGenerateContent?alt=sse",
                Streaming::JsonArray => "streamGenerateContent",
            };
            format!(
                "{}/models/{upstream_model}:{method}",
                gemini_root(&channel.base_url)
            )
        }
        _ => return channel.endpoint_uri(endpoint),
    };
    url.parse()
}

/// A model id as one URL path segment (Bedrock ids contain `:`).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Vertex AI: `{root}/v1/projects/{p}/locations/{r}/publishers/{google|anthropic}/models/{m}:{method}`,
/// or the Express-mode path `{root}/v1/publishers/google/models/{m}:{method}` when the channel
/// has no project. The root is the regional host (`aiplatform.googleapis.com` for `global`)
/// unless base_url names another host (a proxy such as Cloudflare AI Gateway, or a test).
fn vertex_url(channel: &Channel, engine: Engine, model: &str, streaming: Streaming) -> String {
    let region = channel
        .vertex
        .as_ref()
        .map_or("global", |v| v.region.as_str());
    let base = channel.base_url.trim_end_matches('/');
    let host = host_of(base);
    let root = if base.is_empty() || host.ends_with("aiplatform.googleapis.com") {
        if region == "global" {
            "https://aiplatform.googleapis.com".to_string()
        } else {
            format!("https://{region}-aiplatform.googleapis.com")
        }
    } else {
        base.strip_suffix("/v1").unwrap_or(base).to_string()
    };
    let (publisher, method) = match (engine, streaming) {
        (Engine::VertexClaude, Streaming::No) => ("anthropic", "rawPredict"),
        (Engine::VertexClaude, _) => ("anthropic", "streamRawPredict"),
        (_, Streaming::No) => ("google", "generateContent"),
        (_, Streaming::Sse) => ("google", "streamGenerateContent?alt=sse"),
        (_, Streaming::JsonArray) => ("google", "streamGenerateContent"),
    };
    match &channel.vertex {
        Some(v) => format!(
            "{root}/v1/projects/{}/locations/{}/publishers/{publisher}/models/{model}:{method}",
            v.project, v.region
        ),
        None => format!("{root}/v1/publishers/{publisher}/models/{model}:{method}"),
    }
}

/// Engine-specific changes to a body already in the upstream's format: Anthropic on Vertex
/// takes the model from the URL and wants `anthropic_version: vertex-2023-10-16` in the body.
pub fn patch_body(engine: Engine, body: bytes::Bytes) -> bytes::Bytes {
    use protocol::body::{Edit, ObjectView, rewrite};
    if engine != Engine::VertexClaude {
        return body;
    }
    let Ok(view) = ObjectView::parse(&body) else {
        return body;
    };
    bytes::Bytes::from(rewrite(
        &body,
        &view,
        &[
            Edit::Remove { key: "model" },
            Edit::Set {
                key: "anthropic_version",
                raw_json: br#""vertex-2023-10-16""#,
            },
        ],
    ))
}

/// `https://host/v1beta` from any Gemini base_url (bare host, `/v1beta`, `/v1beta/models/...`).
fn gemini_root(base_url: &str) -> String {
    let base = base_url.split_once('?').map_or(base_url, |(p, _)| p);
    let base = base.trim_end_matches('/');
    for version in ["/v1beta", "/v1alpha", "/v1"] {
        if let Some(at) = base
            .find(&format!("{version}/"))
            .or_else(|| base.ends_with(version).then(|| base.len() - version.len()))
        {
            return base[..at + version.len()].to_string();
        }
    }
    format!("{base}/v1beta")
}

/// Azure OpenAI: `{base}/openai/deployments/{deployment}/{op}?api-version=...`, unless the
/// base_url is already a full endpoint (AI Foundry `models/chat/completions`, or one carrying
/// its own `api-version`), which is used as is.
fn azure_url(base_url: &str, endpoint: Endpoint, deployment: &str) -> String {
    if base_url.contains("models/chat/completions") || base_url.contains("api-version=") {
        return base_url.to_string();
    }
    let root = base_url.trim_end_matches('/');
    let root = root.split_once("/openai").map_or(root, |(r, _)| r);
    format!(
        "{root}/openai/deployments/{deployment}{}?api-version={AZURE_API_VERSION}",
        endpoint.suffix()
    )
}

/// Databricks: `POST {workspace}/serving-endpoints/{endpoint}/invocations` (REST API
/// reference, "Query a serving endpoint"), whatever part of that path the base_url names.
fn databricks_url(base_url: &str, endpoint_name: &str) -> String {
    let root = base_url.trim_end_matches('/');
    let root = root
        .split_once("/serving-endpoints")
        .map_or(root, |(r, _)| r);
    format!(
        "{root}/serving-endpoints/{}/invocations",
        path_segment(endpoint_name)
    )
}

/// Auth (and required protocol) headers for one key of this engine. Databricks takes its
/// personal access tokens (and OAuth tokens) as `Authorization: Bearer`, like the default.
pub fn auth_headers(engine: Engine, key: &Credential, out: &mut Vec<(HeaderName, HeaderValue)>) {
    match engine {
        Engine::Azure => {
            if let Some(v) = key.bare() {
                out.push((HeaderName::from_static("api-key"), v));
            }
        }
        Engine::Claude => {
            if let Some(v) = key.bare() {
                out.push((HeaderName::from_static("x-api-key"), v));
            }
            out.push((
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ));
        }
        // Vertex with an API key is Express mode, which takes the same header as AI Studio.
        Engine::Gemini | Engine::VertexGemini | Engine::VertexClaude => {
            if let Some(v) = key.bare() {
                out.push((HeaderName::from_static("x-goog-api-key"), v));
            }
        }
        _ => {
            if let Some(v) = key.bearer() {
                out.push((header::AUTHORIZATION, v));
            }
        }
    }
}

/// Required protocol headers for keyless channels of this engine.
pub fn keyless_headers(engine: Engine, out: &mut Vec<(HeaderName, HeaderValue)>) {
    if engine == Engine::Claude {
        out.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_roots() {
        assert_eq!(
            gemini_root("https://generativelanguage.googleapis.com/v1beta"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            gemini_root(
                "https://generativelanguage.googleapis.com/v1beta/models/x:generateContent"
            ),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            gemini_root("https://generativelanguage.googleapis.com/"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            gemini_root("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn azure_urls() {
        assert_eq!(
            azure_url(
                "https://r.openai.azure.com",
                Endpoint::ChatCompletions,
                "gpt4o-prod"
            ),
            "https://r.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01-preview"
        );
        assert_eq!(
            azure_url(
                "https://r.openai.azure.com/openai/",
                Endpoint::Embeddings,
                "emb"
            ),
            "https://r.openai.azure.com/openai/deployments/emb/embeddings?api-version=2025-01-01-preview"
        );
        let foundry = "https://x.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview";
        assert_eq!(azure_url(foundry, Endpoint::ChatCompletions, "m"), foundry);
    }

    #[test]
    fn databricks_urls_and_auth() {
        let want = "https://adb-1.2.azuredatabricks.net/serving-endpoints/databricks-claude-sonnet-4/invocations";
        for base in [
            "https://adb-1.2.azuredatabricks.net",
            "https://adb-1.2.azuredatabricks.net/",
            "https://adb-1.2.azuredatabricks.net/serving-endpoints",
            "https://adb-1.2.azuredatabricks.net/serving-endpoints/other/invocations",
        ] {
            assert_eq!(databricks_url(base, "databricks-claude-sonnet-4"), want);
        }
        let mut h = Vec::new();
        auth_headers(Engine::AzureDatabricks, &Credential::new("dapi123"), &mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0, header::AUTHORIZATION);
        assert_eq!(h[0].1, "Bearer dapi123");
        assert_eq!(
            chat_format(Engine::AzureDatabricks, "https://adb-1.azuredatabricks.net"),
            Some(Wire::Databricks)
        );
        let claude = openai_options(
            Engine::AzureDatabricks,
            "https://x.azuredatabricks.net",
            "databricks-claude-sonnet-4",
        );
        assert!(claude.send_reasoning_blocks && claude.thinking_object);
        let oss = openai_options(
            Engine::AzureDatabricks,
            "https://x.azuredatabricks.net",
            "databricks-gpt-oss-120b",
        );
        assert!(oss.send_reasoning_blocks && !oss.thinking_object);
    }

    /// docs.x.ai guides/reasoning, and which models take `reasoning_effort`.
    #[test]
    fn xai_quirks_by_model() {
        let xai = |m: &str| {
            let o = openai_options(Engine::OpenAi, "https://api.x.ai/v1", m);
            (o.omit_penalties_and_stop, o.omit_reasoning_effort)
        };
        assert_eq!(xai("grok-3-mini"), (true, false));
        assert_eq!(xai("grok-3"), (false, true));
        assert_eq!(xai("grok-4"), (true, true));
        assert_eq!(xai("grok-4-0709"), (true, true));
        assert_eq!(xai("grok-4-fast-reasoning"), (true, true));
        assert_eq!(xai("grok-4-1-fast-non-reasoning"), (false, true));
        assert_eq!(xai("grok-code-fast-1"), (true, true));
        assert_eq!(xai("grok-4.3"), (true, false));
        assert_eq!(xai("Grok-4"), (true, true));
        // Only xAI's own API: the same model through OpenRouter keeps every field.
        let o = openai_options(
            Engine::OpenAi,
            "https://openrouter.ai/api/v1",
            "x-ai/grok-4",
        );
        assert_eq!(o.omitted_fields().count(), 0);
    }

    #[test]
    fn formats_by_engine() {
        assert_eq!(
            chat_format(Engine::Claude, "https://api.anthropic.com"),
            Some(Wire::Api(Format::Anthropic))
        );
        assert_eq!(
            chat_format(Engine::OpenAi, "https://api.openai.com/v1/responses"),
            Some(Wire::Api(Format::OpenAiResponses))
        );
        assert_eq!(
            chat_format(Engine::OpenAi, "https://api.openai.com/v1"),
            Some(Wire::Api(Format::OpenAiChat))
        );
        assert_eq!(
            chat_format(Engine::Cohere, "https://api.cohere.com"),
            Some(Wire::Cohere)
        );
        assert_eq!(
            chat_format(Engine::DoubaoTranslation, "https://x.volces.com"),
            None
        );
        assert_eq!(
            path_segment("anthropic.claude-v2:1"),
            "anthropic.claude-v2%3A1"
        );
    }
}
