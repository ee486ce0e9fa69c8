#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! OpenAI Responses API <-> IR: golden fixtures written from the API
//! reference and the SDK types, round trips, and stream codecs.

use protocol::convert::responses::{
    CONVERSATION_UNSUPPORTED, ITEM_REFERENCE_UNSUPPORTED, PREVIOUS_RESPONSE_ID_UNSUPPORTED,
    StreamDecoder, StreamEncoder, error_body, parse_error, request_from_ir, request_to_ir,
    requires_stored_state, response_from_ir, response_to_ir,
};
use protocol::convert::{ConvertError, DecodeStream, EncodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::sse::SseDecoder;
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/responses/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn text(t: &str) -> Part {
    Part::text(t)
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

fn call(id: &str, name: &str, arguments: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        signature: None,
    }
}

fn result(call_id: &str, content: Vec<Part>) -> Part {
    Part::ToolResult {
        call_id: call_id.into(),
        name: None,
        content,
        is_error: false,
        cache_control: None,
    }
}

fn reasoning(t: &str) -> Part {
    Part::Reasoning {
        text: t.into(),
        signature: None,
    }
}

fn redacted(d: &str) -> Part {
    Part::RedactedReasoning { data: d.into() }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        strict: None,
        cache_control: None,
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

fn codex_ir() -> ChatRequest {
    let mut extra = Map::new();
    extra.insert("tools".into(), json!([{"type": "web_search"}]));
    extra.insert("include".into(), json!(["reasoning.encrypted_content"]));
    extra.insert(
        "prompt_cache_key".into(),
        json!("0199f0c2-5a3e-7c11-9d2b-session"),
    );
    extra.insert("text".into(), json!({"verbosity": "low"}));
    ChatRequest {
        model: "gpt-5-codex".into(),
        system: vec![
            text("You are Codex, a coding agent running in a terminal."),
            text("<permissions>sandbox_mode: workspace-write</permissions>"),
        ],
        messages: vec![
            msg(
                Role::User,
                vec![text(
                    "<environment_context>cwd: /repo</environment_context>",
                )],
            ),
            msg(Role::User, vec![text("List the files and show README.md")]),
            msg(
                Role::Assistant,
                vec![
                    reasoning("**Listing files**\n\nI'll run ls and cat together."),
                    redacted("gAAAAABo_enc_first"),
                    call("call_ls", "shell", r#"{"command":["ls"]}"#),
                    call("call_cat", "shell", r#"{"command":["cat","README.md"]}"#),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("call_ls", vec![text("README.md\nsrc\n")]),
                    result("call_cat", vec![text("# Demo\n")]),
                ],
            ),
            msg(
                Role::Assistant,
                vec![
                    redacted("gAAAAABo_enc_second"),
                    text("The repo has README.md and src/."),
                ],
            ),
            msg(
                Role::System,
                vec![text(
                    "<user_instructions>Prefer rg over grep.</user_instructions>",
                )],
            ),
            msg(
                Role::User,
                vec![
                    text("What does this screenshot show?"),
                    Part::Image {
                        source: MediaSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                        detail: Some("high".into()),
                        cache_control: None,
                    },
                ],
            ),
        ],
        tools: vec![Tool {
            name: "shell".into(),
            description: Some("Runs a shell command and returns its output.".into()),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"type": "array", "items": {"type": "string"}},
                    "workdir": {"type": "string"}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
            strict: Some(false),
            cache_control: None,
        }],
        tool_choice: Some(ToolChoice::Auto),
        parallel_tool_calls: Some(true),
        stream: true,
        include_usage: true,
        reasoning: Some(Reasoning {
            effort: Some("medium".into()),
            include_thoughts: Some(true),
            ..Reasoning::default()
        }),
        extra,
        extra_format: Some(Format::OpenAiResponses),
        ..ChatRequest::default()
    }
}

#[test]
fn codex_request_reads_into_the_ir() {
    let ir = request_to_ir(&fixture("codex_request.json")).unwrap();
    assert_eq!(ir, codex_ir());
}

#[test]
fn codex_request_round_trips_exactly() {
    // Everything Codex sends survives Responses -> IR -> Responses.
    let original = fixture("codex_request.json");
    let again = request_from_ir(&request_to_ir(&original).unwrap()).unwrap();
    assert_eq!(json(&again), json(&original));
}

/// A conversation as a Chat Completions or Anthropic client would produce
/// it, sent to a Responses upstream.
fn chat_shaped_ir() -> ChatRequest {
    let mut extra = Map::new();
    // Chat-only extras never reach a Responses upstream.
    extra.insert("logit_bias".into(), json!({"50256": -100}));
    ChatRequest {
        model: "gpt-4.1".into(),
        system: vec![text("Be brief."), text("Answer in English.")],
        messages: vec![
            msg(
                Role::User,
                vec![
                    text("Weather in Paris and Rome? Also, what is in this photo?"),
                    Part::Image {
                        source: MediaSource::Url {
                            url: "https://img.example/cat.png".into(),
                        },
                        detail: None,
                        cache_control: None,
                    },
                ],
            ),
            msg(
                Role::Assistant,
                vec![
                    // Another provider's thinking cannot be replayed to OpenAI.
                    Part::Reasoning {
                        text: "The user wants two lookups.".into(),
                        signature: Some("anthropic-sig".into()),
                    },
                    text("Checking both."),
                    call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                    call("call_2", "get_weather", ""),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("call_1", vec![text("18C")]),
                    result(
                        "call_2",
                        vec![
                            text("20C"),
                            Part::Image {
                                source: MediaSource::Base64 {
                                    media_type: "image/jpeg".into(),
                                    data: "/9j/4AAQ".into(),
                                },
                                detail: Some("low".into()),
                                cache_control: None,
                            },
                        ],
                    ),
                ],
            ),
            msg(Role::Assistant, vec![text("Paris 18C, Rome 20C.")]),
            msg(Role::System, vec![text("Keep answers under 20 words.")]),
            msg(Role::User, vec![text("Thanks. Summarise this.")]),
            msg(
                Role::User,
                vec![Part::File {
                    source: MediaSource::Base64 {
                        media_type: "application/pdf".into(),
                        data: "JVBERi0x".into(),
                    },
                    filename: None,
                    cache_control: None,
                }],
            ),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Named("get_weather".into())),
        parallel_tool_calls: Some(false),
        max_tokens: Some(512),
        temperature: Some(0.2),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        stream: true,
        include_usage: true,
        reasoning: Some(Reasoning {
            budget_tokens: Some(4096),
            enabled: Some(true),
            ..Reasoning::default()
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        }),
        user: Some("user-42".into()),
        extra,
        extra_format: Some(Format::OpenAiChat),
        ..ChatRequest::default()
    }
}

#[test]
fn request_from_ir_writes_the_exact_responses_body() {
    let body = request_from_ir(&chat_shaped_ir()).unwrap();
    let expected = json!({
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "Answer in English."}
            ]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather in Paris and Rome? Also, what is in this photo?"},
                {"type": "input_image", "detail": "auto", "image_url": "https://img.example/cat.png"}
            ]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Checking both."}
            ]},
            {"type": "function_call", "arguments": "{\"city\":\"Paris\"}", "call_id": "call_1", "name": "get_weather"},
            {"type": "function_call", "arguments": "{}", "call_id": "call_2", "name": "get_weather"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [
                {"type": "input_text", "text": "20C"},
                {"type": "input_image", "detail": "low", "image_url": "data:image/jpeg;base64,/9j/4AAQ"}
            ]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Paris 18C, Rome 20C."}
            ]},
            {"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "Keep answers under 20 words."}
            ]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Thanks. Summarise this."}
            ]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0x", "filename": "document.pdf"}
            ]}
        ],
        "tools": [{
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": false
        }],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false,
        "max_output_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": true,
        "reasoning": {"effort": "medium"},
        "text": {"format": {"type": "json_schema", "name": "weather", "schema": {"type": "object"}, "strict": true}},
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "user": "user-42"
    });
    assert_eq!(json(&body), expected);
}

