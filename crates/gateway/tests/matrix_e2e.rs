//! The end-to-end matrix: an OpenAI chat client through llmux to every upstream wire format
//! mock-upstream fakes (OpenAI, Anthropic, Gemini, Vertex Gemini and Claude behind a service
//! account, Bedrock behind SigV4, Cohere, Cloudflare, Azure, Databricks, a Responses upstream),
//! each for
//! text, streaming, tools, parallel tools, images, reasoning and upstream errors. Every case
//! checks what the client got (exact mock text, tool calls, usage, finish reasons) and what the
//! upstream received (endpoint, credentials, body shape).
//!
//! Each upstream runs all its cases and reports every failing one at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::encoding::Pkcs8V1Der;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use common::*;
use mock_upstream::{
    AwsCredentials, Endpoint, Fault, FaultKind, GoogleServiceAccount, MockOptions, MockServer,
    RecordedRequest,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_KEY: &str = "sk-client";
const AWS_AK: &str = "AKIDMATRIXEXAMPLE";
const AWS_SK: &str = "matrix/secret+KEY0123456789abcdefghijklm";
const AWS_REGION: &str = "us-west-2";
const SA_EMAIL: &str = "llmux-matrix@mock-project.iam.gserviceaccount.com";
const THINKING: &str = "Let me think about how to answer this.";
/// A 1×1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Up {
    OpenAi,
    Anthropic,
    Gemini,
    VertexGemini,
    VertexClaude,
    Bedrock,
    Cohere,
    Cloudflare,
    Azure,
    Databricks,
    Responses,
}

impl Up {
    /// The model the client asks for (the upstream's own id).
    fn model(self) -> &'static str {
        match self {
            Up::OpenAi | Up::Responses => "gpt-4o",
            Up::Anthropic => "claude-3-7-sonnet-20250219",
            Up::Gemini | Up::VertexGemini => "gemini-2.5-flash",
            Up::VertexClaude => "claude-sonnet-4@20250514",
            Up::Bedrock => "anthropic.claude-3-7-sonnet-20250219-v1:0",
            Up::Cohere => "command-a-03-2025",
            Up::Cloudflare => "@cf/meta/llama-3.1-8b-instruct",
            Up::Azure => "gpt-4o-mini",
            Up::Databricks => "databricks-claude-sonnet-4",
        }
    }

    /// Upstreams that take images only inline (llmux fetches http URLs for them).
    fn inlines_images(self) -> bool {
        matches!(self, Up::Gemini | Up::VertexGemini | Up::Bedrock)
    }

    /// Whether the upstream "thinks" when asked to reason (the mock's chat completions and
    /// Cloudflare never do).
    fn thinks(self) -> bool {
        !matches!(self, Up::OpenAi | Up::Azure | Up::Cloudflare)
    }

    /// Prompt tokens llmux reports for a prompt the mock counts as `n`: Cohere's
    /// `usage.tokens` adds its preamble (10 in the mock) to the billed count.
    fn prompt(self, n: u64) -> u64 {
        if self == Up::Cohere { n + 10 } else { n }
    }
}

/// Serves one PNG over plain HTTP on 127.0.0.1, counting fetches.
struct ImageServer {
    url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn png() -> Vec<u8> {
    protocol::base64::decode(PNG_B64).unwrap()
}

async fn image_server() -> ImageServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = png();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    ImageServer {
        url: format!("http://{addr}/cat.png"),
        hits,
        task,
    }
}

struct Env {
    up: Up,
    mock: MockServer,
    gw: Gateway,
    images: ImageServer,
}

