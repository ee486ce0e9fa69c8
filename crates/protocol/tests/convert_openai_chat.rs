#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::convert::openai_chat::{
    MaxTokensField, OpenAiOptions, StreamDecoder, StreamEncoder, error_body, parse_error,
    request_from_ir, request_from_ir_with, request_to_ir, response_from_ir, response_to_ir,
};
use protocol::convert::{ConvertError, DecodeStream, EncodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::openai::{ChatCompletionRequest, RequestMessage};
use protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn text_cc(text: &str, cc: Value) -> Part {
    Part::Text {
        text: text.into(),
        cache_control: Some(cc),
    }
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

fn call(id: &str, name: &str, args: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
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

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}),
        strict: Some(true),
        cache_control: None,
    }
}

fn invalid(body: Value) -> String {
    match request_to_ir(body.to_string().as_bytes()) {
        Err(e @ ConvertError::Invalid { .. }) => e.to_string(),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn minimal(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

// ---------------------------------------------------------------------------
// Requests

fn rich_ir() -> ChatRequest {
    let mut alice = msg(
        Role::User,
        vec![
            Part::text("What is in these pictures, and what's the weather in Paris and Lyon?"),
            Part::Image {
                source: MediaSource::Url {
                    url: "https://example.com/cat.png".into(),
                },
                detail: Some("high".into()),
                cache_control: None,
            },
            Part::Image {
                source: MediaSource::Base64 {
                    media_type: "image/jpeg".into(),
                    data: "/9j/4AAQSkZJRg==".into(),
                },
                detail: None,
                cache_control: None,
            },
            Part::Audio {
                data: "UklGRiQAAABXQVZF".into(),
                format: "wav".into(),
            },
            Part::File {
                source: MediaSource::Base64 {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0xLjQK".into(),
                },
                filename: Some("report.pdf".into()),
                cache_control: None,
            },
        ],
    );
    alice.name = Some("alice".into());
    ChatRequest {
        model: "gpt-4o".into(),
        system: vec![
            Part::text("You are a weather assistant."),
            text_cc("Answer in French.", json!({"type": "ephemeral"})),
        ],
        messages: vec![
            alice,
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "Two cities: call the tool twice, in parallel.".into(),
                        signature: None,
                    },
                    call("call_paris", "get_weather", r#"{"city":"Paris"}"#),
                    call("call_lyon", "get_weather", r#"{"city":"Lyon"}"#),
                ],
            ),
            msg(
                Role::Tool,
                vec![result("call_paris", vec![Part::text("18°C, sunny")])],
            ),
            msg(
                Role::Tool,
                vec![result("call_lyon", vec![Part::text("21°C, cloudy")])],
            ),
            Message::text(
                Role::Assistant,
                "Paris : 18 °C, ensoleillé. Lyon : 21 °C, nuageux.",
            ),
            Message::text(Role::System, "Keep answers under 50 words."),
            Message::text(Role::User, "Merci !"),
            Message::text(Role::User, "Et demain ?"),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Auto),
        parallel_tool_calls: Some(true),
        max_tokens: Some(2048),
        temperature: Some(0.2),
        top_p: Some(0.9),
        top_k: None,
        stop: vec!["\n\nUser:".into(), "END".into()],
        seed: Some(42),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(-0.25),
        n: Some(1),
        stream: true,
        include_usage: true,
        reasoning: Some(Reasoning {
            effort: Some("low".into()),
            ..Reasoning::default()
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather_report".into(),
            schema: json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}),
            strict: Some(true),
        }),
        user: Some("user-1234".into()),
        extra: json!({"metadata": {"session": "abc"}, "store": false, "service_tier": "auto"})
            .as_object()
            .unwrap()
            .clone(),
        extra_format: Some(Format::OpenAiChat),
    }
}

#[test]
fn rich_request_to_ir() {
    let ir = request_to_ir(&fixture("request_rich.json")).unwrap();
    assert_eq!(ir, rich_ir());
}

#[test]
fn rich_request_fits_the_wire_types_exactly() {
    let original = json_fixture("request_rich.json");
    let typed: ChatCompletionRequest = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(typed.messages.len(), 10);
    assert_eq!(serde_json::to_value(&typed).unwrap(), original);

    // OpenRouter's spelling of the reasoning field is read too.
    let m: RequestMessage =
        serde_json::from_value(json!({"role": "assistant", "content": "a", "reasoning": "r"}))
            .unwrap();
    let RequestMessage::Assistant(m) = m else {
        panic!("{m:?}")
    };
    assert_eq!(m.reasoning_content.as_deref(), Some("r"));
    assert!(m.extra.is_empty());
}

#[test]
fn rich_request_round_trips_through_ir() {
    let ir = rich_ir();
    let opts = OpenAiOptions {
        send_reasoning_content: true,
        max_tokens_field: MaxTokensField::MaxCompletionTokens,
        stream_include_usage: false,
        send_cache_control: true,
        ..OpenAiOptions::default()
    };
    let body = request_from_ir_with(&ir, &opts).unwrap();
    assert_eq!(request_to_ir(&body).unwrap(), ir);

    // What the format can say survives; what it says twice is normalised:
    // both leading instructions become one system message, and
    // max_tokens (superseded by max_completion_tokens) is gone.
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["messages"][0],
        json!({"role": "system", "content": [
            {"type": "text", "text": "You are a weather assistant."},
            {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}
        ]})
    );
    assert_eq!(
        v["messages"][2]["reasoning_content"],
        "Two cities: call the tool twice, in parallel."
    );
    assert_eq!(v["messages"][2]["content"], Value::Null);
    assert_eq!(v["max_completion_tokens"], 2048);
    assert!(v.get("max_tokens").is_none());
    assert_eq!(v["metadata"], json!({"session": "abc"}));
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