#[test]
fn tool_choice_maps_both_ways() {
    let cases = [
        (json!("none"), ToolChoice::None),
        (json!("auto"), ToolChoice::Auto),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "function", "name": "get_weather"}),
            ToolChoice::Named("get_weather".into()),
        ),
    ];
    for (wire, ir) in cases {
        let body = json!({"model": "m", "input": "hi", "tool_choice": wire});
        let req = request_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(req.tool_choice, Some(ir.clone()));
        let out = ChatRequest {
            tool_choice: Some(ir),
            ..ChatRequest::default()
        };
        assert_eq!(json(&request_from_ir(&out).unwrap())["tool_choice"], wire);
    }
    let bad = json!({"model": "m", "input": "hi", "tool_choice": "sometimes"});
    assert!(matches!(
        request_to_ir(bad.to_string().as_bytes()),
        Err(ConvertError::Invalid { field, .. }) if field == "tool_choice"
    ));
}

#[test]
fn hosted_tool_choices_are_approximated_and_kept_for_responses() {
    let body = json!({
        "model": "m",
        "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": null}],
        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}
    });
    let req = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(req.tool_choice, Some(ToolChoice::Required));
    assert_eq!(req.tools[0].parameters, json!({"type": "object"}));
    assert_eq!(req.tools[0].strict, None);
    let out = json(&request_from_ir(&req).unwrap());
    assert_eq!(out["tool_choice"], body["tool_choice"]);
    // The Responses default for an absent `strict` is true; be explicit.
    assert_eq!(out["tools"][0]["strict"], json!(false));
}