/// PEM of a PKCS#8 private key.
fn pem(der: &[u8]) -> String {
    let b64 = protocol::base64::encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

async fn env(up: Up) -> Env {
    let mut opts = MockOptions {
        aws_credentials: vec![AwsCredentials::new(AWS_AK, AWS_SK)],
        aws_region: AWS_REGION.to_owned(),
        ..MockOptions::default()
    };
    let mut private_pem = String::new();
    if matches!(up, Up::VertexGemini | Up::VertexClaude) {
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der<'static> = kp.as_der().unwrap();
        private_pem = pem(pkcs8.as_ref());
        // `public_key()` is the PKCS#1 RSAPublicKey DER, which the mock accepts.
        opts.google_service_accounts = vec![GoogleServiceAccount::from_der(
            SA_EMAIL,
            kp.public_key().as_ref(),
        )];
    }
    let mock = MockServer::start(opts).await.unwrap();
    let root = mock.root_url();
    let model = up.model();
    let provider = match up {
        Up::OpenAi => format!("base_url: {root}/v1\n    api: sk-up"),
        Up::Anthropic => format!("base_url: {root}/v1/messages\n    api: sk-ant"),
        Up::Gemini => format!("base_url: {root}/v1beta\n    api: AIza-up"),
        Up::VertexGemini | Up::VertexClaude => format!(
            "project_id: mock-project\n    region: us-east5\n    client_email: {SA_EMAIL}\n    private_key: {}\n    token_uri: {root}/token",
            serde_json::to_string(&private_pem).unwrap()
        ),
        Up::Bedrock => format!(
            "base_url: {root}\n    engine: aws\n    aws_access_key: {AWS_AK}\n    aws_secret_key: {AWS_SK}\n    region: {AWS_REGION}"
        ),
        Up::Cohere => format!("base_url: {root}\n    engine: cohere\n    api: co-key"),
        Up::Cloudflare => "cf_account_id: acc123\n    api: cf-token".to_owned(),
        Up::Azure => format!("base_url: {root}\n    engine: azure\n    api: az-key"),
        Up::Databricks => {
            format!("base_url: {root}\n    engine: azure-databricks\n    api: dapi-up")
        }
        Up::Responses => format!("base_url: {root}/v1/responses\n    api: sk-resp"),
    };
    let yaml = format!(
        "providers:\n  - provider: up\n    {provider}\n    model:\n      - \"{model}\"\napi_keys:\n  - api: {CLIENT_KEY}\n"
    );
    let mut rt = compile(&yaml);
    // The image server is on 127.0.0.1, which llmux refuses unless told otherwise.
    rt.settings.media.allow_private = true;
    if matches!(up, Up::VertexGemini | Up::VertexClaude | Up::Cloudflare) {
        // Vertex and Cloudflare channels get their provider's fixed host from the config;
        // point the compiled channel at the mock instead.
        let ch = Arc::get_mut(&mut rt.channels[0]).expect("channel not shared yet");
        ch.base_url = root.clone();
    }
    let gw = start_runtime(rt).await;
    Env {
        up,
        mock,
        gw,
        images: image_server().await,
    }
}

type R = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("line {}: {}", line!(), format!($($msg)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($a:expr, $b:expr $(,)?) => {
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err(format!(
                        "line {}: {} = {:?}, expected {:?}",
                        line!(),
                        stringify!($a),
                        a,
                        b
                    ));
                }
            }
        }
    };
}

impl Env {
    async fn chat(&self, body: Value) -> Reply {
        post_json(
            &self.gw.url("/v1/chat/completions"),
            Some(CLIENT_KEY),
            &body.to_string(),
        )
        .await
    }

    fn last(&self) -> Result<RecordedRequest, String> {
        self.mock
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.endpoint != Endpoint::GoogleToken)
            .ok_or_else(|| "the upstream received nothing".to_owned())
    }

    fn last_json(&self) -> Result<(RecordedRequest, Value), String> {
        let rec = self.last()?;
        let v = rec
            .json()
            .ok_or_else(|| format!("upstream body is not JSON: {:?}", rec.body))?;
        Ok((rec, v))
    }

    /// The endpoint, path and credentials of the last upstream request.
    fn check_transport(&self, rec: &RecordedRequest, stream: bool) -> R {
        let model = self.up.model();
        let endpoint = match (self.up, stream) {
            (Up::OpenAi, _) => Endpoint::ChatCompletions,
            (Up::Anthropic, _) => Endpoint::AnthropicMessages,
            (Up::Gemini, false) => Endpoint::GeminiGenerateContent,
            (Up::Gemini, true) => Endpoint::GeminiStreamGenerateContent,
            (Up::VertexGemini, false) => Endpoint::VertexGenerateContent,
            (Up::VertexGemini, true) => Endpoint::VertexStreamGenerateContent,
            (Up::VertexClaude, false) => Endpoint::VertexRawPredict,
            (Up::VertexClaude, true) => Endpoint::VertexStreamRawPredict,
            (Up::Bedrock, false) => Endpoint::BedrockConverse,
            (Up::Bedrock, true) => Endpoint::BedrockConverseStream,
            (Up::Cohere, _) => Endpoint::CohereChat,
            (Up::Cloudflare, _) => Endpoint::CloudflareRun,
            (Up::Azure, _) => Endpoint::AzureChatCompletions,
            (Up::Databricks, _) => Endpoint::DatabricksInvocations,
            (Up::Responses, _) => Endpoint::Responses,
        };
        ensure_eq!(rec.endpoint, endpoint);
        ensure_eq!(rec.model().as_deref(), Some(model));
        ensure_eq!(rec.is_stream(), stream);
        match self.up {
            Up::OpenAi => ensure_eq!(rec.bearer(), Some("sk-up")),
            Up::Responses => ensure_eq!(rec.bearer(), Some("sk-resp")),
            Up::Anthropic => {
                ensure_eq!(rec.header("x-api-key"), Some("sk-ant"));
                ensure_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
            }
            Up::Gemini => {
                ensure_eq!(rec.header("x-goog-api-key"), Some("AIza-up"));
                let query = rec.query.clone().unwrap_or_default();
                ensure!(!query.contains("key="), "key in the URL: {query}");
                ensure_eq!(query == "alt=sse", stream);
            }
            Up::VertexGemini | Up::VertexClaude => {
                ensure!(
                    rec.bearer().is_some_and(|t| t.starts_with("ya29.mock-")),
                    "bearer {:?}",
                    rec.header("authorization")
                );
                let publisher = if self.up == Up::VertexGemini {
                    "google"
                } else {
                    "anthropic"
                };
                ensure!(
                    rec.path.starts_with(&format!(
                        "/v1/projects/mock-project/locations/us-east5/publishers/{publisher}/models/"
                    )),
                    "path {}",
                    rec.path
                );
            }
            Up::Bedrock => {
                let auth = rec.header("authorization").unwrap_or_default();
                ensure!(
                    auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_AK}/"))
                        && auth.contains(&format!("/{AWS_REGION}/bedrock/aws4_request")),
                    "authorization {auth}"
                );
                ensure!(rec.header("x-amz-date").is_some(), "no x-amz-date");
                // The `:` of the model id is percent-encoded in the path.
                ensure!(rec.path.contains("v1%3A0"), "path {}", rec.path);
            }
            Up::Cohere => ensure_eq!(rec.bearer(), Some("co-key")),
            Up::Cloudflare => {
                ensure_eq!(rec.bearer(), Some("cf-token"));
                ensure_eq!(
                    rec.path,
                    format!("/client/v4/accounts/acc123/ai/run/{model}")
                );
            }
            Up::Azure => {
                ensure_eq!(rec.header("api-key"), Some("az-key"));
                ensure_eq!(rec.query.as_deref(), Some("api-version=2025-01-01-preview"));
            }
            Up::Databricks => {
                ensure_eq!(rec.bearer(), Some("dapi-up"));
                ensure_eq!(rec.path, format!("/serving-endpoints/{model}/invocations"));
            }
        }
        Ok(())
    }
}

