//! The Gemini API: Google's framing (pretty JSON, SSE with CRLF, streamed
//! JSON arrays), strict request parsing, function calls with thought
//! signatures, thinking, auth and the Gemini limit flavour on the native
//! routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use http::Method;
use mock_upstream::{Fault, FaultKind, LimitFlavor, MockOptions, MockServer, ScopeSpec};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn weather_tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}}}},
        {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {}}},
    ]}])
}

fn google_error(r: &Resp, code: u16, status: &str) -> String {
    assert_eq!(r.status, code, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code);
    assert_eq!(v["error"]["status"], status);
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn generate_content_is_googles_pretty_json() {
    let s = server().await;
    let r = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        body("Hi there <friend>"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("x-ratelimit-limit-requests").is_none());
    let text = r.text();
    assert!(
        text.starts_with("{\n  \"candidates\": [\n    {\n      \"content\": {"),
        "{text}"
    );
    assert!(text.ends_with("}\n"));
    // Google escapes HTML-significant characters.
    assert!(
        text.contains(r#""text": "You said: Hi there \u003cfriend\u003e""#),
        "{text}"
    );
    let v = r.json();
    let id = v["responseId"].as_str().unwrap();
    assert_eq!(id.len(), 23);
    assert_eq!(
        v,
        json!({
            "candidates": [{
                "content": {"parts": [{"text": "You said: Hi there <friend>"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }],
            // ceil(17 / 4) = 5 prompt tokens, 5 words out.
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 5,
                "totalTokenCount": 10,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": id,
        })
    );

    // The v1 paths answer the same way.
    let r = call(
        &s,
        Method::POST,
        "/v1/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "AIza-test")],
        body("Hi"),
    )
    .await;
    assert_eq!(
        r.json()["candidates"][0]["content"]["parts"][0]["text"],
        "You said: Hi"
    );

    // Stop sequences and the output limit.
    let mut b = body("one two three four");
    b["generationConfig"] = json!({"stopSequences": ["three"]});
    let v = gemini(&s, "gemini-2.5-flash", "generateContent", b)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: one two "
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let mut b = body("one two three four");
    b["generationConfig"] = json!({"maxOutputTokens": 3});
    let v = gemini(&s, "gemini-2.5-flash", "generateContent", b)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: one"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
}

#[tokio::test]
async fn sse_stream_uses_crlf_framing_and_cumulative_usage() {
    let s = server().await;
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        body("a b c d e f g"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    // One line per chunk, in Google's `"key": value` spelling.
    assert!(text.starts_with("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"You said: a\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 4,"), "{text}");
    let chunks = gemini_sse(&r.body);
    let texts: Vec<&str> = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(texts, ["You said: a", " b c d", " e f g"]);
    let counts: Vec<u64> = chunks
        .iter()
        .map(|c| c["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [3, 6, 9]);
    for (i, c) in chunks.iter().enumerate() {
        let last = i == chunks.len() - 1;
        assert_eq!(c["candidates"][0].get("finishReason").is_some(), last);
        assert_eq!(c["usageMetadata"]["promptTokenCount"], 4);
        assert_eq!(c["responseId"], chunks[0]["responseId"]);
        assert_eq!(c["modelVersion"], "gemini-2.5-flash");
    }
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[2]["usageMetadata"]["totalTokenCount"], 13);
}

#[tokio::test]
async fn stream_without_alt_is_a_json_array() {
    let s = server().await;
    let sse = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        body("a b c d"),
    )
    .await;
    let r = gemini(
        &s,
        "gemini-2.5-flash",
        "streamGenerateContent",
        body("a b c d"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let text = r.text();
    assert!(text.starts_with("[{\n  \"candidates\""), "{text}");
    assert!(text.contains("}\n,\r\n{\n"), "{text}");
    assert!(text.ends_with("}\n]"), "{text}");
    let array: Vec<Value> = serde_json::from_str(&text).unwrap();
    let strip = |mut v: Value| {
        v["responseId"] = Value::Null;
        v
    };
    let from_sse: Vec<Value> = gemini_sse(&sse.body).into_iter().map(strip).collect();
    let from_array: Vec<Value> = array.into_iter().map(strip).collect();
    assert_eq!(from_array, from_sse);
    assert_eq!(from_array.len(), 2);
}

#[tokio::test]
async fn function_calls_follow_the_shared_triggers() {
    let s = server().await;
    let with_tools = |text: &str, config: Option<Value>| {
        let mut b = body(text);
        b["tools"] = weather_tools();
        if let Some(c) = config {
            b["toolConfig"] = json!({"functionCallingConfig": c});
        }
        b
    };
    let parts = |v: &Value| {
        v["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
            .clone()
    };

    let v = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        with_tools("hello", None),
    )
    .await
    .json();
    assert_eq!(parts(&v), [json!({"text": "You said: hello"})]);

    let v = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        with_tools("weather?", None),
    )
    .await
    .json();
    // Gemini 2.5 without thinking: no signature.
    assert_eq!(
        parts(&v),
        [json!({"functionCall": {"name": "get_weather", "args": {"city": "mock", "days": 1}}})]
    );
    let cand = &v["candidates"][0];
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(cand["finishMessage"], "Model generated function call(s).");
    // ceil(len(`{"city":"mock","days":1}`) / 4) = 6.
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 6);

    let v = gemini(
        &s,
        "gemini-3-pro-preview",
        "generateContent",
        with_tools("weather in parallel", None),
    )
    .await
    .json();
    let p = parts(&v);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["functionCall"]["name"], "get_weather");
    assert_eq!(p[1]["functionCall"]["name"], "get_time");
    // Gemini 3: only the first call of a step carries the signature.
    assert!(
        p[0]["thoughtSignature"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(p[1].get("thoughtSignature").is_none());

    let none = with_tools("weather", Some(json!({"mode": "NONE"})));
    let v = gemini(&s, "gemini-2.5-flash", "generateContent", none)
        .await
        .json();
    assert!(parts(&v)[0].get("text").is_some());
    let any = with_tools(
        "hi",
        Some(json!({"mode": "ANY", "allowedFunctionNames": ["get_time"]})),
    );
    let v = gemini(&s, "gemini-2.5-flash", "generateContent", any)
        .await
        .json();
    assert_eq!(
        parts(&v),
        [json!({"functionCall": {"name": "get_time", "args": {}}})]
    );

    // Streamed, the calls arrive whole in the final chunk.
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        with_tools("weather?", None),
    )
    .await;
    let chunks = gemini_sse(&r.body);
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn thinking_and_thoughts() {
    let s = server().await;
    let mut b = body("Hi there");
    b["generationConfig"] = json!({"thinkingConfig": {"includeThoughts": true}});
    let v = gemini(&s, "gemini-2.5-pro", "generateContent", b.clone())
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([
            {"text": "Let me think about how to answer this.", "thought": true},
            {"text": "You said: Hi there"},
        ])
    );
    assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 8);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 2 + 4 + 8);

    // A budget without includeThoughts thinks but shows nothing.
    let mut hidden = body("Hi there");
    hidden["generationConfig"] = json!({"thinkingConfig": {"thinkingBudget": 1024}});
    let v = gemini(&s, "gemini-2.5-pro", "generateContent", hidden)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "You said: Hi there"}])
    );
    assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 8);

    // Thoughts count against maxOutputTokens first.
    let mut tight = b.clone();
    tight["generationConfig"]["maxOutputTokens"] = json!(10);
    let v = gemini(&s, "gemini-2.5-pro", "generateContent", tight)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][1]["text"],
        "You said:"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");

    // Streamed: thought chunks first, three words each.
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        b,
    )
    .await;
    let chunks = gemini_sse(&r.body);
    let thoughts: String = chunks
        .iter()
        .map(|c| &c["candidates"][0]["content"]["parts"][0])
        .filter(|p| p["thought"] == true)
        .map(|p| p["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(thoughts, "Let me think about how to answer this.");
    assert_eq!(chunks.len(), 3 + 2);
    assert_eq!(chunks[4]["usageMetadata"]["thoughtsTokenCount"], 8);
}

#[tokio::test]
async fn request_parsing_is_as_strict_as_googles() {
    let s = server().await;
    let mut b = body("hi");
    b["temperature"] = json!(0.3);
    b["tools"] = json!([{"function_declarations": [{"name": "f", "parameters": {
        "type": "object", "$schema": "http://json-schema.org/draft-07/schema#",
        "properties": {"a": {"type": ["string", "null"]}},
    }}]}]);
    let r = gemini(&s, "gemini-2.5-flash", "generateContent", b).await;
    let message = google_error(&r, 400, "INVALID_ARGUMENT");
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"temperature\": Cannot find field.\n\
         Invalid JSON payload received. Unknown name \"$schema\" at 'tools[0].function_declarations[0].parameters': Cannot find field.\n\
         Invalid JSON payload received. Unknown name \"type\" at 'tools[0].function_declarations[0].parameters.properties[0].value': Proto field is not repeating, cannot start list."
    );
    let details = &r.json()["error"]["details"][0];
    assert_eq!(
        details["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(
        details["fieldViolations"][1]["field"],
        "tools[0].function_declarations[0].parameters"
    );
    assert!(details["fieldViolations"][0].get("field").is_none());

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"contents": []}),
            "* GenerateContentRequest.contents: contents is not specified\n",
        ),
        (
            json!({"contents": [{"role": "user", "parts": []}, {"role": "user", "parts": [{}]}]}),
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n* GenerateContentRequest.contents[1].parts[0].data: required oneof field 'data' must have one initialized field\n",
        ),
        (
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            "Please use a valid role: user, model.",
        ),
        (
            json!({"contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ]}),
            "Please ensure that function response turn comes immediately after a function call turn.",
        ),
        (
            json!({"contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}, {"functionCall": {"name": "g", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ]}),
            "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
        ),
        (
            json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}]}),
            "Please ensure that function call turn comes immediately after a user turn or after a function response turn.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "data:image/png;base64,AAAA"}}]}]}),
            "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"data:image/png;base64,AAAA\"",
        ),
    ];
    for (b, expected) in cases {
        let r = gemini(&s, "gemini-2.5-flash", "generateContent", b.clone()).await;
        assert_eq!(google_error(&r, 400, "INVALID_ARGUMENT"), expected, "{b}");
    }

    let r = gemini(&s, "gpt-4-turbo", "generateContent", body("x")).await;
    assert_eq!(
        google_error(&r, 404, "NOT_FOUND"),
        "models/gpt-4-turbo is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
    );
}