#[test]
fn string_input_instructions_and_options() {
    let body = json!({
        "model": "gpt-4.1-mini",
        "instructions": "Talk like a pirate.",
        "input": "Are semicolons optional in JavaScript?",
        "max_output_tokens": 100,
        "temperature": 0.7,
        "top_p": 0.5,
        "user": "u1",
        "metadata": {"trace": "abc"},
        "truncation": "auto",
        "store": true,
        "reasoning": {"effort": "high", "summary": "detailed"},
        "text": {"format": {"type": "json_schema", "name": "answer", "description": "An answer", "schema": {"type": "object"}, "strict": true}}
    });
    let req = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(req.system, vec![text("Talk like a pirate.")]);
    assert_eq!(
        req.messages,
        vec![Message::text(
            Role::User,
            "Are semicolons optional in JavaScript?"
        )]
    );
    assert_eq!(req.max_tokens, Some(100));
    assert_eq!(req.temperature, Some(0.7));
    assert_eq!(req.top_p, Some(0.5));
    assert_eq!(req.user.as_deref(), Some("u1"));
    assert!(!req.stream && !req.include_usage);
    assert_eq!(
        req.reasoning,
        Some(Reasoning {
            effort: Some("high".into()),
            include_thoughts: Some(true),
            ..Reasoning::default()
        })
    );
    assert_eq!(
        req.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: Some(true)
        })
    );
    let out = json(&request_from_ir(&req).unwrap());
    // Everything comes back, except that llmux never asks upstreams to store.
    let mut expected = body.clone();
    expected["store"] = json!(false);
    expected["stream"] = json!(false);
    expected["input"] = json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Are semicolons optional in JavaScript?"}]}]);
    expected["include"] = json!(["reasoning.encrypted_content"]);
    assert_eq!(out, expected);
}

#[test]
fn message_shapes_and_content_types() {
    let body = json!({
        "model": "m",
        "input": [
            {"role": "system", "content": "Sys one."},
            {"role": "developer", "content": "Dev two."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": "second, same role"},
            {"role": "assistant", "content": "an answer"},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
                {"type": "output_text", "text": "more", "annotations": []},
                {"type": "refusal", "refusal": "no"}
            ]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_file", "file_url": "https://files.example/a.pdf"},
                {"type": "input_file", "file_data": "JVBERi0x", "filename": "a.pdf"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
            ]},
            {"type": "function_call_output", "call_id": "orphan", "output": "x"}
        ]
    });
    let req = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(req.system, vec![text("Sys one."), text("Dev two.")]);
    assert_eq!(
        req.messages,
        vec![
            msg(Role::User, vec![text("first")]),
            msg(Role::User, vec![text("second, same role")]),
            msg(Role::Assistant, vec![text("an answer")]),
            msg(Role::Assistant, vec![text("more"), text("no")]),
            msg(
                Role::User,
                vec![
                    Part::File {
                        source: MediaSource::Url {
                            url: "https://files.example/a.pdf".into()
                        },
                        filename: None,
                        cache_control: None,
                    },
                    Part::File {
                        source: MediaSource::Base64 {
                            media_type: "application/pdf".into(),
                            data: "JVBERi0x".into()
                        },
                        filename: Some("a.pdf".into()),
                        cache_control: None,
                    },
                    Part::Audio {
                        data: "UklGRg==".into(),
                        format: "wav".into()
                    },
                ],
            ),
            msg(Role::Tool, vec![result("orphan", vec![text("x")])]),
        ]
    );
}

#[test]
fn previous_response_id_is_rejected_as_stored_state() {
    let body = json!({"model": "m", "input": "continue", "previous_response_id": "resp_123"});
    let err = request_to_ir(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ConvertError::Unsupported(PREVIOUS_RESPONSE_ID_UNSUPPORTED.into())
    );
    assert!(requires_stored_state(&err));
    assert!(err.to_string().contains("llmux does not store responses"));

    let body = json!({"model": "m", "input": "x", "conversation": "conv_1"});
    let err = request_to_ir(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ConvertError::Unsupported(CONVERSATION_UNSUPPORTED.into())
    );
    assert!(requires_stored_state(&err));

    let body = json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]});
    let err = request_to_ir(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ConvertError::Unsupported(ITEM_REFERENCE_UNSUPPORTED.into())
    );

    // A null previous_response_id is just absent.
    let body = json!({"model": "m", "input": "x", "previous_response_id": null});
    assert!(request_to_ir(body.to_string().as_bytes()).is_ok());
}