fn message(v: &Value) -> &Value {
    &v["choices"][0]["message"]
}

fn usage_of(v: &Value) -> (u64, u64, u64) {
    let u = &v["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap_or(u64::MAX),
        u["completion_tokens"].as_u64().unwrap_or(u64::MAX),
        u["total_tokens"].as_u64().unwrap_or(u64::MAX),
    )
}

fn ok_json(r: &Reply) -> Result<Value, String> {
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))
}

/// Text of the system prompt and first user message as the upstream received them.
fn check_text_body(up: Up, v: &Value) -> R {
    match up {
        Up::OpenAi | Up::Azure | Up::Cloudflare | Up::Cohere | Up::Databricks => {
            ensure_eq!(v["messages"][0]["role"], "system");
            ensure_eq!(v["messages"][1]["role"], "user");
            let sys = &v["messages"][0]["content"];
            ensure!(
                sys == "Be brief." || sys[0]["text"] == "Be brief.",
                "system {sys}"
            );
        }
        Up::Anthropic | Up::VertexClaude => {
            let sys = &v["system"];
            ensure!(
                sys == "Be brief." || sys[0]["text"] == "Be brief.",
                "system {sys}"
            );
            ensure_eq!(v["messages"][0]["role"], "user");
            ensure!(v["max_tokens"].as_u64().is_some(), "no max_tokens: {v}");
            if up == Up::VertexClaude {
                ensure_eq!(v["anthropic_version"], "vertex-2023-10-16");
                ensure!(v.get("model").is_none(), "model in a Vertex body: {v}");
            } else {
                ensure_eq!(v["model"], up.model());
            }
        }
        Up::Gemini | Up::VertexGemini => {
            ensure_eq!(v["systemInstruction"]["parts"][0]["text"], "Be brief.");
            ensure_eq!(v["contents"][0]["role"], "user");
            ensure_eq!(v["contents"][0]["parts"][0]["text"], "Hello there");
        }
        Up::Bedrock => {
            ensure_eq!(v["system"][0]["text"], "Be brief.");
            ensure_eq!(v["messages"][0]["content"][0]["text"], "Hello there");
            ensure!(v.get("modelId").is_none(), "modelId in the body: {v}");
        }
        Up::Responses => {
            ensure_eq!(v["store"], false);
            let text = v.to_string();
            ensure!(
                text.contains("Be brief.") && text.contains("Hello there"),
                "{v}"
            );
        }
    }
    Ok(())
}

