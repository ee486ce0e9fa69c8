//! Amazon Bedrock Converse / ConverseStream: SigV4 verification, the binary
//! event stream, validation and the shared reply rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use hmac::{Hmac, Mac};
use http::Method;
use mock_upstream::{AwsCredentials, Endpoint, Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AK: &str = "AKIDMOCKEXAMPLE";
const SK: &str = "mock/secret+KEY0123456789abcdefghijklmno";
const REGION: &str = "us-west-2";
const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

async fn server() -> MockServer {
    MockServer::start(MockOptions {
        aws_credentials: vec![AwsCredentials::new(AK, SK)],
        aws_region: REGION.to_owned(),
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` now (test-side calendar arithmetic).
fn amz_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (1970-01-01 = day 0).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// SigV4 headers for a POST of `body` to `path` (already URI-encoded once),
/// signed test-side from the specification.
fn sign(server: &MockServer, path: &str, body: &[u8], ak: &str, sk: &str) -> Vec<(String, String)> {
    let amz = amz_now();
    let date = &amz[..8];
    let host = server.addr().to_string();
    let canonical = format!(
        "POST\n{}\n\ncontent-type:application/json\nhost:{host}\nx-amz-date:{amz}\n\ncontent-type;host;x-amz-date\n{}",
        path.replace('%', "%25"),
        hexs(&Sha256::digest(body))
    );
    let scope = format!("{date}/{REGION}/bedrock/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        hexs(&Sha256::digest(canonical.as_bytes()))
    );
    let key = hmac(
        &hmac(
            &hmac(
                &hmac(format!("AWS4{sk}").as_bytes(), date.as_bytes()),
                REGION.as_bytes(),
            ),
            b"bedrock",
        ),
        b"aws4_request",
    );
    let sig = hexs(&hmac(&key, to_sign.as_bytes()));
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-amz-date".into(), amz),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={sig}"
            ),
        ),
    ]
}

fn encode(model: &str) -> String {
    model.replace(':', "%3A")
}

async fn converse_as(
    server: &MockServer,
    model: &str,
    op: &str,
    body: &Value,
    ak: &str,
    sk: &str,
) -> Resp {
    let path = format!("/model/{}/{op}", encode(model));
    let bytes = body.to_string();
    let headers = sign(server, &path, bytes.as_bytes(), ak, sk);
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request(
        Method::POST,
        &format!("{}{path}", server.root_url()),
        &h,
        bytes,
    )
    .await
}

async fn converse(server: &MockServer, body: &Value) -> Resp {
    converse_as(server, CLAUDE, "converse", body, AK, SK).await
}

async fn converse_stream(server: &MockServer, body: &Value) -> Resp {
    converse_as(server, CLAUDE, "converse-stream", body, AK, SK).await
}

/// Test-side CRC-32 (bitwise).
fn crc(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Decodes an event stream, checking both CRCs of every message.
fn frames(body: &[u8]) -> Vec<(HashMap<String, String>, Value)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let total = be(&rest[0..4]) as usize;
        let hlen = be(&rest[4..8]) as usize;
        assert_eq!(be(&rest[8..12]), crc(&rest[..8]), "prelude CRC");
        assert_eq!(
            be(&rest[total - 4..total]),
            crc(&rest[..total - 4]),
            "message CRC"
        );
        let mut headers = HashMap::new();
        let mut h = &rest[12..12 + hlen];
        while !h.is_empty() {
            let nl = h[0] as usize;
            let name = String::from_utf8(h[1..1 + nl].to_vec()).unwrap();
            assert_eq!(h[1 + nl], 7, "string header");
            let vl = u16::from_be_bytes([h[2 + nl], h[3 + nl]]) as usize;
            let value = String::from_utf8(h[4 + nl..4 + nl + vl].to_vec()).unwrap();
            headers.insert(name, value);
            h = &h[4 + nl + vl..];
        }
        let payload: Value = serde_json::from_slice(&rest[12 + hlen..total - 4]).unwrap();
        out.push((headers, payload));
        rest = &rest[total..];
    }
    out
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": [{"text": text}]})
}

fn weather_tools() -> Value {
    json!({"tools": [
        {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}}}}}}
    ]})
}

#[tokio::test]
async fn signed_converse_answers_with_the_shared_rules() {
    let server = server().await;
    let body = json!({
        "system": [{"text": "Be brief."}],
        "messages": [user("Hello there")],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5},
    });
    let r = converse(&server, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-amzn-requestid").is_some());
    let v = r.json();
    assert_eq!(v["output"]["message"]["role"], "assistant");
    assert_eq!(
        v["output"]["message"]["content"],
        json!([{"text": "You said: Hello there"}])
    );
    assert_eq!(v["stopReason"], "end_turn");
    // ceil(("Be brief." 9 + "Hello there" 11) / 4) = 5; four words.
    assert_eq!(
        v["usage"],
        json!({"inputTokens": 5, "outputTokens": 4, "totalTokens": 9})
    );
    assert!(v["metrics"]["latencyMs"].is_u64());
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::BedrockConverse);
    assert_eq!(
        rec.path,
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    );
    assert_eq!(rec.model().as_deref(), Some(CLAUDE));
    assert!(!rec.is_stream());
}

#[tokio::test]
async fn bad_credentials_are_refused_in_aws_words() {
    let server = server().await;
    let body = json!({"messages": [user("hi")]});
    let wrong = converse_as(&server, CLAUDE, "converse", &body, AK, "not-the-secret").await;
    assert_eq!(wrong.status, 403);
    assert!(
        wrong
            .header("x-amzn-errortype")
            .unwrap()
            .starts_with("InvalidSignatureException:")
    );
    assert_eq!(
        wrong.json(),
        json!({"message": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."})
    );
    let unknown = converse_as(&server, CLAUDE, "converse", &body, "AKIDUNKNOWN", SK).await;
    assert_eq!(unknown.status, 403);
    assert!(
        unknown
            .header("x-amzn-errortype")
            .unwrap()
            .starts_with("UnrecognizedClientException:")
    );
    assert_eq!(
        unknown.json()["message"],
        "The security token included in the request is invalid."
    );
    let none = call(
        &server,
        Method::POST,
        "/model/x.y/converse",
        &[("content-type", "application/json")],
        body.clone(),
    )
    .await;
    assert_eq!(none.status, 403);
    assert!(
        none.header("x-amzn-errortype")
            .unwrap()
            .starts_with("MissingAuthenticationTokenException:")
    );
    // The signature covers the body: a different body than the one signed fails.
    let path = format!("/model/{}/converse", encode(CLAUDE));
    let headers = sign(&server, &path, b"{\"messages\":[]}", AK, SK);
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let tampered = request(
        Method::POST,
        &format!("{}{path}", server.root_url()),
        &h,
        body.to_string(),
    )
    .await;
    assert_eq!(tampered.status, 403);
    assert!(
        tampered
            .header("x-amzn-errortype")
            .unwrap()
            .starts_with("InvalidSignatureException:")
    );
    // A bearer Bedrock API key is a key like any other.
    let bearer = request(
        Method::POST,
        &format!("{}{path}", server.root_url()),
        &[
            ("authorization", "Bearer ABSKmockkey"),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(bearer.status, 200, "{}", bearer.text());
}

#[tokio::test]
async fn converse_stream_is_a_checksummed_event_stream() {
    let server = server().await;
    let r = converse_stream(&server, &json!({"messages": [user("one two three")]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let frames = frames(&r.body);
    let kinds: Vec<&str> = frames
        .iter()
        .map(|(h, _)| h[":event-type"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"messageStart"));
    assert_eq!(
        &kinds[kinds.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    for (h, p) in &frames {
        assert_eq!(h[":message-type"], "event");
        assert_eq!(h[":content-type"], "application/json");
        assert!(p["p"].is_string(), "padding field: {p}");
    }
    assert_eq!(frames[0].1["role"], "assistant");
    let text: String = frames
        .iter()
        .filter(|(h, _)| h[":event-type"] == "contentBlockDelta")
        .map(|(_, p)| {
            assert_eq!(p["contentBlockIndex"], 0);
            p["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "You said: one two three");
    let stop = &frames[frames.len() - 2].1;
    assert_eq!(stop["stopReason"], "end_turn");
    let meta = &frames[frames.len() - 1].1;
    assert_eq!(
        meta["usage"],
        json!({"inputTokens": 4, "outputTokens": 5, "totalTokens": 9})
    );
    assert!(meta["metrics"]["latencyMs"].is_u64());
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::BedrockConverseStream);
    assert!(rec.is_stream());
}

#[tokio::test]
async fn parallel_tool_use_round_trip() {
    let server = server().await;
    let first =
        json!({"messages": [user("weather and time in parallel")], "toolConfig": weather_tools()});
    let v = converse(&server, &first).await.json();
    assert_eq!(v["stopReason"], "tool_use", "{v}");
    let content = v["output"]["message"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    let (a, b) = (&content[0]["toolUse"], &content[1]["toolUse"]);
    assert_eq!(a["name"], "get_weather");
    assert_eq!(a["input"], json!({"city": "mock"}));
    assert_eq!(b["name"], "get_time");
    assert_eq!(b["input"], json!({"tz": "UTC"}));
    let (ida, idb) = (
        a["toolUseId"].as_str().unwrap(),
        b["toolUseId"].as_str().unwrap(),
    );
    assert!(ida.starts_with("tooluse_") && ida.len() == 30, "{ida}");
    assert_ne!(ida, idb);
    // ceil((15 + 12) / 4) = 7 output tokens for the two argument strings.
    assert_eq!(v["usage"]["outputTokens"], 7);

    // Streamed, each call is a contentBlockStart plus input pieces.
    let r = converse_stream(&server, &first).await;
    let frames = frames(&r.body);
    let starts: Vec<&Value> = frames
        .iter()
        .filter(|(h, _)| h[":event-type"] == "contentBlockStart")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["contentBlockIndex"], 1);
    assert_eq!(starts[1]["start"]["toolUse"]["name"], "get_time");
    let input: String = frames
        .iter()
        .filter(|(h, p)| h[":event-type"] == "contentBlockDelta" && p["contentBlockIndex"] == 0)
        .map(|(_, p)| p["delta"]["toolUse"]["input"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(input, r#"{"city":"mock"}"#);
    assert_eq!(frames[frames.len() - 2].1["stopReason"], "tool_use");

    // Results answer both ids: the model answers with text.
    let second = json!({
        "messages": [
            user("weather and time in parallel"),
            {"role": "assistant", "content": v["output"]["message"]["content"]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": ida, "content": [{"text": "sunny"}]}},
                {"toolResult": {"toolUseId": idb, "content": [{"json": {"time": "noon"}}], "status": "success"}},
            ]},
        ],
        "toolConfig": weather_tools(),
    });
    let v2 = converse(&server, &second).await;
    assert_eq!(v2.status, 200, "{}", v2.text());
    assert_eq!(v2.json()["stopReason"], "end_turn");
    // A missing result is refused.
    let mut missing = second.clone();
    missing["messages"][2]["content"]
        .as_array_mut()
        .unwrap()
        .pop();
    let r = converse(&server, &missing).await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("ValidationException:")
    );
    assert_eq!(
        r.json()["message"],
        format!("Expected toolResult blocks at messages.2.content for the following Ids: {idb}")
    );
    // A result for an id never asked for.
    let mut stray = second.clone();
    stray["messages"][2]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"toolResult": {"toolUseId": "tooluse_nope", "content": [{"text": "?"}]}}));
    let r = converse(&server, &stray).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "The number of toolResult blocks at messages.2.content exceeds the number of toolUse blocks of previous turn."
    );
}

#[tokio::test]
async fn validation_messages() {
    let server = server().await;
    let cases = [
        (
            json!({"messages": [user("a"), user("b")]}),
            "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        ),
        (
            json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}),
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}),
            "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
            "1 validation error detected: Value 'system' at 'messages.0.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
        ),
        (
            json!({"messages": [{"role": "user", "content": []}]}),
            "The content field in the Message object at messages.0 is empty. Add a ContentBlock object to the content field and try again.",
        ),
        (
            json!({"messages": [user("a")], "system": [{"text": ""}]}),
            "The text field in the SystemContentBlock object at system.0 is blank. Add text to the text field, and try again.",
        ),
        (
            json!({"messages": [user("a")], "toolConfig": {"tools": [{"toolSpec": {"name": "a.b", "inputSchema": {"json": {}}}}]}}),
            "1 validation error detected: Value 'a.b' at 'toolConfig.tools.1.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        ),
    ];
    for (body, message) in cases {
        let r = converse(&server, &body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["message"], message, "{body}");
    }
    let r = converse_as(
        &server,
        "nonsense",
        "converse",
        &json!({"messages": [user("a")]}),
        AK,
        SK,
    )
    .await;
    assert_eq!(
        r.json()["message"],
        "The provided model identifier is invalid."
    );
}

#[tokio::test]
async fn images_must_be_real_images_of_their_format() {
    let server = server().await;
    // A 1x1 PNG, standard base64.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let img = |format: &str| {
        json!({"messages": [{"role": "user", "content": [
            {"text": "what is this"},
            {"image": {"format": format, "source": {"bytes": png}}}
        ]}]})
    };
    let ok = converse(&server, &img("png")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.json()["output"]["message"]["content"][0]["text"],
        "You said: what is this"
    );
    let wrong = converse(&server, &img("jpeg")).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.json()["message"],
        "The model returned the following errors: Could not process image"
    );
    let bmp = converse(&server, &img("bmp")).await;
    assert_eq!(bmp.status, 400);
    assert!(
        bmp.json()["message"]
            .as_str()
            .unwrap()
            .contains("[png, jpeg, gif, webp]")
    );
}

#[tokio::test]
async fn reasoning_is_signed_and_must_be_replayed_intact() {
    let server = server().await;
    let thinking = json!({"thinking": {"type": "enabled", "budget_tokens": 1024}});
    let body = json!({
        "messages": [user("weather please")],
        "toolConfig": weather_tools(),
        "inferenceConfig": {"maxTokens": 2048},
        "additionalModelRequestFields": thinking,
    });
    let v = converse(&server, &body).await.json();
    let content = v["output"]["message"]["content"].as_array().unwrap();
    let reasoning = &content[0]["reasoningContent"]["reasoningText"];
    assert_eq!(reasoning["text"], "Let me think about how to answer this.");
    assert!(
        reasoning["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(content[1]["toolUse"]["name"], "get_weather");
    // 8 thinking tokens + ceil(15 / 4).
    assert_eq!(v["usage"]["outputTokens"], 12);
    let id = content[1]["toolUse"]["toolUseId"].as_str().unwrap();
    let answer = |assistant: Value| {
        json!({
            "messages": [user("weather please"), {"role": "assistant", "content": assistant},
                {"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "sunny"}]}}]}],
            "toolConfig": weather_tools(),
            "inferenceConfig": {"maxTokens": 2048},
            "additionalModelRequestFields": thinking,
        })
    };
    assert_eq!(converse(&server, &answer(json!(content))).await.status, 200);
    let mut forged = json!(content);
    forged[0]["reasoningContent"]["reasoningText"]["text"] = json!("Something else.");
    let r = converse(&server, &answer(forged)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "The model returned the following errors: messages.1.content.0: Invalid `signature` in `thinking` block"
    );
    let dropped = json!([content[1]]);
    let r = converse(&server, &answer(dropped)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Expected `thinking` or `redacted_thinking`, but found `tool_use`")
    );
    // Streamed reasoning: text deltas, then the signature, in block 0.
    let r = converse_stream(&server, &body).await;
    let frames = frames(&r.body);
    let sig: Vec<&Value> = frames
        .iter()
        .filter_map(|(_, p)| p["delta"]["reasoningContent"].get("signature"))
        .collect();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0], &reasoning["signature"]);
}

#[tokio::test]
async fn faults_and_cache_points() {
    let server = server().await;
    server.push_fault(Fault::new(FaultKind::ServerError).for_model(CLAUDE));
    let r = converse(&server, &json!({"messages": [user("hi")]})).await;
    assert_eq!(r.status, 500);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("InternalServerException:")
    );
    server.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 3,
    }));
    let r = converse(&server, &json!({"messages": [user("hi")]})).await;
    assert_eq!(r.status, 429);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("ThrottlingException:")
    );
    assert_eq!(
        r.json()["message"],
        "Too many requests, please wait before trying again."
    );
    // A failure half-way through a stream is an exception message.
    server.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 2 }));
    let r = converse_stream(&server, &json!({"messages": [user("one two three four")]})).await;
    let frames = frames(&r.body);
    assert_eq!(frames.len(), 3);
    let (h, p) = &frames[2];
    assert_eq!(h[":message-type"], "exception");
    assert_eq!(h[":exception-type"], "internalServerException");
    assert!(p["message"].is_string());
    // Cache points: written once, read afterwards.
    // Prompt ceil((21 + 17) / 4) = 10, of which the cached prefix is ceil(21 / 4) = 6.
    let body = json!({"system": [{"text": "A long system prompt."}, {"cachePoint": {"type": "default"}}], "messages": [user("hello world again")]});
    let first = converse(&server, &body).await.json();
    assert_eq!(
        first["usage"],
        json!({"inputTokens": 4, "outputTokens": 5, "totalTokens": 15, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 6})
    );
    let again = converse(&server, &body).await.json();
    assert_eq!(again["usage"]["cacheReadInputTokens"], 6);
    assert_eq!(again["usage"]["cacheWriteInputTokens"], 0);
}