#[tokio::test]
async fn gemini_3_requires_thought_signatures_in_the_current_turn() {
    let s = server().await;
    let mut b = body("weather?");
    b["tools"] = weather_tools();
    let first = gemini(&s, "gemini-3-pro-preview", "generateContent", b.clone())
        .await
        .json();
    let model_turn = first["candidates"][0]["content"].clone();
    let history = |turn: Value| {
        let mut next = b.clone();
        next["contents"] = json!([
            {"role": "user", "parts": [{"text": "weather?"}]},
            turn,
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
        ]);
        next
    };
    let v = gemini(
        &s,
        "gemini-3-pro-preview",
        "generateContent",
        history(model_turn.clone()),
    )
    .await
    .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "You said: weather?"}])
    );

    let mut unsigned = model_turn.clone();
    unsigned["parts"][0]
        .as_object_mut()
        .unwrap()
        .remove("thoughtSignature");
    let r = gemini(
        &s,
        "gemini-3-pro-preview",
        "generateContent",
        history(unsigned.clone()),
    )
    .await;
    assert_eq!(
        google_error(&r, 400, "INVALID_ARGUMENT"),
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:get_weather` , position 2. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
    );
    // Gemini 2.5 does not enforce it; Google's documented stand-in passes.
    let r = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        history(unsigned.clone()),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut dummy = unsigned;
    dummy["parts"][0]["thoughtSignature"] = json!("skip_thought_signature_validator");
    let r = gemini(
        &s,
        "gemini-3-pro-preview",
        "generateContent",
        history(dummy),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn auth_as_google_answers_it() {
    let s = server().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let r = call(&s, Method::POST, path, &[], body("x")).await;
    assert_eq!(
        google_error(&r, 403, "PERMISSION_DENIED"),
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
    );
    let bearer = format!("Bearer {KEY}");
    let r = call(
        &s,
        Method::POST,
        path,
        &[("authorization", &bearer)],
        body("x"),
    )
    .await;
    google_error(&r, 401, "UNAUTHENTICATED");
    assert_eq!(
        r.json()["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    );
    let r = call(
        &s,
        Method::POST,
        &format!("{path}?key=AIza-q"),
        &[],
        body("x"),
    )
    .await;
    assert_eq!(r.status, 200);
    s.revoke_key("AIza-gone");
    let r = call(
        &s,
        Method::POST,
        path,
        &[("x-goog-api-key", "AIza-gone")],
        body("x"),
    )
    .await;
    google_error(&r, 400, "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    assert_eq!(s.key_stats()["AIza-gone"].unauthorized, 1);
}

#[tokio::test]
async fn gemini_limits_apply_to_the_native_routes() {
    let s = MockServer::start(MockOptions {
        // Gemini's minute windows, on its native routes.
        flavor: LimitFlavor::Gemini,
        scopes: vec![ScopeSpec::new("projects/p", &["AIza-test"]).rpm(1)],
        clock_origin: Some(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_735_689_600_000),
        ),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let t = Arc::new(AtomicU64::new(20_000));
    let hand = Arc::clone(&t);
    s.set_clock(Some(Arc::new(move || {
        hand.load(std::sync::atomic::Ordering::SeqCst)
    })));
    assert_eq!(
        gemini(&s, "gemini-2.5-flash", "generateContent", body("x"))
            .await
            .status,
        200
    );
    let r = gemini(&s, "gemini-2.5-flash", "generateContent", body("x")).await;
    let message = google_error(&r, 429, "RESOURCE_EXHAUSTED");
    assert!(
        message.contains("limit: 1, model: gemini-2.5-flash\nPlease retry in 40s."),
        "{message}"
    );
    let details = &r.json()["error"]["details"];
    assert_eq!(
        details[0]["violations"][0]["quotaId"],
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    );
    assert_eq!(details[2]["retryDelay"], "40s");

    s.exhaust_key("AIza-poor");
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "AIza-poor")],
        body("x"),
    )
    .await;
    assert!(google_error(&r, 429, "RESOURCE_EXHAUSTED").contains("limit: 0"));
    s.overload_next(1);
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "AIza-other")],
        body("x"),
    )
    .await;
    assert_eq!(
        google_error(&r, 503, "UNAVAILABLE"),
        "The model is overloaded. Please try again later."
    );
}

#[tokio::test]
async fn count_tokens_and_models() {
    let s = server().await;
    let r = gemini(&s, "gemini-2.5-flash", "countTokens", body("abcdefghi")).await;
    assert_eq!(
        r.json(),
        json!({"totalTokens": 3, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]})
    );
    let mut wrapped = json!({"generateContentRequest": body("abcd")});
    wrapped["generateContentRequest"]["systemInstruction"] = json!({"parts": [{"text": "abcd"}]});
    let r = gemini(&s, "gemini-2.5-flash", "countTokens", wrapped).await;
    assert_eq!(r.json()["totalTokens"], 2);

    let r = call(
        &s,
        Method::GET,
        "/v1beta/models",
        &[("x-goog-api-key", "AIza-test")],
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);
    let models = r.json()["models"].as_array().unwrap().clone();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "models/gemini-2.0-flash",
            "models/gemini-2.5-flash",
            "models/gemini-2.5-pro",
            "models/gemini-3-pro-preview",
        ]
    );
    assert_eq!(models[1]["displayName"], "Gemini 2.5 Flash");
    assert_eq!(
        models[1]["supportedGenerationMethods"],
        json!([
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent"
        ])
    );
    // `GET /v1/models` with a Google key is Gemini's list; with a bearer
    // token it stays OpenAI's.
    let r = call(
        &s,
        Method::GET,
        "/v1/models?key=AIza-test",
        &[],
        Value::Null,
    )
    .await;
    assert!(r.json()["models"].is_array());
    let r = get(&s, "/models").await;
    assert_eq!(r.json()["object"], "list");
    let r = call(
        &s,
        Method::GET,
        "/v1beta/models/gemini-2.5-pro",
        &[("x-goog-api-key", "k")],
        Value::Null,
    )
    .await;
    assert_eq!(r.json()["name"], "models/gemini-2.5-pro");
    let r = call(
        &s,
        Method::GET,
        "/v1beta/models/nope",
        &[("x-goog-api-key", "k")],
        Value::Null,
    )
    .await;
    google_error(&r, 404, "NOT_FOUND");
}

#[tokio::test]
async fn faults_in_googles_words_and_mid_stream() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ServerError).for_model("gemini-2.5-flash"));
    let r = gemini(&s, "gemini-2.5-flash", "generateContent", body("x")).await;
    assert!(google_error(&r, 500, "INTERNAL").starts_with("An internal error has occurred."));

    s.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 3,
    }));
    let r = gemini(&s, "gemini-2.5-flash", "generateContent", body("x")).await;
    let message = google_error(&r, 429, "RESOURCE_EXHAUSTED");
    assert!(message.ends_with("Please retry in 3s."), "{message}");

    s.push_fault(Fault::new(FaultKind::ContextLengthExceeded));
    let r = gemini(&s, "gemini-2.5-flash", "generateContent", body("abcd")).await;
    assert_eq!(
        google_error(&r, 400, "INVALID_ARGUMENT"),
        "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
    );

    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 1 }));
    let r = call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        body("a b c d e f g"),
    )
    .await;
    let chunks = gemini_sse(&r.body);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["error"]["status"], "INTERNAL");
    assert_eq!(chunks[1]["error"]["code"], 500);

    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 0 }));
    let r = gemini(
        &s,
        "gemini-2.5-flash",
        "streamGenerateContent",
        body("a b c d"),
    )
    .await;
    let array: Vec<Value> = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(array.len(), 1);
    assert_eq!(array[0]["error"]["status"], "INTERNAL");

    s.push_fault(Fault::new(FaultKind::EmptyReply));
    let v = gemini(&s, "gemini-2.5-flash", "generateContent", body("x"))
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": ""}])
    );
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 0);
}