fn text_request(up: Up, stream: bool) -> Value {
    let mut body = json!({
        "model": up.model(),
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn text(env: &Env) -> R {
    let v = ok_json(&env.chat(text_request(env.up, false)).await)?;
    ensure_eq!(v["object"], "chat.completion");
    ensure_eq!(message(&v)["role"], "assistant");
    ensure_eq!(message(&v)["content"], "You said: Hello there");
    ensure_eq!(v["choices"][0]["finish_reason"], "stop");
    // ceil(("Be brief." + "Hello there") / 4) = 5 prompt tokens, four words.
    let p = env.up.prompt(5);
    ensure_eq!(usage_of(&v), (p, 4, p + 4));
    let (rec, body) = env.last_json()?;
    env.check_transport(&rec, false)?;
    check_text_body(env.up, &body)
}

/// The `data:` payloads of an OpenAI stream, checked to end with `[DONE]`.
fn chunks(r: &Reply) -> Result<Vec<Value>, String> {
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    let data = r.sse_data();
    ensure!(
        data.last().map(String::as_str) == Some("[DONE]"),
        "no [DONE]: {}",
        r.text()
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).map_err(|e| format!("{e}: {d}")))
        .collect()
}

async fn stream(env: &Env) -> R {
    let r = env.chat(text_request(env.up, true)).await;
    let chunks = chunks(&r)?;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    ensure_eq!(text, "You said: Hello there");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    ensure_eq!(finish, vec![&json!("stop")]);
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .ok_or("no usage chunk")?;
    ensure_eq!(usage["choices"], json!([]));
    let p = env.up.prompt(5);
    ensure_eq!(usage_of(usage), (p, 4, p + 4));
    let (rec, body) = env.last_json()?;
    env.check_transport(&rec, true)?;
    check_text_body(env.up, &body)
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

fn time_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_time",
        "description": "Current time in a zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["tz"]},
    }})
}

fn args(call: &Value) -> Result<Value, String> {
    let a = call["function"]["arguments"]
        .as_str()
        .ok_or_else(|| format!("arguments not a string: {call}"))?;
    serde_json::from_str(a).map_err(|e| format!("{e}: {a}"))
}

/// Tool results as the upstream received them: `(id or name, content)` in order.
fn upstream_results(up: Up, v: &Value) -> Vec<(String, String)> {
    let s = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    let text_of = |x: &Value| match x {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    match up {
        Up::OpenAi | Up::Azure | Up::Cohere | Up::Cloudflare | Up::Databricks => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "tool")
            .map(|m| (s(&m["tool_call_id"]), text_of(&m["content"])))
            .collect(),
        Up::Anthropic | Up::VertexClaude => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["type"] == "tool_result")
            .map(|b| (s(&b["tool_use_id"]), text_of(&b["content"])))
            .collect(),
        Up::Gemini | Up::VertexGemini => v["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p.get("functionResponse").cloned())
            .map(|r| (s(&r["name"]), r["response"].to_string()))
            .collect(),
        Up::Bedrock => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b.get("toolResult").cloned())
            .map(|r| (s(&r["toolUseId"]), r["content"].to_string()))
            .collect(),
        Up::Responses => v["input"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"] == "function_call_output")
            .map(|i| (s(&i["call_id"]), text_of(&i["output"])))
            .collect(),
    }
}

/// Checks a tool round trip's second request: one result per call, matched by id (Gemini:
/// by function name, Cloudflare: in order), carrying the result text.
fn check_results(up: Up, v: &Value, calls: &[(String, String)], results: &[&str]) -> R {
    let got = upstream_results(up, v);
    ensure_eq!(got.len(), calls.len());
    for (i, ((id, name), (key, content))) in calls.iter().zip(&got).enumerate() {
        match up {
            Up::Gemini | Up::VertexGemini => ensure_eq!(key, name),
            // Workers AI has no call ids in the classic shape.
            Up::Cloudflare => {}
            _ => ensure_eq!(key, id),
        }
        ensure!(
            content.contains(results[i]),
            "result {i} {content:?} lacks {:?}",
            results[i]
        );
    }
    Ok(())
}

async fn tools(env: &Env) -> R {
    let question = "What is the weather in Paris?";
    let first = json!({
        "model": env.up.model(),
        "messages": [{"role": "user", "content": question}],
        "tools": [weather_tool()],
    });
    let v = ok_json(&env.chat(first).await)?;
    ensure_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls = message(&v)["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure_eq!(calls.len(), 1);
    let call = &calls[0];
    ensure_eq!(call["type"], "function");
    ensure_eq!(call["function"]["name"], "get_weather");
    ensure_eq!(args(call)?, json!({"city": "mock"}));
    let id = call["id"].as_str().unwrap_or_default().to_owned();
    ensure!(!id.is_empty(), "empty call id");
    // ceil(len(`{"city":"mock"}`) / 4) = 4 completion tokens.
    ensure_eq!(usage_of(&v).1, 4);
    let (rec, _) = env.last_json()?;
    env.check_transport(&rec, false)?;

    let second = json!({
        "model": env.up.model(),
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": id, "content": "sunny, 21 C"},
        ],
        "tools": [weather_tool()],
    });
    let v = ok_json(&env.chat(second).await)?;
    ensure_eq!(message(&v)["content"], format!("You said: {question}"));
    ensure_eq!(v["choices"][0]["finish_reason"], "stop");
    let (_, body) = env.last_json()?;
    check_results(
        env.up,
        &body,
        &[(id, "get_weather".to_owned())],
        &["sunny, 21 C"],
    )
}