fn anthropic_style_ir() -> ChatRequest {
    ChatRequest {
        model: "deepseek-chat".into(),
        system: vec![
            text_cc("You are a coding agent.", json!({"type": "ephemeral"})),
            Part::text("Be brief."),
        ],
        messages: vec![
            Message::text(
                Role::User,
                "What's the weather in Paris? Also show me the map.",
            ),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "Two tools.".into(),
                        signature: Some("EqQBCkgIAhABGAIiQ".into()),
                    },
                    Part::text("Checking."),
                    call("toolu_01", "get_weather", r#"{"city":"Paris"}"#),
                    call("toolu_02", "screenshot", ""),
                ],
            ),
            // Anthropic puts tool results (and more text) in a user turn.
            msg(
                Role::User,
                vec![
                    result("toolu_01", vec![Part::text("18°C, sunny")]),
                    result(
                        "toolu_02",
                        vec![
                            Part::text("Map of Paris:"),
                            Part::Image {
                                source: MediaSource::Base64 {
                                    media_type: "image/png".into(),
                                    data: "iVBORw0KGgo=".into(),
                                },
                                detail: None,
                                cache_control: None,
                            },
                        ],
                    ),
                    Part::text("Thanks. And Lyon?"),
                ],
            ),
            msg(
                Role::Assistant,
                vec![call("toolu_03", "get_weather", r#"{"city":"Lyon"}"#)],
            ),
            msg(
                Role::User,
                vec![result("toolu_03", vec![Part::text("21°C, cloudy")])],
            ),
            Message::text(Role::Assistant, "Lyon: 21°C, cloudy."),
            msg(Role::User, vec![Part::text("Great."), Part::text("Bye!")]),
        ],
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: Some("Current weather".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                strict: None,
                cache_control: Some(json!({"type": "ephemeral"})),
            },
            Tool {
                name: "screenshot".into(),
                description: None,
                parameters: json!({"type": "object"}),
                strict: None,
                cache_control: None,
            },
        ],
        tool_choice: Some(ToolChoice::Named("get_weather".into())),
        parallel_tool_calls: Some(false),
        max_tokens: Some(1024),
        temperature: Some(1.0),
        top_k: Some(40),
        stop: vec!["\n\nHuman:".into()],
        stream: true,
        include_usage: false,
        reasoning: Some(Reasoning {
            budget_tokens: Some(4096),
            enabled: Some(true),
            ..Reasoning::default()
        }),
        user: Some("user-9".into()),
        extra: json!({"metadata": {"user_id": "u"}})
            .as_object()
            .unwrap()
            .clone(),
        extra_format: Some(Format::Anthropic),
        ..ChatRequest::default()
    }
}

#[test]
fn request_from_ir_exact_json_with_defaults() {
    let body = request_from_ir(&anthropic_style_ir()).unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, json_fixture("request_from_ir_default.json"));
    // Fields in OpenAI's documented order, model first.
    assert!(body.starts_with(br#"{"model":"deepseek-chat","messages":[{"role":"system""#));
}

#[test]
fn request_from_ir_options_for_deepseek_openai_and_openrouter() {
    let ir = anthropic_style_ir();
    let deepseek = OpenAiOptions {
        send_reasoning_content: true,
        ..OpenAiOptions::default()
    };
    let v: Value = serde_json::from_slice(&request_from_ir_with(&ir, &deepseek).unwrap()).unwrap();
    assert_eq!(v["messages"][2]["reasoning_content"], "Two tools.");
    assert_eq!(v["max_tokens"], 1024);

    let openai = OpenAiOptions {
        max_tokens_field: MaxTokensField::MaxCompletionTokens,
        stream_include_usage: false,
        ..OpenAiOptions::default()
    };
    let v: Value = serde_json::from_slice(&request_from_ir_with(&ir, &openai).unwrap()).unwrap();
    assert_eq!(v["max_completion_tokens"], 1024);
    assert!(v.get("max_tokens").is_none());
    assert!(v.get("stream_options").is_none(), "client did not ask");
    assert!(v["messages"][2].get("reasoning_content").is_none());

    let openrouter = OpenAiOptions {
        send_cache_control: true,
        ..OpenAiOptions::default()
    };
    let v: Value =
        serde_json::from_slice(&request_from_ir_with(&ir, &openrouter).unwrap()).unwrap();
    assert_eq!(
        v["messages"][0]["content"],
        json!([
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."}
        ])
    );
}

#[test]
fn request_from_ir_reemits_only_openai_extras_and_top_k() {
    let mut ir = ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "hi")],
        top_k: Some(20),
        extra: json!({"logprobs": true, "model": "must-not-override"})
            .as_object()
            .unwrap()
            .clone(),
        extra_format: Some(Format::OpenAiChat),
        ..ChatRequest::default()
    };
    let v: Value = serde_json::from_slice(&request_from_ir(&ir).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k": 20, "logprobs": true})
    );
    ir.extra_format = Some(Format::Gemini);
    let v: Value = serde_json::from_slice(&request_from_ir(&ir).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    );
}