#[test]
fn unconvertible_input_is_reported() {
    let custom = json!({"model": "m", "input": [{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "..."}]});
    let err = request_to_ir(custom.to_string().as_bytes()).unwrap_err();
    assert!(!requires_stored_state(&err));
    assert!(err.to_string().contains("custom_tool_call"), "{err}");

    let file_id = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]});
    assert!(matches!(
        request_to_ir(file_id.to_string().as_bytes()),
        Err(ConvertError::Unsupported(_))
    ));

    let missing =
        json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]});
    let err = request_to_ir(missing.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("call_id"), "{err}");

    let audio_out = ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![Part::Audio {
                data: "UklGRg==".into(),
                format: "wav".into(),
            }],
        )],
        ..ChatRequest::default()
    };
    assert!(matches!(
        request_from_ir(&audio_out),
        Err(ConvertError::Unsupported(_))
    ));
    let several = ChatRequest {
        n: Some(2),
        ..ChatRequest::default()
    };
    assert!(matches!(
        request_from_ir(&several),
        Err(ConvertError::Unsupported(_))
    ));
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

const S0: &str = "**Planning**\n\nCheck the weather for both cities.";
const S1: &str = "Two calls are independent.";
const ANSWER: &str = "Let me check both cities ☀️.";

fn full_usage() -> Usage {
    Usage {
        input_tokens: 1200,
        output_tokens: 350,
        cache_read_tokens: 1024,
        cache_write_tokens: 0,
        reasoning_tokens: 128,
    }
}