async fn parallel_tools(env: &Env) -> R {
    let question = "weather and time, in parallel please";
    let first = json!({
        "model": env.up.model(),
        "messages": [{"role": "user", "content": question}],
        "tools": [weather_tool(), time_tool()],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let r = env.chat(first).await;
    let chunks = chunks(&r)?;
    // Assemble the calls by index, as OpenAI clients do.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"]
                .as_u64()
                .ok_or_else(|| format!("tool call delta without index: {tc}"))?
                as usize;
            if i == calls.len() {
                calls.push(Default::default());
            }
            let slot = calls
                .get_mut(i)
                .ok_or_else(|| format!("index {i} out of order: {tc}"))?;
            if let Some(id) = tc["id"].as_str() {
                slot.0.push_str(id);
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                slot.1.push_str(n);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                slot.2.push_str(a);
            }
        }
    }
    ensure_eq!(calls.len(), 2);
    ensure_eq!(calls[0].1, "get_weather");
    ensure_eq!(calls[1].1, "get_time");
    let parse = |a: &str| serde_json::from_str::<Value>(a).map_err(|e| format!("{e}: {a}"));
    ensure_eq!(parse(&calls[0].2)?, json!({"city": "mock"}));
    ensure_eq!(parse(&calls[1].2)?, json!({"tz": "UTC"}));
    ensure!(
        !calls[0].0.is_empty() && calls[0].0 != calls[1].0,
        "ids {:?} / {:?}",
        calls[0].0,
        calls[1].0
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    ensure_eq!(finish, vec![&json!("tool_calls")]);
    // ceil((15 + 12) / 4) = 7 completion tokens for both argument strings.
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .ok_or("no usage chunk")?;
    ensure_eq!(usage_of(usage).1, 7);
    let (rec, _) = env.last_json()?;
    env.check_transport(&rec, true)?;

    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, a)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": a}}))
        .collect();
    let second = json!({
        "model": env.up.model(),
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": null, "tool_calls": tool_calls},
            {"role": "tool", "tool_call_id": calls[0].0, "content": "sunny"},
            {"role": "tool", "tool_call_id": calls[1].0, "content": "noon"},
        ],
        "tools": [weather_tool(), time_tool()],
    });
    let v = ok_json(&env.chat(second).await)?;
    ensure_eq!(message(&v)["content"], format!("You said: {question}"));
    let (_, body) = env.last_json()?;
    let expected: Vec<(String, String)> =
        calls.iter().map(|c| (c.0.clone(), c.1.clone())).collect();
    check_results(env.up, &body, &expected, &["sunny", "noon"])
}