#[test]
fn tool_choice_all_forms_both_ways() {
    let tools = json!([{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]);
    let cases = [
        (json!("none"), ToolChoice::None),
        (json!("auto"), ToolChoice::Auto),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "function", "function": {"name": "b"}}),
            ToolChoice::Named("b".into()),
        ),
    ];
    for (wire, ir_choice) in cases {
        let ir = request_to_ir(
            minimal(json!({"tools": tools, "tool_choice": wire}))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(ir.tool_choice.as_ref(), Some(&ir_choice));
        assert_eq!(ir.tools.len(), 2);
        // A function without parameters takes none.
        assert_eq!(ir.tools[0].parameters, json!({"type": "object"}));
        let back: Value = serde_json::from_slice(&request_from_ir(&ir).unwrap()).unwrap();
        assert_eq!(back["tool_choice"], wire);
    }

    // allowed_tools narrows the list; the mode becomes the choice.
    let ir = request_to_ir(
        minimal(
            json!({"tools": tools, "tool_choice": {"type": "allowed_tools", "allowed_tools": {
            "mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]}}}),
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(ir.tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        ir.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );

    // Without tools, OpenAI rejects tool_choice and parallel_tool_calls.
    let ir = ChatRequest {
        model: "m".into(),
        tool_choice: Some(ToolChoice::None),
        parallel_tool_calls: Some(false),
        ..ChatRequest::default()
    };
    let v: Value = serde_json::from_slice(&request_from_ir(&ir).unwrap()).unwrap();
    assert_eq!(v, json!({"model": "m", "messages": []}));
}

#[test]
fn legacy_functions_are_read_as_tools() {
    let body = json!({
        "model": "gpt-3.5-turbo",
        "functions": [{"name": "lookup", "parameters": {"type": "object", "properties": {}}}],
        "function_call": {"name": "lookup"},
        "messages": [
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": null, "function_call": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}},
            {"role": "function", "name": "lookup", "content": "found"},
            {"role": "assistant", "content": null, "function_call": {"name": "lookup", "arguments": "{\"q\":\"y\"}"}},
            {"role": "function", "name": "lookup", "content": "also found"}
        ]
    });
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(ir.tools[0].name, "lookup");
    assert_eq!(ir.tool_choice, Some(ToolChoice::Named("lookup".into())));
    assert_eq!(
        ir.messages[1].content,
        vec![call("call_0", "lookup", r#"{"q":"x"}"#)]
    );
    let named = |id: &str, text: &str| {
        vec![Part::ToolResult {
            call_id: id.into(),
            name: Some("lookup".into()),
            content: vec![Part::text(text)],
            is_error: false,
            cache_control: None,
        }]
    };
    assert_eq!(ir.messages[2].content, named("call_0", "found"));
    assert_eq!(ir.messages[4].content, named("call_1", "also found"));
    assert!(ir.extra.is_empty());
}

#[test]
fn extensions_thinking_top_k_cache_control_and_reasoning_alias() {
    let body = minimal(json!({
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "top_k": 40,
        "max_tokens": 300,
        "stop": "END",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "assistant", "reasoning": "hmm", "content": [{"type": "text", "text": "ok"}, {"type": "refusal", "refusal": "but no"}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}, {"type": "file", "file": {"filename": "notes.txt", "file_data": "aGVsbG8="}}]}
        ],
        "tools": [{"type": "function", "cache_control": {"type": "ephemeral"}, "function": {"name": "f", "parameters": {"type": "object"}}}]
    }));
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            budget_tokens: Some(2048),
            enabled: Some(true),
            ..Reasoning::default()
        })
    );
    assert_eq!(ir.top_k, Some(40));
    assert_eq!(ir.max_tokens, Some(300));
    assert_eq!(ir.stop, ["END"]);
    assert_eq!(
        ir.messages[0].content,
        vec![text_cc(
            "long doc",
            json!({"type": "ephemeral", "ttl": "1h"})
        )]
    );
    assert_eq!(
        ir.messages[1].content,
        vec![
            Part::Reasoning {
                text: "hmm".into(),
                signature: None
            },
            Part::text("ok"),
            Part::text("but no"),
        ]
    );
    assert_eq!(
        ir.messages[2].content,
        vec![
            Part::Image {
                source: MediaSource::Url {
                    url: "https://x.test/a.png".into()
                },
                detail: None,
                cache_control: None,
            },
            Part::File {
                source: MediaSource::Base64 {
                    media_type: "text/plain".into(),
                    data: "aGVsbG8=".into()
                },
                filename: Some("notes.txt".into()),
                cache_control: None,
            },
        ]
    );
    assert_eq!(
        ir.tools[0].cache_control,
        Some(json!({"type": "ephemeral"}))
    );
    assert!(ir.extra.is_empty(), "{:?}", ir.extra);

    let ir = request_to_ir(
        minimal(json!({"reasoning_effort": "none"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            effort: Some("none".into()),
            enabled: Some(false),
            ..Reasoning::default()
        })
    );
}

#[test]
fn wrong_shapes_name_the_field() {
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": 5}]}),
            "messages[2].content: expected a string or an array",
        ),
        (json!({"messages": []}), "model: required"),
        (json!({"model": "m"}), "messages: required"),
        (
            json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role: unknown role \"robot\"; expected system, developer, user, assistant, tool or function",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text: required",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}),
            "messages[0].content[0].type: unsupported content part type \"video\"",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]}),
            "messages[0].content[0].image_url.url: required",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id: required",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": 3}}]}]}),
            "messages[0].tool_calls[0].function.name: expected a string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}),
            "messages[0].content[0].file.file_id: uploaded file references cannot be sent to this model's API; send the content as file_data",
        ),
        (
            minimal(json!({"tools": [{"type": "custom", "custom": {"name": "grep"}}]})),
            "tools[0]: custom tools cannot be converted to other API formats",
        ),
        (
            minimal(json!({"tool_choice": "sometimes"})),
            "tool_choice: expected \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
        ),
        (
            minimal(json!({"stop": ["a", 1]})),
            "stop[1]: expected a string",
        ),
        (
            minimal(json!({"temperature": "hot"})),
            "temperature: expected a number",
        ),
        (
            minimal(json!({"max_tokens": -1})),
            "max_tokens: expected a non-negative integer",
        ),
        (
            minimal(json!({"response_format": {"type": "yaml"}})),
            "response_format.type: unknown response format \"yaml\"; expected text, json_object or json_schema",
        ),
        (
            minimal(json!({"stream_options": {"include_usage": "yes"}})),
            "stream_options.include_usage: expected a boolean",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(invalid(body), want);
    }
    assert!(matches!(
        request_to_ir(b"[1,2]"),
        Err(ConvertError::Json(_))
    ));
    assert!(matches!(request_to_ir(b"{"), Err(ConvertError::Json(_))));
}