fn weather_response() -> ChatResponse {
    ChatResponse {
        id: "resp_68a1f0c2d4e08190b2f3".into(),
        model: "gpt-5-2025-08-07".into(),
        created: 1_756_000_000,
        content: vec![
            reasoning(S0),
            reasoning(S1),
            redacted("gAAAAABoEncryptedReasoning=="),
            text(ANSWER),
            call("call_paris", "get_weather", r#"{"city":"Paris"}"#),
            call("call_rome", "get_weather", r#"{"city":"Rome"}"#),
        ],
        finish_reason: FinishReason::ToolCalls,
        stop_sequence: None,
        usage: full_usage(),
        refusal: None,
    }
}

#[test]
fn response_reads_into_the_ir() {
    assert_eq!(
        response_to_ir(&fixture("response.json")).unwrap(),
        weather_response()
    );
}

#[test]
fn response_from_ir_writes_the_exact_response_object() {
    let body = response_from_ir(&weather_response());
    let id = "68a1f0c2d4e08190b2f3";
    let expected = json!({
        "id": "resp_68a1f0c2d4e08190b2f3",
        "object": "response",
        "created_at": 1756000000,
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": "gpt-5-2025-08-07",
        "output": [
            {"type": "reasoning", "id": format!("rs_{id}_0"), "summary": [
                {"type": "summary_text", "text": S0},
                {"type": "summary_text", "text": S1}
            ], "encrypted_content": "gAAAAABoEncryptedReasoning=="},
            {"type": "message", "id": format!("msg_{id}_1"), "status": "completed", "role": "assistant", "content": [
                {"type": "output_text", "annotations": [], "logprobs": [], "text": ANSWER}
            ]},
            {"type": "function_call", "id": format!("fc_{id}_2"), "status": "completed",
             "arguments": "{\"city\":\"Paris\"}", "call_id": "call_paris", "name": "get_weather"},
            {"type": "function_call", "id": format!("fc_{id}_3"), "status": "completed",
             "arguments": "{\"city\":\"Rome\"}", "call_id": "call_rome", "name": "get_weather"}
        ],
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": null,
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 1200,
            "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 350,
            "output_tokens_details": {"reasoning_tokens": 128},
            "total_tokens": 1550
        },
        "user": null,
        "metadata": {}
    });
    assert_eq!(json(&body), expected);
    assert_eq!(response_to_ir(&body).unwrap(), weather_response());
}

#[test]
fn response_ids_from_other_upstreams_get_the_resp_prefix() {
    let resp = ChatResponse {
        id: "chatcmpl-abc".into(),
        content: vec![text("hi")],
        ..ChatResponse::default()
    };
    let body = json(&response_from_ir(&resp));
    assert_eq!(body["id"], "resp_chatcmpl-abc");
    assert_eq!(body["output"][0]["id"], "msg_chatcmpl-abc_0");
}

#[test]
fn finish_reasons_refusals_and_cache_writes() {
    let incomplete = |reason: &str| {
        json!({
            "id": "resp_1", "object": "response", "created_at": 1.7e9, "model": "m",
            "status": "incomplete", "incomplete_details": {"reason": reason},
            "output": [{"type": "message", "id": "msg_1", "status": "incomplete", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Once upon", "annotations": []}]}],
            "usage": {"input_tokens": 5, "output_tokens": 16, "total_tokens": 21}
        })
        .to_string()
    };
    let length = response_to_ir(incomplete("max_output_tokens").as_bytes()).unwrap();
    assert_eq!(length.finish_reason, FinishReason::Length);
    assert_eq!(length.created, 1_700_000_000);
    assert_eq!(length.usage.output_tokens, 16);
    let filtered = response_to_ir(incomplete("content_filter").as_bytes()).unwrap();
    assert_eq!(filtered.finish_reason, FinishReason::ContentFilter);

    // Length comes back as `incomplete`, marking the item it stopped in.
    let body = json(&response_from_ir(&length));
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(body["output"][0]["status"], "incomplete");
    assert_eq!(response_to_ir(&response_from_ir(&length)).unwrap(), length);

    let refused = json!({
        "id": "resp_2", "object": "response", "created_at": 1, "model": "m", "status": "completed",
        "output": [{"type": "message", "id": "msg_2", "status": "completed", "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]
    });
    let ir = response_to_ir(refused.to_string().as_bytes()).unwrap();
    assert_eq!(ir.refusal.as_deref(), Some("I can't help with that."));
    assert!(ir.content.is_empty());
    assert_eq!(ir.finish_reason, FinishReason::Stop);
    let body = json(&response_from_ir(&ir));
    assert_eq!(
        body["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I can't help with that."}])
    );

    let writes = ChatResponse {
        id: "resp_3".into(),
        usage: Usage {
            input_tokens: 100,
            output_tokens: 1,
            cache_read_tokens: 10,
            cache_write_tokens: 50,
            reasoning_tokens: 0,
        },
        ..ChatResponse::default()
    };
    let body = response_from_ir(&writes);
    assert_eq!(
        json(&body)["usage"]["input_tokens_details"],
        json!({"cached_tokens": 10, "cache_write_tokens": 50})
    );
    assert_eq!(response_to_ir(&body).unwrap().usage, writes.usage);
}

#[test]
fn failed_responses_are_errors() {
    let failed = json!({
        "id": "resp_x", "object": "response", "created_at": 1, "model": "m", "status": "failed",
        "error": {"code": "server_error", "message": "The model crashed."}, "output": []
    });
    let err = response_to_ir(failed.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("The model crashed."), "{err}");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn error_bodies_use_the_openai_shape() {
    let err = ApiError {
        status: 429,
        kind: ErrorKind::RateLimit,
        message: "Slow down".into(),
    };
    assert_eq!(
        json(&error_body(&err)),
        json!({"error": {"message": "Slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );
    let bad = ApiError {
        status: 400,
        kind: ErrorKind::InvalidRequest,
        message: "previous_response_id (llmux does not store responses) is not supported".into(),
    };
    assert_eq!(
        json(&error_body(&bad))["error"]["type"],
        "invalid_request_error"
    );

    let body = br#"{"error":{"message":"Your input exceeds the context window of this model.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#;
    assert_eq!(
        parse_error(400, body),
        ApiError {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            message: "Your input exceeds the context window of this model.".into()
        }
    );
    let limited = br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(parse_error(429, limited).kind, ErrorKind::RateLimit);
    let auth = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    assert_eq!(parse_error(401, auth).kind, ErrorKind::Authentication);
    let html = parse_error(502, b"<html>Bad gateway</html>");
    assert_eq!((html.status, html.kind), (502, ErrorKind::Api));
    assert_eq!(html.message, "<html>Bad gateway</html>");
    assert_eq!(parse_error(503, b"").message, "upstream returned HTTP 503");
    assert_eq!(parse_error(503, b"").kind, ErrorKind::Overloaded);
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

fn decode_chunks(chunks: &[&[u8]]) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new(1 << 20);
    let mut decoder = StreamDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        sse.push(chunk).unwrap();
        while let Some(ev) = sse.next_event() {
            decoder.push(&ev, &mut out).unwrap();
        }
    }
    while let Some(ev) = sse.finish() {
        decoder.push(&ev, &mut out).unwrap();
    }
    decoder.finish(&mut out);
    out
}

/// Decodes `bytes` whole and split at every byte boundary; all must agree.
fn decode_every_split(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = decode_chunks(&[bytes]);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(decode_chunks(&[a, b]), whole, "split at byte {at}");
    }
    whole
}

fn expected_stream_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "resp_68a1f0c2d4e08190b2f3".into(),
            model: "gpt-5-2025-08-07".into(),
            created: 1_756_000_000,
        },
        StreamEvent::ReasoningDelta("**Planning**".into()),
        StreamEvent::ReasoningDelta("\n\nCheck the weather for both cities.".into()),
        StreamEvent::ReasoningDelta("\n\n".into()),
        StreamEvent::ReasoningDelta(S1.into()),
        StreamEvent::RedactedReasoning("gAAAAABoEncryptedReasoning==".into()),
        StreamEvent::TextDelta("Let me check ".into()),
        StreamEvent::TextDelta("both cities ☀️.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_paris".into(),
            name: "get_weather".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"city\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Paris\"}".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_rome".into(),
            name: "get_weather".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{\"city\":\"Rome\"}".into(),
        },
        StreamEvent::Usage(full_usage()),
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
    ]
}

#[test]
fn recorded_stream_decodes_at_every_split() {
    let events = decode_every_split(&fixture("stream_reasoning_text_tools.sse"));
    assert_eq!(events, expected_stream_events());
}

#[test]
fn tool_calls_stream_as_they_arrive() {
    // The start and the first argument fragment come out before the
    // call's item is done, not when the response completes.
    let bytes = fixture("stream_reasoning_text_tools.sse");
    let text = String::from_utf8(bytes).unwrap();
    let cut = text
        .find("event: response.function_call_arguments.done")
        .unwrap();
    let mut sse = SseDecoder::new(1 << 20);
    let mut decoder = StreamDecoder::new();
    let mut out = Vec::new();
    sse.push(&text.as_bytes()[..cut]).unwrap();
    while let Some(ev) = sse.next_event() {
        decoder.push(&ev, &mut out).unwrap();
    }
    assert!(out.contains(&StreamEvent::ToolCallDelta {
        index: 0,
        arguments: "\"Paris\"}".into()
    }));
}

fn frame(event: &Value) -> String {
    format!(
        "event: {}\ndata: {}\n\n",
        event["type"].as_str().unwrap(),
        event
    )
}

#[test]
fn items_sent_only_when_done_still_yield_their_content() {
    // Some servers skip the deltas and send whole items.
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_d", "created_at": 5, "model": "m", "output": []}}),
        json!({"type": "response.output_item.done", "sequence_number": 1, "output_index": 0,
               "item": {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "why"}]}}),
        json!({"type": "response.output_item.done", "sequence_number": 2, "output_index": 1,
               "item": {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "whole", "annotations": []}]}}),
        json!({"type": "response.output_item.done", "sequence_number": 3, "output_index": 2,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}", "status": "completed"}}),
        json!({"type": "response.output_text.done", "sequence_number": 4, "item_id": "msg_1", "output_index": 1, "content_index": 0, "text": "whole"}),
    ];
    let body: String = events.iter().map(frame).collect();
    let out = decode_every_split(body.as_bytes());
    assert_eq!(
        out,
        vec![
            StreamEvent::Start {
                id: "resp_d".into(),
                model: "m".into(),
                created: 5
            },
            StreamEvent::ReasoningDelta("why".into()),
            StreamEvent::TextDelta("whole".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
                signature: None
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\":1}".into()
            },
            // The upstream closed without `response.completed`.
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            },
        ]
    );
}