/// The image of the last upstream request: `(media type, base64 data)` when inline, or the
/// URL when passed by reference.
fn upstream_image(up: Up, v: &Value) -> Result<(Option<String>, String), String> {
    let s = |x: &Value| x.as_str().map(str::to_owned);
    let found = match up {
        Up::OpenAi | Up::Azure | Up::Cohere | Up::Cloudflare | Up::Databricks => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .find(|p| p["type"] == "image_url")
            .and_then(|p| s(&p["image_url"]["url"]))
            .map(|u| (None, u)),
        Up::Anthropic | Up::VertexClaude => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .find(|b| b["type"] == "image")
            .and_then(|b| match b["source"]["type"].as_str() {
                Some("base64") => Some((s(&b["source"]["media_type"]), s(&b["source"]["data"])?)),
                Some("url") => Some((None, s(&b["source"]["url"])?)),
                _ => None,
            }),
        Up::Gemini | Up::VertexGemini => v["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
            .find_map(|p| {
                let d = p.get("inlineData").or_else(|| p.get("inline_data"))?;
                Some((
                    s(&d["mimeType"]).or_else(|| s(&d["mime_type"])),
                    s(&d["data"])?,
                ))
            }),
        Up::Bedrock => v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .find_map(|b| {
                let img = b.get("image")?;
                Some((s(&img["format"]), s(&img["source"]["bytes"])?))
            }),
        Up::Responses => v["input"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .find(|p| p["type"] == "input_image")
            .and_then(|p| s(&p["image_url"]))
            .map(|u| (None, u)),
    };
    found.ok_or_else(|| format!("no image in the upstream body: {v}"))
}

async fn image_with(env: &Env, url: &str) -> R {
    let body = json!({
        "model": env.up.model(),
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    });
    let v = ok_json(&env.chat(body).await)?;
    ensure_eq!(message(&v)["content"], "You said: Describe this");
    let (_, up_body) = env.last_json()?;
    let (media, data) = upstream_image(env.up, &up_body)?;
    match media {
        // Inline: the exact PNG bytes, typed as PNG.
        Some(m) => {
            ensure!(m == "image/png" || m == "png", "media type {m}");
            ensure_eq!(protocol::base64::decode(&data), Some(png()));
        }
        None => ensure_eq!(data, url),
    }
    Ok(())
}

async fn image(env: &Env) -> R {
    let data_url = format!("data:image/png;base64,{PNG_B64}");
    image_with(env, &data_url).await?;
    if env.up.inlines_images() {
        let before = env.images.hits.load(Ordering::SeqCst);
        image_with(env, &env.images.url).await?;
        ensure_eq!(env.images.hits.load(Ordering::SeqCst), before + 1);
    }
    Ok(())
}

async fn reasoning(env: &Env) -> R {
    let body = json!({
        "model": env.up.model(),
        "messages": [{"role": "user", "content": "Hello there"}],
        "reasoning_effort": "low",
    });
    let v = ok_json(&env.chat(body).await)?;
    ensure_eq!(message(&v)["content"], "You said: Hello there");
    let (_, up) = env.last_json()?;
    match env.up {
        Up::OpenAi | Up::Azure => ensure_eq!(up["reasoning_effort"], "low"),
        Up::Anthropic | Up::VertexClaude => {
            ensure_eq!(up["thinking"]["type"], "enabled");
            ensure_eq!(up["thinking"]["budget_tokens"], 1024);
        }
        Up::Gemini | Up::VertexGemini => {
            // Asking for reasoning shows it, as the other upstreams do.
            let t = &up["generationConfig"]["thinkingConfig"];
            ensure_eq!(t["thinkingBudget"], 1024);
            ensure_eq!(t["includeThoughts"], true);
        }
        Up::Bedrock => {
            // llmux's Bedrock table maps `low` to 2048 (`minimal` is 1024).
            let t = &up["additionalModelRequestFields"]["thinking"];
            ensure_eq!(t["type"], "enabled");
            ensure_eq!(t["budget_tokens"], 2048);
        }
        Up::Cohere => ensure_eq!(up["thinking"]["type"], "enabled"),
        Up::Databricks => {
            // Claude endpoints take Anthropic's `thinking` (`low` = 1024 tokens), with room
            // above the budget in `max_tokens`, and refuse `reasoning_effort`.
            ensure_eq!(
                up["thinking"],
                json!({"type": "enabled", "budget_tokens": 1024})
            );
            ensure!(up.get("reasoning_effort").is_none(), "effort sent: {up}");
            ensure!(up["max_tokens"].as_u64().is_some_and(|m| m > 1024), "{up}");
        }
        Up::Responses => ensure_eq!(up["reasoning"]["effort"], "low"),
        Up::Cloudflare => {}
    }
    let (_, completion, _) = usage_of(&v);
    if env.up.thinks() {
        // Eight thinking tokens before the four-word reply.
        ensure_eq!(completion, 12);
        let shows_text = match env.up {
            Up::Responses => up["reasoning"]["summary"].is_string(),
            _ => true,
        };
        if shows_text {
            ensure_eq!(message(&v)["reasoning_content"], THINKING);
        } else {
            ensure!(
                message(&v).get("reasoning_content").is_none(),
                "hidden thoughts shown: {v}"
            );
        }
        if matches!(env.up, Up::Gemini | Up::VertexGemini | Up::Responses) {
            ensure_eq!(
                v["usage"]["completion_tokens_details"]["reasoning_tokens"],
                8
            );
        }
    } else {
        ensure_eq!(completion, 4);
        ensure!(
            message(&v).get("reasoning_content").is_none(),
            "reasoning from a model that does not think: {v}"
        );
    }
    Ok(())
}

async fn error(env: &Env) -> R {
    env.mock.push_fault(Fault::new(FaultKind::BadRequest {
        message: "mock says no".into(),
    }));
    let before = env.mock.request_count();
    let r = env.chat(text_request(env.up, false)).await;
    ensure_eq!(r.status.as_u16(), 400);
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
    let err = &v["error"];
    ensure!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("mock says no")),
        "{v}"
    );
    ensure_eq!(err["type"], "invalid_request_error");
    ensure!(err.get("code").is_some(), "no code: {v}");
    // A client error is not retried.
    let calls = env.mock.request_count() - before;
    ensure!(calls == 1, "{calls} upstream calls for a 400");
    Ok(())
}