#[test]
fn request_from_ir_rejects_what_openai_cannot_carry() {
    let file_url = ChatRequest {
        model: "m".into(),
        messages: vec![msg(
            Role::User,
            vec![Part::File {
                source: MediaSource::Url {
                    url: "https://x.test/a.pdf".into(),
                },
                filename: None,
                cache_control: None,
            }],
        )],
        ..ChatRequest::default()
    };
    assert!(matches!(
        request_from_ir(&file_url),
        Err(ConvertError::Unsupported(_))
    ));
    let image_in_system = ChatRequest {
        model: "m".into(),
        system: vec![Part::Audio {
            data: "x".into(),
            format: "wav".into(),
        }],
        ..ChatRequest::default()
    };
    assert_eq!(
        request_from_ir(&image_in_system).unwrap_err().to_string(),
        "audio in a system is not supported by this upstream format"
    );
}

// ---------------------------------------------------------------------------
// Responses

fn response_ir() -> ChatResponse {
    ChatResponse {
        id: "chatcmpl-9a8b7c6d5e".into(),
        model: "deepseek-reasoner".into(),
        created: 1_746_000_300,
        content: vec![
            Part::Reasoning {
                text: "The user asked about two cities.".into(),
                signature: None,
            },
            Part::text("Let me check both cities."),
            call("call_0_paris", "get_weather", r#"{"city":"Paris"}"#),
            call("call_1_lyon", "get_weather", r#"{"city":"Lyon"}"#),
        ],
        finish_reason: FinishReason::ToolCalls,
        stop_sequence: None,
        usage: Usage {
            input_tokens: 1200,
            output_tokens: 300,
            cache_read_tokens: 1024,
            cache_write_tokens: 0,
            reasoning_tokens: 250,
        },
        refusal: None,
    }
}

#[test]
fn response_to_ir_keeps_choice_zero() {
    let got = response_to_ir(&fixture("response_reasoning_tools.json")).unwrap();
    assert_eq!(got, response_ir());
}

#[test]
fn response_from_ir_exact_json_and_back() {
    let ir = ChatResponse {
        id: "msg_01XFDUDYJgAACzvnptvVoYEL".into(),
        model: "claude-sonnet-4-5".into(),
        created: 1_746_000_300,
        content: vec![
            Part::Reasoning {
                text: "Two lookups are needed.".into(),
                signature: Some("sig".into()),
            },
            Part::text("Let me check both cities."),
            call("toolu_01A", "get_weather", r#"{"city":"Paris"}"#),
            call("toolu_01B", "get_time", ""),
        ],
        finish_reason: FinishReason::ToolCalls,
        usage: Usage {
            input_tokens: 1200,
            output_tokens: 300,
            cache_read_tokens: 1024,
            cache_write_tokens: 100,
            reasoning_tokens: 250,
        },
        ..ChatResponse::default()
    };
    let body = response_from_ir(&ir);
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, json_fixture("response_from_ir.json"));

    // Back to IR: all but the signature (OpenAI has no slot) and the empty
    // arguments, which OpenAI spells `{}`.
    let mut want = ir.clone();
    want.content[0] = Part::Reasoning {
        text: "Two lookups are needed.".into(),
        signature: None,
    };
    want.content[3] = call("toolu_01B", "get_time", "{}");
    assert_eq!(response_to_ir(&body).unwrap(), want);

    // And the OpenAI response survives OpenAI -> IR -> OpenAI.
    let again = response_to_ir(&response_from_ir(&response_ir())).unwrap();
    assert_eq!(again, response_ir());
}

#[test]
fn response_content_null_only_with_tool_calls_or_refusal() {
    let only_calls = ChatResponse {
        id: "x".into(),
        content: vec![call("c", "f", "{}")],
        finish_reason: FinishReason::ToolCalls,
        ..ChatResponse::default()
    };
    let v: Value = serde_json::from_slice(&response_from_ir(&only_calls)).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );

    let refused = ChatResponse {
        id: "x".into(),
        refusal: Some("I can't help with that.".into()),
        ..ChatResponse::default()
    };
    let v: Value = serde_json::from_slice(&response_from_ir(&refused)).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        v["choices"][0]["message"]["refusal"],
        "I can't help with that."
    );
    assert_eq!(
        response_to_ir(&response_from_ir(&refused)).unwrap(),
        refused
    );

    let empty = ChatResponse::default();
    let v: Value = serde_json::from_slice(&response_from_ir(&empty)).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "");
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() > 9, "{id}");
}