#[test]
fn incomplete_and_failed_streams() {
    let incomplete = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_i", "created_at": 1, "model": "m", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Once"}),
        json!({"type": "response.incomplete", "sequence_number": 2, "response": {"id": "resp_i", "created_at": 1, "model": "m", "status": "incomplete",
               "incomplete_details": {"reason": "max_output_tokens"}, "output": [],
               "usage": {"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 4}}}),
    ];
    let body: String = incomplete.iter().map(frame).collect();
    let out = decode_every_split(body.as_bytes());
    assert_eq!(
        &out[1..],
        &[
            StreamEvent::TextDelta("Once".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 1,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Length,
                stop_sequence: None
            },
        ]
    );

    let failed = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_f", "created_at": 1, "model": "m", "output": []}}),
        json!({"type": "response.failed", "sequence_number": 1, "response": {"id": "resp_f", "created_at": 1, "model": "m", "status": "failed",
               "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 1.2s."}, "output": []}}),
    ];
    let body: String = failed.iter().map(frame).collect();
    let out = decode_every_split(body.as_bytes());
    assert_eq!(
        out.last(),
        Some(&StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "Rate limit reached. Please try again in 1.2s.".into()
        }))
    );
    // No Finish after an error.
    assert_eq!(out.len(), 2);

    // The `error` event, flat as documented and nested as some servers send it.
    let flat = json!({"type": "error", "sequence_number": 0, "code": "server_error", "message": "Boom", "param": null});
    let nested = json!({"type": "error", "sequence_number": 0, "error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Too long", "param": "input"}});
    assert_eq!(
        decode_every_split(frame(&flat).as_bytes()),
        vec![StreamEvent::Error(ApiError {
            status: 500,
            kind: ErrorKind::Api,
            message: "Boom".into()
        })]
    );
    assert_eq!(
        decode_every_split(frame(&nested).as_bytes()),
        vec![StreamEvent::Error(ApiError {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            message: "Too long".into()
        })]
    );
}

