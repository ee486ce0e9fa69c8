//! Which endpoint a request is for, and the path parameters some carry
//! (Gemini's model, Azure's deployment).

use http::Method;

use crate::LimitFlavor;
use crate::flavor::Dialect;
use crate::images;

/// The endpoint that served a request (see [`crate::RecordedRequest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses` (OpenAI Responses API).
    Responses,
    /// `GET /v1/responses/{id}`.
    ResponseGet,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/images/generations`.
    Images,
    /// `POST /v1/audio/transcriptions`.
    Transcriptions,
    /// `POST /v1/audio/translations`.
    Translations,
    /// `POST /v1/audio/speech`.
    Speech,
    /// `POST /v1/moderations`.
    Moderations,
    /// `POST /v1/messages` (Anthropic Messages API).
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// `POST /v1beta/models/{model}:generateContent` (or `/v1/...`).
    GeminiGenerateContent,
    /// `POST /v1beta/models/{model}:streamGenerateContent` (or `/v1/...`).
    GeminiStreamGenerateContent,
    /// `POST /v1beta/models/{model}:countTokens` (or `/v1/...`).
    GeminiCountTokens,
    /// `GET /v1beta/models` (or `GET /v1/models` with a Google key).
    GeminiModels,
    /// `GET /v1beta/models/{model}` (or `GET /v1/models/{model}` with a
    /// Google key).
    GeminiModel,
    /// `POST /openai/deployments/{deployment}/chat/completions`.
    AzureChatCompletions,
    /// `POST /openai/deployments/{deployment}/embeddings`.
    AzureEmbeddings,
    /// `POST /openai/v1/chat/completions` (Azure's v1 API).
    AzureV1ChatCompletions,
    /// `POST /openai/v1/responses`.
    AzureV1Responses,
    /// `POST /openai/v1/embeddings`.
    AzureV1Embeddings,
    /// `POST /models/chat/completions` (Azure AI Foundry model inference).
    FoundryChatCompletions,
    /// `POST /models/embeddings`.
    FoundryEmbeddings,
    /// `POST /model/{modelId}/converse` (Amazon Bedrock Runtime).
    BedrockConverse,
    /// `POST /model/{modelId}/converse-stream` (AWS event stream).
    BedrockConverseStream,
    /// `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`.
    VertexGenerateContent,
    /// `POST /v1/projects/.../publishers/google/models/{m}:streamGenerateContent`.
    VertexStreamGenerateContent,
    /// `POST /v1/publishers/google/models/{m}:generateContent` (Vertex express mode).
    VertexExpressGenerateContent,
    /// `POST /v1/publishers/google/models/{m}:streamGenerateContent`.
    VertexExpressStreamGenerateContent,
    /// `POST /v1/projects/.../publishers/anthropic/models/{m}:rawPredict`.
    VertexRawPredict,
    /// `POST /v1/projects/.../publishers/anthropic/models/{m}:streamRawPredict`.
    VertexStreamRawPredict,
    /// `POST /token` (Google OAuth 2.0 token endpoint).
    GoogleToken,
    /// `POST /v2/chat` (Cohere Chat API v2).
    CohereChat,
    /// `POST /client/v4/accounts/{account}/ai/run/{model}` (Cloudflare Workers AI).
    CloudflareRun,
    /// `POST /serving-endpoints/{name}/invocations` (Databricks Model Serving).
    DatabricksInvocations,
    /// `POST /serving-endpoints/chat/completions` (Databricks, endpoint named in `model`).
    DatabricksChatCompletions,
    /// `GET /mock-files/...` (generated image URLs).
    File,
    /// Anything else (answered 404).
    NotFound,
}

const GEMINI_MODELS: &str = "/v1beta/models";
const AZURE_DEPLOYMENTS: &str = "/openai/deployments/";

/// What follows `models/` in a Gemini path, under either API version.
fn gemini_rest(path: &str) -> Option<&str> {
    path.strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))
}

impl Endpoint {
    /// `google_key`: the request carries a Gemini key (`x-goog-api-key` or
    /// `?key=`) and no bearer token, which makes `GET /v1/models` Gemini's.
    pub(crate) fn of(method: &Method, path: &str, google_key: bool) -> Endpoint {
        let post = method == Method::POST;
        let get = method == Method::GET;
        if get && google_key && (path == "/v1/models" || path.starts_with("/v1/models/")) {
            return match path {
                "/v1/models" => Endpoint::GeminiModels,
                p => Endpoint::gemini(method, p),
            };
        }
        match path {
            "/v1/chat/completions" if post => Endpoint::ChatCompletions,
            "/v1/responses" if post => Endpoint::Responses,
            "/v1/embeddings" if post => Endpoint::Embeddings,
            "/v1/images/generations" if post => Endpoint::Images,
            "/v1/audio/transcriptions" if post => Endpoint::Transcriptions,
            "/v1/audio/translations" if post => Endpoint::Translations,
            "/v1/audio/speech" if post => Endpoint::Speech,
            "/v1/moderations" if post => Endpoint::Moderations,
            "/v1/messages" if post => Endpoint::AnthropicMessages,
            "/v1/messages/count_tokens" if post => Endpoint::AnthropicCountTokens,
            "/v1/models" if get => Endpoint::Models,
            GEMINI_MODELS if get => Endpoint::GeminiModels,
            "/openai/v1/chat/completions" if post => Endpoint::AzureV1ChatCompletions,
            "/openai/v1/responses" if post => Endpoint::AzureV1Responses,
            "/openai/v1/embeddings" if post => Endpoint::AzureV1Embeddings,
            "/models/chat/completions" if post => Endpoint::FoundryChatCompletions,
            "/models/embeddings" if post => Endpoint::FoundryEmbeddings,
            "/token" if post => Endpoint::GoogleToken,
            "/v2/chat" if post => Endpoint::CohereChat,
            "/serving-endpoints/chat/completions" if post => Endpoint::DatabricksChatCompletions,
            p if post && crate::databricks::invocations_name(p).is_some() => {
                Endpoint::DatabricksInvocations
            }
            p if post && p.starts_with("/model/") => match p.rsplit_once('/') {
                Some((_, "converse")) if crate::bedrock::model_in_path(p).is_some() => {
                    Endpoint::BedrockConverse
                }
                Some((_, "converse-stream")) if crate::bedrock::model_in_path(p).is_some() => {
                    Endpoint::BedrockConverseStream
                }
                _ => Endpoint::NotFound,
            },
            p if post && crate::cloudflare::split_path(p).is_some() => Endpoint::CloudflareRun,
            p if post && vertex_split(p).is_some() => Endpoint::vertex(p),
            p if post && p.starts_with("/v1/models/") && p.contains(':') => {
                Endpoint::gemini(method, p)
            }
            p if get && p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => {
                Endpoint::Model
            }
            p if get && p.starts_with("/v1/responses/") && p.len() > "/v1/responses/".len() => {
                Endpoint::ResponseGet
            }
            p if get && p.starts_with(images::FILES_PREFIX) => Endpoint::File,
            p if p.starts_with("/v1beta/models/") => Endpoint::gemini(method, p),
            p if post && p.starts_with(AZURE_DEPLOYMENTS) => match azure_split(p) {
                Some((_, "chat/completions")) => Endpoint::AzureChatCompletions,
                Some((_, "embeddings")) => Endpoint::AzureEmbeddings,
                _ => Endpoint::NotFound,
            },
            _ => Endpoint::NotFound,
        }
    }

    fn vertex(path: &str) -> Endpoint {
        let Some(v) = vertex_split(path) else {
            return Endpoint::NotFound;
        };
        match (v.project.is_some(), v.publisher, v.method) {
            (true, "google", "generateContent") => Endpoint::VertexGenerateContent,
            (true, "google", "streamGenerateContent") => Endpoint::VertexStreamGenerateContent,
            (false, "google", "generateContent") => Endpoint::VertexExpressGenerateContent,
            (false, "google", "streamGenerateContent") => {
                Endpoint::VertexExpressStreamGenerateContent
            }
            (true, "anthropic", "rawPredict") => Endpoint::VertexRawPredict,
            (true, "anthropic", "streamRawPredict") => Endpoint::VertexStreamRawPredict,
            _ => Endpoint::NotFound,
        }
    }

    /// Vertex routes authenticated with an OAuth bearer token (the project
    /// routes; express mode takes an API key).
    pub(crate) fn is_vertex_project(self) -> bool {
        matches!(
            self,
            Endpoint::VertexGenerateContent
                | Endpoint::VertexStreamGenerateContent
                | Endpoint::VertexRawPredict
                | Endpoint::VertexStreamRawPredict
        )
    }

    /// Endpoints that answer with the Gemini handlers.
    pub(crate) fn is_gemini_generate(self) -> bool {
        matches!(
            self,
            Endpoint::GeminiGenerateContent
                | Endpoint::GeminiStreamGenerateContent
                | Endpoint::VertexGenerateContent
                | Endpoint::VertexStreamGenerateContent
                | Endpoint::VertexExpressGenerateContent
                | Endpoint::VertexExpressStreamGenerateContent
        )
    }

    /// Whether the endpoint always streams (by its method, not its body).
    pub(crate) fn streams(self) -> bool {
        matches!(
            self,
            Endpoint::GeminiStreamGenerateContent
                | Endpoint::VertexStreamGenerateContent
                | Endpoint::VertexExpressStreamGenerateContent
                | Endpoint::VertexStreamRawPredict
                | Endpoint::BedrockConverseStream
        )
    }

    fn gemini(method: &Method, path: &str) -> Endpoint {
        let rest = gemini_rest(path).unwrap_or("");
        match rest.rsplit_once(':') {
            Some((model, action)) if !model.is_empty() && method == Method::POST => match action {
                "generateContent" => Endpoint::GeminiGenerateContent,
                "streamGenerateContent" => Endpoint::GeminiStreamGenerateContent,
                "countTokens" => Endpoint::GeminiCountTokens,
                _ => Endpoint::NotFound,
            },
            None if method == Method::GET && !rest.is_empty() && !rest.contains('/') => {
                Endpoint::GeminiModel
            }
            _ => Endpoint::NotFound,
        }
    }

    /// Whose wire dialect the endpoint speaks: the native routes always speak
    /// their provider's; the OpenAI routes speak the flavour's (so the Groq
    /// or Gemini flavour models their OpenAI-compatible endpoints).
    pub(crate) fn dialect(self, flavor: LimitFlavor) -> Dialect {
        match self {
            Endpoint::AnthropicMessages
            | Endpoint::AnthropicCountTokens
            | Endpoint::VertexRawPredict
            | Endpoint::VertexStreamRawPredict => Dialect::Anthropic,
            Endpoint::BedrockConverse | Endpoint::BedrockConverseStream => Dialect::Bedrock,
            Endpoint::CohereChat => Dialect::Cohere,
            Endpoint::CloudflareRun => Dialect::Cloudflare,
            Endpoint::DatabricksInvocations | Endpoint::DatabricksChatCompletions => {
                Dialect::Databricks
            }
            Endpoint::VertexGenerateContent
            | Endpoint::VertexStreamGenerateContent
            | Endpoint::VertexExpressGenerateContent
            | Endpoint::VertexExpressStreamGenerateContent
            | Endpoint::GoogleToken
            | Endpoint::GeminiGenerateContent
            | Endpoint::GeminiStreamGenerateContent
            | Endpoint::GeminiCountTokens
            | Endpoint::GeminiModels
            | Endpoint::GeminiModel => Dialect::Gemini,
            e if e.is_azure() => Dialect::Azure,
            _ => Dialect::of(flavor),
        }
    }

    pub(crate) fn is_azure(self) -> bool {
        matches!(
            self,
            Endpoint::AzureChatCompletions
                | Endpoint::AzureEmbeddings
                | Endpoint::AzureV1ChatCompletions
                | Endpoint::AzureV1Responses
                | Endpoint::AzureV1Embeddings
                | Endpoint::FoundryChatCompletions
                | Endpoint::FoundryEmbeddings
        )
    }

    /// Endpoints whose request body is a JSON object.
    pub(crate) fn takes_json(self) -> bool {
        !matches!(
            self,
            Endpoint::Models
                | Endpoint::Model
                | Endpoint::ResponseGet
                | Endpoint::GeminiModels
                | Endpoint::GeminiModel
                | Endpoint::Transcriptions
                | Endpoint::Translations
                | Endpoint::File
                | Endpoint::GoogleToken
                | Endpoint::NotFound
        )
    }

    /// Azure's operation name, as its 429 messages quote it.
    pub(crate) fn azure_operation(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::AzureChatCompletions
            | Endpoint::AzureV1ChatCompletions
            | Endpoint::FoundryChatCompletions => "ChatCompletions_Create",
            Endpoint::Embeddings
            | Endpoint::AzureEmbeddings
            | Endpoint::AzureV1Embeddings
            | Endpoint::FoundryEmbeddings => "Embeddings_Create",
            Endpoint::Responses | Endpoint::AzureV1Responses => "Responses_Create",
            Endpoint::ResponseGet => "Responses_Get",
            Endpoint::Images => "ImageGenerations_Create",
            Endpoint::Transcriptions => "Transcriptions_Create",
            Endpoint::Translations => "Translations_Create",
            Endpoint::Speech => "Speech_Create",
            Endpoint::Moderations => "Moderations_Create",
            Endpoint::AnthropicMessages
            | Endpoint::VertexRawPredict
            | Endpoint::VertexStreamRawPredict => "Messages_Create",
            Endpoint::BedrockConverse | Endpoint::BedrockConverseStream => "Converse",
            Endpoint::VertexGenerateContent
            | Endpoint::VertexStreamGenerateContent
            | Endpoint::VertexExpressGenerateContent
            | Endpoint::VertexExpressStreamGenerateContent => "GenerateContent",
            Endpoint::CohereChat
            | Endpoint::CloudflareRun
            | Endpoint::DatabricksInvocations
            | Endpoint::DatabricksChatCompletions => "ChatCompletions_Create",
            Endpoint::GoogleToken => "Token",
            Endpoint::AnthropicCountTokens => "Messages_CountTokens",
            Endpoint::GeminiGenerateContent | Endpoint::GeminiStreamGenerateContent => {
                "GenerateContent"
            }
            Endpoint::GeminiCountTokens => "CountTokens",
            Endpoint::Models | Endpoint::GeminiModels => "Models_List",
            Endpoint::Model | Endpoint::GeminiModel | Endpoint::File | Endpoint::NotFound => {
                "Models_Get"
            }
        }
    }
}

/// A Vertex AI model path, project-scoped or express.
pub(crate) struct VertexPath<'a> {
    pub project: Option<&'a str>,
    pub location: Option<&'a str>,
    pub publisher: &'a str,
    pub model: &'a str,
    pub method: &'a str,
}

/// Splits `/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/{pub}/models/{m}:{method}`
/// and the express form `/{v1|v1beta1}/publishers/{pub}/models/{m}:{method}`.
pub(crate) fn vertex_split(path: &str) -> Option<VertexPath<'_>> {
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v1beta1/"))?;
    let (project, location, rest) = match rest.strip_prefix("projects/") {
        Some(r) => {
            let (project, r) = r.split_once('/')?;
            let r = r.strip_prefix("locations/")?;
            let (location, r) = r.split_once('/')?;
            (Some(project), Some(location), r)
        }
        None => (None, None, rest),
    };
    let rest = rest.strip_prefix("publishers/")?;
    let (publisher, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("models/")?;
    let (model, method) = rest.rsplit_once(':')?;
    let ok = |s: &str| !s.is_empty() && !s.contains('/');
    (ok(publisher) && ok(model) && project.is_none_or(ok) && location.is_none_or(ok)).then_some(
        VertexPath {
            project,
            location,
            publisher,
            model,
            method,
        },
    )
}

/// `(deployment, operation)` of an Azure deployment path.
fn azure_split(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(AZURE_DEPLOYMENTS)?;
    let (deployment, op) = rest.split_once('/')?;
    (!deployment.is_empty()).then_some((deployment, op))
}

/// The model a path names: Gemini's `models/{model}`, Azure's deployment.
pub(crate) fn model_in_path(endpoint: Endpoint, path: &str) -> Option<&str> {
    match endpoint {
        Endpoint::GeminiGenerateContent
        | Endpoint::GeminiStreamGenerateContent
        | Endpoint::GeminiCountTokens => gemini_rest(path)
            .and_then(|r| r.rsplit_once(':'))
            .map(|(m, _)| m),
        Endpoint::GeminiModel => gemini_rest(path),
        Endpoint::AzureChatCompletions | Endpoint::AzureEmbeddings => {
            azure_split(path).map(|(d, _)| d)
        }
        Endpoint::Model => path.strip_prefix("/v1/models/"),
        Endpoint::VertexGenerateContent
        | Endpoint::VertexStreamGenerateContent
        | Endpoint::VertexExpressGenerateContent
        | Endpoint::VertexExpressStreamGenerateContent
        | Endpoint::VertexRawPredict
        | Endpoint::VertexStreamRawPredict => vertex_split(path).map(|v| v.model),
        Endpoint::CloudflareRun => crate::cloudflare::split_path(path).map(|(_, m)| m),
        Endpoint::DatabricksInvocations => crate::databricks::invocations_name(path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = |p: &str| Endpoint::of(&Method::POST, p, false);
        let get = |p: &str| Endpoint::of(&Method::GET, p, false);
        assert_eq!(post("/v1/chat/completions"), Endpoint::ChatCompletions);
        assert_eq!(get("/v1/chat/completions"), Endpoint::NotFound);
        assert_eq!(get("/v1/models/gpt-4o"), Endpoint::Model);
        assert_eq!(get("/v1/models/"), Endpoint::NotFound);
        assert_eq!(post("/v1/xyz"), Endpoint::NotFound);
        assert_eq!(post("/v1/messages"), Endpoint::AnthropicMessages);
        assert_eq!(
            post("/v1/messages/count_tokens"),
            Endpoint::AnthropicCountTokens
        );
        assert_eq!(
            post("/v1beta/models/gemini-2.5-flash:generateContent"),
            Endpoint::GeminiGenerateContent
        );
        assert_eq!(
            post("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Endpoint::GeminiStreamGenerateContent
        );
        assert_eq!(
            post("/v1beta/models/gemini-2.5-flash:embedContent"),
            Endpoint::NotFound
        );
        assert_eq!(post("/v1beta/models/:generateContent"), Endpoint::NotFound);
        assert_eq!(get("/v1beta/models"), Endpoint::GeminiModels);
        assert_eq!(get("/v1beta/models/gemini-2.5-pro"), Endpoint::GeminiModel);
        assert_eq!(
            post("/openai/deployments/gpt-4o/chat/completions"),
            Endpoint::AzureChatCompletions
        );
        assert_eq!(
            post("/openai/deployments//chat/completions"),
            Endpoint::NotFound
        );
        assert_eq!(
            post("/openai/deployments/x/images/generations"),
            Endpoint::NotFound
        );
        assert_eq!(
            post("/models/chat/completions"),
            Endpoint::FoundryChatCompletions
        );
        assert_eq!(get("/v1/responses/resp_1"), Endpoint::ResponseGet);
        // Gemini's v1 paths share /v1 with OpenAI's.
        assert_eq!(
            post("/v1/models/gemini-2.5-flash:generateContent"),
            Endpoint::GeminiGenerateContent
        );
        assert_eq!(get("/v1/models"), Endpoint::Models);
        assert_eq!(
            Endpoint::of(&Method::GET, "/v1/models", true),
            Endpoint::GeminiModels
        );
        assert_eq!(
            Endpoint::of(&Method::GET, "/v1/models/gemini-2.5-pro", true),
            Endpoint::GeminiModel
        );
    }

    #[test]
    fn new_provider_routes() {
        let post = |p: &str| Endpoint::of(&Method::POST, p, false);
        assert_eq!(
            post("/model/anthropic.claude-v2%3A1/converse"),
            Endpoint::BedrockConverse
        );
        assert_eq!(
            post("/model/amazon.nova-lite-v1:0/converse-stream"),
            Endpoint::BedrockConverseStream
        );
        assert_eq!(post("/model/x/invoke"), Endpoint::NotFound);
        assert_eq!(
            post(
                "/v1/projects/p1/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
            ),
            Endpoint::VertexGenerateContent
        );
        assert_eq!(
            post(
                "/v1/projects/p1/locations/global/publishers/google/models/gemini-2.5-flash:streamGenerateContent"
            ),
            Endpoint::VertexStreamGenerateContent
        );
        assert_eq!(
            post("/v1/publishers/google/models/gemini-2.5-flash:generateContent"),
            Endpoint::VertexExpressGenerateContent
        );
        assert_eq!(
            post(
                "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
            ),
            Endpoint::VertexRawPredict
        );
        assert_eq!(
            post(
                "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
            ),
            Endpoint::VertexStreamRawPredict
        );
        assert_eq!(
            post("/v1/publishers/anthropic/models/claude-x:rawPredict"),
            Endpoint::NotFound
        );
        assert_eq!(post("/token"), Endpoint::GoogleToken);
        assert_eq!(post("/v2/chat"), Endpoint::CohereChat);
        assert_eq!(
            post("/serving-endpoints/databricks-claude-sonnet-4/invocations"),
            Endpoint::DatabricksInvocations
        );
        assert_eq!(
            post("/serving-endpoints/chat/completions"),
            Endpoint::DatabricksChatCompletions
        );
        assert_eq!(
            post("/serving-endpoints/x/y/invocations"),
            Endpoint::NotFound
        );
        assert_eq!(
            post("/client/v4/accounts/abc/ai/run/@cf/meta/llama-3.1-8b-instruct"),
            Endpoint::CloudflareRun
        );
        assert_eq!(
            model_in_path(
                Endpoint::CloudflareRun,
                "/client/v4/accounts/abc/ai/run/@cf/meta/llama-3.1-8b-instruct"
            ),
            Some("@cf/meta/llama-3.1-8b-instruct")
        );
    }

    #[test]
    fn path_models() {
        assert_eq!(
            model_in_path(
                Endpoint::GeminiGenerateContent,
                "/v1beta/models/gemini-2.5-flash:generateContent"
            ),
            Some("gemini-2.5-flash")
        );
        assert_eq!(
            model_in_path(
                Endpoint::AzureChatCompletions,
                "/openai/deployments/my-gpt/chat/completions"
            ),
            Some("my-gpt")
        );
    }
}