#[test]
fn finish_reasons_both_ways() {
    for (wire, ir) in [
        ("stop", FinishReason::Stop),
        ("length", FinishReason::Length),
        ("tool_calls", FinishReason::ToolCalls),
        ("content_filter", FinishReason::ContentFilter),
    ] {
        let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "t"}, "finish_reason": wire}]});
        let got = response_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(got.finish_reason, ir);
        assert_eq!(got.usage, Usage::default());
        let back: Value = serde_json::from_slice(&response_from_ir(&got)).unwrap();
        assert_eq!(back["choices"][0]["finish_reason"], wire);
    }
    // A vendor ending a tool-calling turn with "stop" (and vLLM's stop_reason).
    let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "stop", "stop_reason": null}]});
    let got = response_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(got.finish_reason, FinishReason::ToolCalls);
    let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop", "stop_reason": "###"}]});
    assert_eq!(
        response_to_ir(body.to_string().as_bytes())
            .unwrap()
            .stop_sequence
            .as_deref(),
        Some("###")
    );
}

// ---------------------------------------------------------------------------
// Streams

/// Decodes `bytes` split at `split`, through the SSE decoder.
fn decode_split(bytes: &[u8], split: usize) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new(1 << 20);
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for piece in [&bytes[..split], &bytes[split..]] {
        sse.push(piece).unwrap();
        while let Some(ev) = sse.next_event() {
            dec.push(&ev, &mut out).unwrap();
        }
    }
    while let Some(ev) = sse.finish() {
        dec.push(&ev, &mut out).unwrap();
    }
    dec.finish(&mut out);
    out
}

/// Decodes at every byte split and checks all agree.
fn decode_all_splits(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = decode_split(bytes, bytes.len());
    for split in 0..bytes.len() {
        assert_eq!(decode_split(bytes, split), whole, "split at {split}");
    }
    whole
}

fn start(id: &str, model: &str, created: u64) -> StreamEvent {
    StreamEvent::Start {
        id: id.into(),
        model: model.into(),
        created,
    }
}

fn tool_start(index: u32, id: &str, name: &str) -> StreamEvent {
    StreamEvent::ToolCallStart {
        index,
        id: id.into(),
        name: name.into(),
        signature: None,
    }
}

fn tool_delta(index: u32, args: &str) -> StreamEvent {
    StreamEvent::ToolCallDelta {
        index,
        arguments: args.into(),
    }
}

fn finish(reason: FinishReason) -> StreamEvent {
    StreamEvent::Finish {
        reason,
        stop_sequence: None,
    }
}