/// An upstream stream that fails after its first words must not look complete to the client:
/// the stream carries an OpenAI error event and no `stop` finish.
async fn stream_error(env: &Env) -> R {
    // Enough events that some text has reached the client (before that, llmux may fail over
    // and retry, which hides the failure as it should).
    let after_events = match env.up {
        Up::Anthropic | Up::VertexClaude => 6,
        Up::Responses => 7,
        _ => 3,
    };
    env.mock
        .push_fault(Fault::new(FaultKind::ErrorMidStream { after_events }));
    let mut body = text_request(env.up, true);
    body["messages"][1]["content"] = json!("one two three four five six seven eight nine ten");
    let r = env.chat(body).await;
    ensure_eq!(r.status.as_u16(), 200);
    let data = r.sse_data();
    let events: Vec<Value> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let stopped = events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop");
    ensure!(!stopped, "a failed stream finished with stop: {}", r.text());
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    let full = "You said: one two three four five six seven eight nine ten";
    ensure!(
        !text.is_empty() && full.starts_with(&text) && text != full,
        "text before the failure: {text:?}"
    );
    ensure!(
        events.iter().any(|e| e["error"]["message"].is_string()),
        "no error event: {}",
        r.text()
    );
    Ok(())
}

async fn rate_limit(env: &Env) -> R {
    // A rate limit that outlasts llmux's retries comes back as a 429 (some upstreams' 429s
    // carry no retry hint, and llmux retries those at once: enough faults for all attempts).
    for _ in 0..8 {
        env.mock.push_fault(Fault::new(FaultKind::RateLimited {
            retry_after_secs: 30,
        }));
    }
    let r = env.chat(text_request(env.up, false)).await;
    ensure_eq!(r.status.as_u16(), 429);
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
            && v["error"]["type"].is_string()
            && v["error"].get("code").is_some(),
        "not an OpenAI error: {v}"
    );
    Ok(())
}

async fn run(up: Up) {
    let env = env(up).await;
    let mut failures = Vec::new();
    macro_rules! case {
        ($name:literal, $f:expr) => {
            if let Err(e) = $f.await {
                failures.push(format!("{}: {e}", $name));
            }
        };
    }
    case!("text", text(&env));
    case!("stream", stream(&env));
    case!("tools", tools(&env));
    case!("parallel tools", parallel_tools(&env));
    case!("image", image(&env));
    case!("reasoning", reasoning(&env));
    case!("stream error", stream_error(&env));
    case!("error", error(&env));
    case!("rate limit", rate_limit(&env));
    if matches!(up, Up::VertexGemini | Up::VertexClaude) {
        // One token for every request of the run: llmux caches it.
        let n = env.mock.google_token_requests();
        if n != 1 {
            failures.push(format!("token cache: {n} token requests"));
        }
    }
    assert!(
        failures.is_empty(),
        "{up:?} upstream, {} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn openai_upstream() {
    run(Up::OpenAi).await;
}

#[tokio::test]
async fn anthropic_upstream() {
    run(Up::Anthropic).await;
}

#[tokio::test]
async fn gemini_upstream() {
    run(Up::Gemini).await;
}

#[tokio::test]
async fn vertex_gemini_upstream() {
    run(Up::VertexGemini).await;
}

#[tokio::test]
async fn vertex_claude_upstream() {
    run(Up::VertexClaude).await;
}

#[tokio::test]
async fn bedrock_upstream() {
    run(Up::Bedrock).await;
}

#[tokio::test]
async fn cohere_upstream() {
    run(Up::Cohere).await;
}

#[tokio::test]
async fn cloudflare_upstream() {
    run(Up::Cloudflare).await;
}

#[tokio::test]
async fn azure_upstream() {
    run(Up::Azure).await;
}

#[tokio::test]
async fn databricks_upstream() {
    run(Up::Databricks).await;
}

#[tokio::test]
async fn responses_upstream() {
    run(Up::Responses).await;
}

/// The cached Vertex token is used until the upstream refuses it; then a new one is fetched.
#[tokio::test]
async fn vertex_token_is_replaced_once_refused() {
    let env = env(Up::VertexGemini).await;
    for _ in 0..3 {
        let r = env.chat(text_request(Up::VertexGemini, false)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(env.mock.google_token_requests(), 1);
    env.mock.expire_google_tokens();
    // The request that meets the refused token fails with Google's message (llmux drops the
    // token but does not retry with a new one); the next request fetches a new token.
    let refused = env.chat(text_request(Up::VertexGemini, false)).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let err = refused.openai_error();
    assert_eq!(err["type"], "authentication_error");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Request had invalid authentication credentials."),
        "{err}"
    );
    let after = env.chat(text_request(Up::VertexGemini, false)).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(env.mock.google_token_requests(), 2);
    let rec = env.mock.requests().pop().unwrap();
    let fresh = rec.bearer().unwrap().to_owned();
    let stale = env
        .mock
        .requests()
        .iter()
        .find(|r| r.endpoint == Endpoint::VertexGenerateContent)
        .and_then(|r| r.bearer().map(str::to_owned))
        .unwrap();
    assert_ne!(fresh, stale);
}

/// The mock's SigV4 verifier is not a rubber stamp: a wrong secret is refused upstream, and
/// the client gets an OpenAI-shaped error.
#[tokio::test]
async fn bedrock_signature_with_the_wrong_secret_is_refused() {
    let mock = MockServer::start(MockOptions {
        aws_credentials: vec![AwsCredentials::new(AWS_AK, AWS_SK)],
        aws_region: AWS_REGION.to_owned(),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        "providers:\n  - provider: up\n    base_url: {}\n    engine: aws\n    aws_access_key: {AWS_AK}\n    aws_secret_key: wrong-secret\n    region: {AWS_REGION}\n    model:\n      - \"{}\"\napi_keys:\n  - api: {CLIENT_KEY}\n",
        mock.root_url(),
        Up::Bedrock.model()
    );
    let gw = start(&yaml).await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(CLIENT_KEY),
        &text_request(Up::Bedrock, false).to_string(),
    )
    .await;
    assert_ne!(r.status, 200, "{}", r.text());
    let err = r.openai_error();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("The request signature we calculated does not match"),
        "{err}"
    );
    let rec = mock.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::BedrockConverse);
}