#[test]
fn decoder_tolerates_missing_type_done_markers_and_unknown_events() {
    let body = concat!(
        "event: response.created\n",
        "data: {\"response\":{\"id\":\"resp_t\",\"created_at\":2,\"model\":\"m\",\"output\":[]}}\n\n",
        ": keep-alive\n\n",
        "event: response.web_search_call.searching\n",
        "data: {\"type\":\"response.web_search_call.searching\",\"sequence_number\":1,\"item_id\":\"ws_1\",\"output_index\":0}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"output_index\":1,\"content_index\":0,\"delta\":\"ok\"}\n\n",
        "data: [DONE]\n\n",
    );
    let out = decode_every_split(body.as_bytes());
    assert_eq!(
        out,
        vec![
            StreamEvent::Start {
                id: "resp_t".into(),
                model: "m".into(),
                created: 2
            },
            StreamEvent::TextDelta("ok".into()),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ]
    );
}

fn encode(encoder: &mut StreamEncoder, events: &[StreamEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        encoder.push(ev, &mut out);
    }
    encoder.finish(&mut out);
    out
}

fn stream_with_refusal() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "resp_enc".into(),
            model: "gpt-5".into(),
            created: 1_756_000_100,
        },
        StreamEvent::ReasoningDelta("Think".into()),
        StreamEvent::ReasoningDelta("ing.".into()),
        StreamEvent::RedactedReasoning("enc==".into()),
        StreamEvent::TextDelta("Hel".into()),
        StreamEvent::TextDelta("lo".into()),
        StreamEvent::RefusalDelta("Not that.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "f".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"x\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "1}".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "g".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{}".into(),
        },
        StreamEvent::Usage(Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 8,
        }),
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
    ]
}

#[test]
fn encoder_writes_the_exact_event_sequence() {
    let mut encoder = StreamEncoder::new("", "", 0);
    let bytes = encode(&mut encoder, &stream_with_refusal());
    let expected = String::from_utf8(fixture("encoded_stream.sse")).unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn encoded_frames_name_their_type_and_count_from_zero() {
    let mut encoder = StreamEncoder::new("resp_x", "m", 1);
    let bytes = encode(&mut encoder, &stream_with_refusal());
    let mut sse = SseDecoder::new(1 << 20);
    sse.push(&bytes).unwrap();
    let mut seq = 0;
    while let Some(ev) = sse.finish() {
        let data = json(ev.data.as_bytes());
        assert_eq!(ev.event.as_deref(), data["type"].as_str());
        assert_eq!(data["sequence_number"], seq);
        seq += 1;
    }
    assert!(seq > 20);
}

#[test]
fn decode_of_encode_is_identity() {
    let with_length = vec![
        StreamEvent::Start {
            id: "resp_l".into(),
            model: "m".into(),
            created: 9,
        },
        StreamEvent::TextDelta("partial".into()),
        StreamEvent::Finish {
            reason: FinishReason::Length,
            stop_sequence: None,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 1,
            output_tokens: 2,
            ..Usage::default()
        }),
    ];
    let filtered = vec![
        StreamEvent::Start {
            id: "resp_c".into(),
            model: "m".into(),
            created: 9,
        },
        StreamEvent::RedactedReasoning("only-encrypted".into()),
        StreamEvent::TextDelta("a".into()),
        StreamEvent::ReasoningDelta("late thought".into()),
        StreamEvent::TextDelta("b".into()),
        StreamEvent::Usage(Usage::default()),
        StreamEvent::Finish {
            reason: FinishReason::ContentFilter,
            stop_sequence: None,
        },
    ];
    for events in [
        stream_with_refusal(),
        expected_stream_events(),
        with_length,
        filtered,
    ] {
        let mut encoder = StreamEncoder::new("", "", 0);
        let bytes = encode(&mut encoder, &events);
        let mut decoded = decode_every_split(&bytes);
        let mut expected = events.clone();
        // Usage and finish come back last, usage first.
        expected.retain(|e| !matches!(e, StreamEvent::Usage(_) | StreamEvent::Finish { .. }));
        let tail: Vec<_> = decoded.split_off(decoded.len() - 2);
        let usage = events
            .iter()
            .rev()
            .find_map(|e| match e {
                StreamEvent::Usage(u) => Some(*u),
                _ => None,
            })
            .unwrap_or_default();
        let finish = events
            .iter()
            .find(|e| matches!(e, StreamEvent::Finish { .. }))
            .cloned()
            .unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(tail, vec![StreamEvent::Usage(usage), finish]);
    }
}