#[test]
fn stream_with_two_parallel_tool_calls() {
    let events = decode_all_splits(&fixture("stream_parallel_tools.sse"));
    assert_eq!(
        events,
        vec![
            start(
                "chatcmpl-BTz4q9VZ8cXg1kLmN2pQrS3tUvWx",
                "gpt-4.1-2025-04-14",
                1_746_000_000
            ),
            tool_start(0, "call_Paris7mQ", "get_weather"),
            tool_delta(0, "{\"ci"),
            tool_delta(0, "ty\": \"Paris\"}"),
            tool_start(1, "call_Lyon9zX", "get_weather"),
            tool_delta(1, "{\"city\": "),
            tool_delta(1, "\"Lyon\"}"),
            finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 82,
                output_tokens: 46,
                cache_read_tokens: 64,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn deepseek_reasoning_stream() {
    let events = decode_all_splits(&fixture("stream_deepseek_reasoning.sse"));
    assert_eq!(
        events,
        vec![
            start(
                "5f8a1c3e-2b4d-4e6f-8a9b-0c1d2e3f4a5b",
                "deepseek-reasoner",
                1_746_000_100
            ),
            StreamEvent::ReasoningDelta("Okay".into()),
            StreamEvent::ReasoningDelta(", the user says hi.\n".into()),
            StreamEvent::TextDelta("Hello".into()),
            StreamEvent::TextDelta("! How can I help?".into()),
            finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 13,
                output_tokens: 42,
                reasoning_tokens: 30,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn vendor_sending_whole_calls_at_index_zero() {
    let events = decode_all_splits(&fixture("stream_index0_complete_calls.sse"));
    assert_eq!(
        events,
        vec![
            start("x1ZbaJ3kN8e", "gemini-2.5-flash", 1_746_000_200),
            tool_start(0, "function-call-11", "get_weather"),
            tool_delta(0, r#"{"city":"Paris"}"#),
            tool_start(1, "function-call-12", "get_weather"),
            tool_delta(1, r#"{"city":"Lyon"}"#),
            // "stop" after tool calls is a tool-call turn.
            finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 51,
                output_tokens: 24,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn repeated_ids_and_missing_indexes_continue_the_same_call() {
    let chunks = [
        json!({"id": "a", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"x\""}}]}}]}),
        json!({"id": "a", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": ":1}"}}]}}]}),
        json!({"id": "a", "model": "m", "choices": [{"delta": {"tool_calls": [{"function": {"arguments": " "}}]}}]}),
        // No id at first: one is made up, and a late id does not split the call.
        json!({"id": "a", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"name": "g"}}]}}]}),
        json!({"id": "a", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "late", "function": {"arguments": "{}"}}]}}]}),
        // A choice other than 0 is ignored.
        json!({"id": "a", "model": "m", "choices": [{"index": 1, "delta": {"content": "other"}}]}),
    ];
    let sse: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    let events = decode_all_splits(sse.as_bytes());
    assert_eq!(
        events,
        vec![
            start("a", "m", 0),
            tool_start(0, "c1", "f"),
            tool_delta(0, "{\"x\""),
            tool_delta(0, ":1}"),
            tool_delta(0, " "),
            tool_start(1, "call_1", "g"),
            tool_delta(1, "{}"),
            // The upstream closed without finish_reason.
            finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn errors_inside_a_stream() {
    let sse = concat!(
        "data: {\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
    );
    let events = decode_all_splits(sse.as_bytes());
    assert_eq!(
        events,
        vec![
            start("a", "m", 1),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::Error(ApiError {
                status: 500,
                kind: ErrorKind::Api,
                message: "The server had an error while processing your request.".into(),
            }),
        ]
    );
    // vLLM shape with a numeric code, and an `event: error` frame.
    let sse = "data: {\"object\":\"error\",\"message\":\"too many\",\"type\":\"BadRequestError\",\"param\":null,\"code\":429}\n\n";
    assert_eq!(
        decode_all_splits(sse.as_bytes()),
        vec![StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "too many".into(),
        })]
    );
    let sse = "event: error\ndata: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n";
    assert_eq!(
        decode_all_splits(sse.as_bytes()),
        vec![StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "slow down".into(),
        })]
    );
    // Not JSON at all is a conversion error, not a silent skip.
    let mut dec = StreamDecoder::new();
    let ev = protocol::sse::SseEvent {
        data: "{nope".into(),
        ..Default::default()
    };
    assert!(matches!(
        dec.push(&ev, &mut Vec::new()),
        Err(ConvertError::Json(_))
    ));
}

fn encoder_events() -> Vec<StreamEvent> {
    vec![
        start("chatcmpl-llmux1", "claude-sonnet-4-5", 1_746_000_400),
        StreamEvent::ReasoningDelta("Think \"twice\".".into()),
        StreamEvent::ReasoningSignature("sig".into()),
        StreamEvent::TextDelta("Hé\nllo 😀".into()),
        tool_start(0, "toolu_01A", "get_weather"),
        tool_delta(0, "{\"city\":"),
        tool_delta(0, "\"Paris\"}"),
        tool_start(1, "toolu_01B", "get_time"),
        tool_delta(1, "{}"),
        StreamEvent::Usage(Usage {
            input_tokens: 50,
            output_tokens: 1,
            cache_read_tokens: 10,
            ..Usage::default()
        }),
        finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            input_tokens: 50,
            output_tokens: 20,
            cache_read_tokens: 10,
            cache_write_tokens: 0,
            reasoning_tokens: 5,
        }),
    ]
}

fn encode(mut enc: StreamEncoder, events: &[StreamEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        enc.push(ev, &mut out);
    }
    enc.finish(&mut out);
    out
}

#[test]
fn encoder_exact_output_with_usage() {
    let out = encode(
        StreamEncoder::new("chatcmpl-llmux1", "claude-sonnet-4-5", 1_746_000_400, true),
        &encoder_events(),
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(fixture("encoded_with_usage.sse")).unwrap()
    );
}

#[test]
fn encoder_exact_output_without_usage_takes_ids_from_start() {
    let out = encode(StreamEncoder::new("", "", 0, false), &encoder_events());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(fixture("encoded_without_usage.sse")).unwrap()
    );
}

#[test]
fn decode_of_encode_is_identity() {
    let events = vec![
        start("chatcmpl-rt", "m", 7),
        StreamEvent::ReasoningDelta("r1 \"q\"".into()),
        StreamEvent::ReasoningDelta("\\r2\n".into()),
        StreamEvent::TextDelta("line\r\nbreak\u{2028}é".into()),
        StreamEvent::RefusalDelta("no".into()),
        tool_start(0, "call_a", "f"),
        tool_delta(0, "{\"a\":"),
        tool_delta(0, "1}"),
        tool_start(1, "call_b", "g"),
        tool_delta(1, "{}"),
        finish(FinishReason::Length),
        StreamEvent::Usage(Usage {
            input_tokens: 100,
            output_tokens: 40,
            cache_read_tokens: 30,
            cache_write_tokens: 20,
            reasoning_tokens: 10,
        }),
    ];
    let bytes = encode(StreamEncoder::new("chatcmpl-rt", "m", 7, true), &events);
    assert_eq!(decode_all_splits(&bytes), events);

    // Without usage the stream ends at Finish.
    let bytes = encode(StreamEncoder::new("chatcmpl-rt", "m", 7, false), &events);
    assert_eq!(decode_all_splits(&bytes), events[..events.len() - 1]);
}

