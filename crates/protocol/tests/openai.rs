#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::openai::{
    ChatCompletion, ChatCompletionChunk, ChatMessage, Choice, ChunkChoice, CompletionTokensDetails,
    Delta, ErrorInfo, FunctionCall, Model, ModelList, PromptTokensDetails, ToolCall, Usage,
    error_body, parse_error_body, usage_from_chunk,
};
use serde_json::{Value, json};

/// Shape of a real `POST /v1/chat/completions` response.
const COMPLETION: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": null,
        "refusal": null,
        "tool_calls": [
          {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
          {"id": "call_def", "type": "custom", "custom": {"name": "grep", "input": "foo"}}
        ],
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "tool_calls"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_ee1d74bde0"
}"#;

#[test]
fn chat_completion_round_trips() {
    let c: ChatCompletion = serde_json::from_str(COMPLETION).unwrap();
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.created, 1_741_569_952);
    let choice = &c.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    let calls = choice.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].r#type, "function");
    assert_eq!(calls[1].r#type, "custom");
    assert_eq!(calls[1].extra["custom"]["input"], "foo");
    assert_eq!(choice.message.extra["annotations"], json!([]));
    let u = c.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (19, 10, 29)
    );
    assert_eq!(
        u.prompt_tokens_details.as_ref().unwrap().cached_tokens,
        Some(0)
    );
    assert_eq!(c.system_fingerprint.as_deref(), Some("fp_ee1d74bde0"));

    let back = serde_json::to_value(&c).unwrap();
    let orig: Value = serde_json::from_str(COMPLETION).unwrap();
    assert_eq!(back, orig);
}

#[test]
fn chunk_round_trips_and_keeps_nulls_openai_sends() {
    let raw = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "system_fingerprint": "fp_1", "obfuscation": "xyz",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"index": 1, "function": {"arguments": "{\"a\""}}
        ]}, "logprobs": null, "finish_reason": null}]
    });
    let c: ChatCompletionChunk = serde_json::from_value(raw.clone()).unwrap();
    let d = &c.choices[0].delta;
    assert_eq!(d.role.as_deref(), Some("assistant"));
    let tc = d.tool_calls.as_ref().unwrap();
    assert_eq!(tc[1].index, 1);
    assert_eq!(tc[1].id, None);
    assert_eq!(
        tc[1].function.as_ref().unwrap().arguments.as_deref(),
        Some("{\"a\"")
    );
    assert_eq!(c.extra["obfuscation"], "xyz");
    assert_eq!(serde_json::to_value(&c).unwrap(), raw);
}

#[test]
fn defaults_carry_openai_constants() {
    let chunk = ChatCompletionChunk {
        id: "chatcmpl-x".into(),
        created: 7,
        model: "m".into(),
        choices: vec![ChunkChoice {
            delta: Delta {
                content: Some("hi".into()),
                ..Delta::default()
            },
            ..ChunkChoice::default()
        }],
        ..ChatCompletionChunk::default()
    };
    assert_eq!(
        serde_json::to_string(&chunk).unwrap(),
        r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}"#
    );

    let done = ChatCompletion {
        id: "chatcmpl-y".into(),
        created: 8,
        model: "m".into(),
        choices: vec![Choice {
            message: ChatMessage {
                content: Some("hello".into()),
                ..ChatMessage::default()
            },
            finish_reason: Some("stop".into()),
            ..Choice::default()
        }],
        usage: Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            ..Usage::default()
        }),
        ..ChatCompletion::default()
    };
    assert_eq!(
        serde_json::to_string(&done).unwrap(),
        r#"{"id":"chatcmpl-y","object":"chat.completion","created":8,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#
    );

    let call = ToolCall {
        id: "call_1".into(),
        function: FunctionCall {
            name: "f".into(),
            arguments: "{}".into(),
        },
        ..ToolCall::default()
    };
    assert_eq!(
        serde_json::to_string(&call).unwrap(),
        r#"{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}"#
    );
}