#[test]
fn encoder_reports_errors_as_response_failed() {
    let mut encoder = StreamEncoder::new("resp_e", "m", 3);
    let mut out = Vec::new();
    encoder.push(&StreamEvent::TextDelta("par".into()), &mut out);
    encoder.push(
        &StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "Rate limit reached. Please try again in 2s.".into(),
        }),
        &mut out,
    );
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: response.failed\n"), "{last}");
    let data = json(last.split_once("data: ").unwrap().1.as_bytes());
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(
        data["response"]["error"],
        json!({"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 2s."})
    );
    // Nothing follows the failure.
    assert!(!text.contains("response.completed"));
    assert_eq!(
        decode_every_split(text.as_bytes()).last(),
        Some(&StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "Rate limit reached. Please try again in 2s.".into(),
        }))
    );
}

#[test]
fn encoder_final_response_matches_response_from_ir() {
    // The streamed response object equals the non-streamed one for the same
    // content, ids included.
    let resp = weather_response();
    let events = expected_stream_events();
    let mut encoder = StreamEncoder::new(resp.id.clone(), resp.model.clone(), resp.created);
    let bytes = encode(&mut encoder, &events);
    let frames = String::from_utf8(bytes).unwrap();
    let last = frames.trim_end().rsplit("\n\n").next().unwrap();
    let data = json(last.split_once("data: ").unwrap().1.as_bytes());
    assert_eq!(data["type"], "response.completed");
    let expected = json(&response_from_ir(&ChatResponse {
        // The stream's reasoning is one summary part with the separator.
        content: vec![
            reasoning(&format!(
                "**Planning**\n\nCheck the weather for both cities.\n\n{S1}"
            )),
            redacted("gAAAAABoEncryptedReasoning=="),
            text(ANSWER),
            call("call_paris", "get_weather", r#"{"city":"Paris"}"#),
            call("call_rome", "get_weather", r#"{"city":"Rome"}"#),
        ],
        ..resp
    }));
    assert_eq!(data["response"], expected);
}

#[test]
fn vendor_responses_with_nulls_are_read() {
    let body = json!({
        "id": "resp_v", "object": "response", "created_at": null, "model": null, "status": "completed",
        "output": [
            {"type": "message", "role": "assistant", "content": "plain"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "x"}}
        ],
        "parallel_tool_calls": null, "tools": null,
        "usage": {"input_tokens": 3, "output_tokens": null, "total_tokens": 3, "input_tokens_details": null}
    });
    let ir = response_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        ir,
        ChatResponse {
            id: "resp_v".into(),
            content: vec![text("plain")],
            usage: Usage {
                input_tokens: 3,
                ..Usage::default()
            },
            ..ChatResponse::default()
        }
    );
}

#[test]
fn tool_output_parts_and_unreplayable_reasoning() {
    let body = json!({
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": "look"},
            // Open-weight models put raw reasoning in `content`; without
            // encrypted content it cannot be replayed upstream.
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "raw thought"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "screenshot", "arguments": "{}", "status": "completed"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "captured"},
                {"type": "input_image", "image_url": "https://img.example/s.png", "detail": "auto"}
            ]}
        ]
    });
    let req = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        req.messages[1..],
        [
            msg(
                Role::Assistant,
                vec![reasoning("raw thought"), call("c1", "screenshot", "{}")]
            ),
            msg(
                Role::Tool,
                vec![result(
                    "c1",
                    vec![
                        text("captured"),
                        Part::Image {
                            source: MediaSource::Url {
                                url: "https://img.example/s.png".into()
                            },
                            detail: Some("auto".into()),
                            cache_control: None,
                        }
                    ]
                )]
            ),
        ]
    );
    let out = json(&request_from_ir(&req).unwrap());
    assert_eq!(
        out["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]},
            {"type": "function_call", "arguments": "{}", "call_id": "c1", "name": "screenshot"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "captured"},
                {"type": "input_image", "detail": "auto", "image_url": "https://img.example/s.png"}
            ]}
        ])
    );
    // Nothing was replayed, so nothing encrypted is asked for.
    assert!(out.get("include").is_none());
}