/// A Bedrock stream whose first event after `messageStart` is an exception is not the client's
/// answer: llmux holds the stream until then, classifies the exception and tries again.
#[tokio::test]
async fn bedrock_stream_exception_before_content_is_retried() {
    let env = env(Up::Bedrock).await;
    env.mock
        .push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 1 }));
    let before = env.mock.request_count();
    let r = env.chat(text_request(Up::Bedrock, true)).await;
    let chunks = chunks(&r).unwrap();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: Hello there");
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "{}",
        r.text()
    );
    assert_eq!(env.mock.request_count() - before, 2);
}

/// xAI (docs.x.ai guides/reasoning): reasoning models refuse `presence_penalty`,
/// `frequency_penalty` and `stop`, and most Grok models refuse `reasoning_effort`. llmux leaves
/// them out of what it sends to `api.x.ai` (the same-format body is patched, not rebuilt), and
/// keeps everything the model takes.
#[tokio::test]
async fn xai_refused_parameters_are_left_out() {
    let mock = MockServer::start(MockOptions {
        models: vec!["grok-4".into(), "grok-3".into(), "grok-3-mini".into()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        "providers:\n  - provider: xai\n    base_url: https://api.x.ai/v1\n    api: xai-key\n    model: [grok-4, grok-3, grok-3-mini]\napi_keys:\n  - api: {CLIENT_KEY}\n"
    );
    let mut rt = compile(&yaml);
    // The channel keeps xAI's base_url (which decides the quirks) but calls the mock.
    let ch = Arc::get_mut(&mut rt.channels[0]).expect("channel not shared yet");
    ch.api_root = mock.base_url();
    let gw = start_runtime(rt).await;
    let sent = |model: &str| {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": "Hello there"}],
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "stop": ["END"],
            "reasoning_effort": "low",
            "temperature": 0.7,
        })
    };
    let mut received = Vec::new();
    for model in ["grok-4", "grok-3", "grok-3-mini"] {
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            Some(CLIENT_KEY),
            &sent(model).to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let rec = mock.requests().pop().unwrap();
        assert_eq!(rec.bearer(), Some("xai-key"));
        let body = rec.json().unwrap();
        assert_eq!(body["temperature"], 0.7, "{model}: {body}");
        let has = |k: &str| body.get(k).is_some();
        received.push((
            model,
            has("presence_penalty"),
            has("frequency_penalty"),
            has("stop"),
            has("reasoning_effort"),
        ));
    }
    assert_eq!(
        received,
        [
            // A reasoning model without an effort setting.
            ("grok-4", false, false, false, false),
            // Not a reasoning model, and no effort setting.
            ("grok-3", true, true, true, false),
            // A reasoning model that takes `reasoning_effort`.
            ("grok-3-mini", false, false, false, true),
        ]
    );

    // An Anthropic client's request is converted without them too.
    let r = post_json(
        &gw.url("/v1/messages"),
        Some(CLIENT_KEY),
        &json!({
            "model": "grok-4",
            "max_tokens": 64,
            "stop_sequences": ["END"],
            "messages": [{"role": "user", "content": "Hello there"}],
        })
        .to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = mock.requests().pop().unwrap().json().unwrap();
    assert_eq!(body["max_tokens"], 64);
    assert!(body.get("stop").is_none(), "{body}");
}