#[test]
fn models() {
    let list = ModelList::new(vec![Model {
        id: "gpt-4o".into(),
        created: 1_715_367_049,
        owned_by: "system".into(),
        ..Model::default()
    }]);
    let v = serde_json::to_value(&list).unwrap();
    assert_eq!(
        v,
        json!({"object":"list","data":[{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"}]})
    );
    assert_eq!(ModelList::default().object, "list");
    // Vendors omitting created/owned_by still parse; extras survive.
    let m: Model =
        serde_json::from_str(r#"{"id":"x","object":"model","context_length":8192}"#).unwrap();
    assert_eq!(m.created, 0);
    assert_eq!(m.extra["context_length"], 8192);
    let back: ModelList = serde_json::from_value(v).unwrap();
    assert_eq!(back, list);
}

#[test]
fn usage_tolerates_vendor_shapes() {
    // Embeddings usage has no completion_tokens; nulls read as 0; extras kept.
    let u: Usage = serde_json::from_str(
        r#"{"prompt_tokens":5,"total_tokens":5,"completion_tokens":null,"cost":0.1,"prompt_tokens_details":{"cached_tokens":null,"text_tokens":5}}"#,
    )
    .unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 0, 5)
    );
    assert_eq!(u.extra["cost"], 0.1);
    assert_eq!(
        u.prompt_tokens_details,
        Some(PromptTokensDetails {
            text_tokens: Some(5),
            ..PromptTokensDetails::default()
        })
    );
    let full = Usage {
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: Some(64),
            ..CompletionTokensDetails::default()
        }),
        ..Usage::default()
    };
    assert_eq!(
        serde_json::to_string(&full).unwrap(),
        r#"{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"completion_tokens_details":{"reasoning_tokens":64}}"#
    );
}

#[test]
fn usage_from_chunk_cases() {
    let none: &[&[u8]] = &[
        br#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
        br#"{"id":"1","choices":[],"usage":null}"#,
        br#"{"id":"1","choices":[],"usage" :  null }"#,
        br#"{"choices":[{"delta":{"content":"the \"usage\": {} field"}}],"usage":null}"#,
        br#"{"choices":[{"delta":{"x":{"usage":{"prompt_tokens":1}}}}]}"#,
        b"not json \"usage\": {",
        b"[DONE]",
    ];
    for c in none {
        assert_eq!(usage_from_chunk(c), None, "{}", String::from_utf8_lossy(c));
    }
    let last = br#"{"id":"1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"completion_tokens_details":{"reasoning_tokens":1}}}"#;
    let u = usage_from_chunk(last).unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 3, 12)
    );
    assert_eq!(
        u.completion_tokens_details.unwrap().reasoning_tokens,
        Some(1)
    );
    // A nested "usage" earlier in the chunk does not hide the top-level one.
    let nested = br#"{"choices":[{"delta":{"x":{"usage":null}}}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#;
    assert_eq!(usage_from_chunk(nested).unwrap().total_tokens, 3);
}

#[test]
fn error_body_exact() {
    let b = error_body(
        "Invalid \"model\"\n",
        "invalid_request_error",
        Some("model_not_found"),
        None,
    );
    assert_eq!(
        &b[..],
        br#"{"error":{"message":"Invalid \"model\"\n","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#
    );
    let b = error_body("x", "server_error", None, Some("messages"));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        v,
        json!({"error":{"message":"x","type":"server_error","param":"messages","code":null}})
    );
    let info = parse_error_body(&b).unwrap();
    assert_eq!(
        info,
        ErrorInfo {
            message: "x".into(),
            error_type: Some("server_error".into()),
            code: None,
            param: Some("messages".into()),
        }
    );
}

#[test]
fn parse_error_body_vendor_shapes() {
    type Expected<'a> = Option<(&'a str, Option<&'a str>, Option<&'a str>)>;
    let cases: &[(&str, Expected)] = &[
        // OpenAI.
        (
            r#"{"error":{"message":"Rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            Some(("Rate limit", Some("requests"), Some("rate_limit_exceeded"))),
        ),
        // Anthropic.
        (
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            Some(("Overloaded", Some("overloaded_error"), None)),
        ),
        // Google: numeric code, status instead of type, array wrapper.
        (
            r#"[{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}]"#,
            Some(("API key not valid", Some("INVALID_ARGUMENT"), Some("400"))),
        ),
        // Error as a plain string.
        (
            r#"{"error":"model not found"}"#,
            Some(("model not found", None, None)),
        ),
        // vLLM: top-level fields.
        (
            r#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#,
            Some(("bad", Some("BadRequestError"), Some("400"))),
        ),
        // FastAPI.
        (r#"{"detail":"Not Found"}"#, Some(("Not Found", None, None))),
        // Not errors.
        (r#"{"id":"chatcmpl-1"}"#, None),
        ("<html>502</html>", None),
        ("", None),
        ("[]", None),
        ("\"str\"", None),
    ];
    for (body, want) in cases {
        let got = parse_error_body(body.as_bytes());
        let got = got.as_ref().map(|i| {
            (
                i.message.as_str(),
                i.error_type.as_deref(),
                i.code.as_deref(),
            )
        });
        assert_eq!(got, *want, "{body}");
    }
    // An error object without a message still says something.
    let info = parse_error_body(br#"{"error":{"code":"x"}}"#).unwrap();
    assert_eq!(info.message, r#"{"code":"x"}"#);
}