#[test]
fn encoder_closes_unfinished_and_failed_streams() {
    // No Finish from upstream: the encoder still ends the choice.
    let out = encode(
        StreamEncoder::new("c", "m", 1, false),
        &[start("c", "m", 1), StreamEvent::TextDelta("x".into())],
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with(concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    )));

    // An error ends the stream with an OpenAI error frame; nothing after it
    // but [DONE].
    let err = ApiError {
        status: 529,
        kind: ErrorKind::Overloaded,
        message: "Overloaded".into(),
    };
    let out = encode(
        StreamEncoder::new("c", "m", 1, true),
        &[
            start("c", "m", 1),
            StreamEvent::Error(err),
            StreamEvent::TextDelta("late".into()),
            finish(FinishReason::Stop),
        ],
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with(concat!(
        "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"api_error\",\"param\":null,\"code\":\"overloaded\"}}\n\n",
        "data: [DONE]\n\n"
    )), "{text}");
    assert!(!text.contains("late"));
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn error_bodies_per_kind() {
    let cases = [
        (ErrorKind::InvalidRequest, "invalid_request_error", "null"),
        (
            ErrorKind::Authentication,
            "authentication_error",
            "\"invalid_api_key\"",
        ),
        (ErrorKind::Permission, "permission_error", "null"),
        (ErrorKind::NotFound, "not_found_error", "null"),
        (
            ErrorKind::RequestTooLarge,
            "invalid_request_error",
            "\"request_too_large\"",
        ),
        (
            ErrorKind::RateLimit,
            "rate_limit_error",
            "\"rate_limit_exceeded\"",
        ),
        (ErrorKind::Api, "api_error", "null"),
        (ErrorKind::Overloaded, "api_error", "\"overloaded\""),
        (ErrorKind::Timeout, "timeout", "null"),
    ];
    for (kind, ty, code) in cases {
        let err = ApiError {
            status: 400,
            kind,
            message: "m \"q\"".into(),
        };
        let body = String::from_utf8(error_body(&err)).unwrap();
        assert_eq!(
            body,
            format!(
                "{{\"error\":{{\"message\":\"m \\\"q\\\"\",\"type\":\"{ty}\",\"param\":null,\"code\":{code}}}}}"
            )
        );
        // Even under a generic status the body brings the kind back.
        assert_eq!(parse_error(400, body.as_bytes()).kind, kind);
    }
}

#[test]
fn parse_error_real_shapes() {
    // OpenAI's own 401 says invalid_request_error; the status decides.
    let e = parse_error(
        401,
        br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.status, 401);
    let e = parse_error(
        429,
        br#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::RateLimit);
    let e = parse_error(
        404,
        br#"{"error":{"message":"The model `gpt-5o` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = parse_error(
        400,
        br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    );
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::InvalidRequest,
            "This model's maximum context length is 128000 tokens."
        )
    );
    let e = parse_error(
        500,
        br#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
    );
    assert_eq!(e.kind, ErrorKind::Api);
    let e = parse_error(503, b"<html><body>Service Unavailable</body></html>");
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(
        e.message,
        "upstream returned HTTP 503: <html><body>Service Unavailable</body></html>"
    );
    assert_eq!(parse_error(502, b"").message, "upstream returned HTTP 502");
    // FastAPI-style vendor body.
    let e = parse_error(422, br#"{"detail":"max_tokens must be positive"}"#);
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidRequest, "max_tokens must be positive")
    );
}

#[test]
fn encoder_gives_argumentless_calls_an_empty_object() {
    let events = [
        start("c", "m", 1),
        tool_start(0, "toolu_a", "now"),
        tool_start(1, "toolu_b", "f"),
        tool_delta(1, "{\"x\":1}"),
        finish(FinishReason::ToolCalls),
    ];
    let bytes = encode(StreamEncoder::new("c", "m", 1, false), &events);
    assert_eq!(
        decode_all_splits(&bytes),
        vec![
            start("c", "m", 1),
            tool_start(0, "toolu_a", "now"),
            tool_start(1, "toolu_b", "f"),
            tool_delta(1, "{\"x\":1}"),
            tool_delta(0, "{}"),
            finish(FinishReason::ToolCalls),
        ]
    );
}

// ---------------------------------------------------------------------------
// Vendor dialects: Databricks reasoning blocks, xAI's refused parameters

/// docs.databricks.com "Query reasoning models": Claude's answer carries its thinking as a
/// `reasoning` block (summary text and signature) before the text, and `id` may be null.
#[test]
fn databricks_reasoning_blocks_are_read() {
    let resp = response_to_ir(&fixture("databricks_reasoning.json")).unwrap();
    assert_eq!(resp.id, "");
    assert_eq!(resp.model, "databricks-claude-3-7-sonnet");
    assert_eq!(
        resp.content,
        vec![
            Part::Reasoning {
                text: "The question is asking about the scientific explanation for why the sky appears blue.".into(),
                signature: Some("EqoBCkgIARABGAIiQAhCWRmlaLuPiHaF357JzGmloqLqkeBm3cHG9NFTxKMyC/9bBdBInUsE3IZk6RxWge".into()),
            },
            Part::text("The sky appears blue because of Rayleigh scattering."),
        ]
    );
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(resp.usage.output_tokens, 48);
}

#[test]
fn databricks_reasoning_stream() {
    let events = decode_all_splits(&fixture("stream_databricks_reasoning.sse"));
    assert_eq!(
        events,
        vec![
            start("msg_01", "databricks-claude-3-7-sonnet", 1_745_623_322),
            StreamEvent::ReasoningDelta("Rayleigh".into()),
            StreamEvent::ReasoningDelta(" scattering.".into()),
            StreamEvent::ReasoningSignature("EqoBCkgIARABGAIiQAhC".into()),
            StreamEvent::TextDelta("The sky".into()),
            StreamEvent::TextDelta(" is blue.".into()),
            finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 13,
                output_tokens: 9,
                ..Usage::default()
            }),
        ]
    );
}

fn reasoning_turns(effort: Option<&str>) -> ChatRequest {
    ChatRequest {
        model: "databricks-claude-sonnet-4".into(),
        messages: vec![
            msg(Role::User, vec![Part::text("Why is the sky blue?")]),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "Think of scattering.".into(),
                        signature: Some("sig-1".into()),
                    },
                    Part::Reasoning {
                        text: "Unsigned thoughts.".into(),
                        signature: None,
                    },
                    Part::text("Rayleigh scattering."),
                    call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                ],
            ),
            msg(
                Role::Tool,
                vec![result("call_1", vec![Part::text("sunny")])],
            ),
        ],
        reasoning: effort.map(|e| Reasoning {
            effort: Some(e.into()),
            ..Reasoning::default()
        }),
        stop: vec!["END".into()],
        presence_penalty: Some(0.5),
        frequency_penalty: Some(0.25),
        temperature: Some(0.7),
        ..ChatRequest::default()
    }
}

#[test]
fn databricks_gets_signed_reasoning_blocks_and_a_thinking_budget() {
    let opts = OpenAiOptions {
        send_reasoning_blocks: true,
        thinking_object: true,
        ..OpenAiOptions::default()
    };
    let v: Value = serde_json::from_slice(
        &request_from_ir_with(&reasoning_turns(Some("low")), &opts).unwrap(),
    )
    .unwrap();
    // Only the signed reasoning goes back, as a block before the text.
    assert_eq!(
        v["messages"][1]["content"],
        json!([
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think of scattering.", "signature": "sig-1"}]},
            {"type": "text", "text": "Rayleigh scattering."},
        ])
    );
    assert_eq!(v["messages"][1]["tool_calls"][0]["id"], "call_1");
    // `low` is Anthropic's 1024-token budget; max_tokens leaves room above it.
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert!(v.get("reasoning_effort").is_none(), "{v}");
    assert_eq!(v["max_tokens"], 64_000);

    // No reasoning asked: no thinking, no max_tokens invented.
    let v: Value =
        serde_json::from_slice(&request_from_ir_with(&reasoning_turns(None), &opts).unwrap())
            .unwrap();
    assert!(
        v.get("thinking").is_none() && v.get("max_tokens").is_none(),
        "{v}"
    );
    // Without the Databricks options, reasoning never becomes a content block.
    let v: Value = serde_json::from_slice(
        &request_from_ir_with(&reasoning_turns(Some("low")), &OpenAiOptions::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(v["messages"][1]["content"], "Rayleigh scattering.");
    assert_eq!(v["reasoning_effort"], "low");
}

/// docs.x.ai guides/reasoning: reasoning models reject `presence_penalty`,
/// `frequency_penalty` and `stop`; most Grok models reject `reasoning_effort`.
#[test]
fn xai_refused_parameters_are_left_out() {
    let ir = reasoning_turns(Some("high"));
    let both = OpenAiOptions {
        omit_penalties_and_stop: true,
        omit_reasoning_effort: true,
        ..OpenAiOptions::default()
    };
    let v: Value = serde_json::from_slice(&request_from_ir_with(&ir, &both).unwrap()).unwrap();
    for field in [
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "reasoning_effort",
    ] {
        assert!(v.get(field).is_none(), "{field} sent: {v}");
    }
    assert_eq!(v["temperature"], 0.7);
    assert_eq!(
        both.omitted_fields().collect::<Vec<_>>(),
        [
            "presence_penalty",
            "frequency_penalty",
            "stop",
            "reasoning_effort"
        ]
    );

    let effort_only = OpenAiOptions {
        omit_reasoning_effort: true,
        ..OpenAiOptions::default()
    };
    let v: Value =
        serde_json::from_slice(&request_from_ir_with(&ir, &effort_only).unwrap()).unwrap();
    assert_eq!(v["presence_penalty"], 0.5);
    assert_eq!(v["stop"], "END");
    assert!(v.get("reasoning_effort").is_none());
    assert_eq!(
        effort_only.omitted_fields().collect::<Vec<_>>(),
        ["reasoning_effort"]
    );
    assert_eq!(OpenAiOptions::default().omitted_fields().count(), 0);
}
