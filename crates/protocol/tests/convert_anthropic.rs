#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::convert::anthropic::{
    StreamDecoder, StreamEncoder, default_max_tokens, error_body, estimate_input_tokens,
    parse_error, request_from_ir, request_to_ir, response_from_ir, response_to_ir,
};
use protocol::convert::{ConvertError, DecodeStream, EncodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn to_value(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

// ---------------------------------------------------------------------------
// Requests: IR -> Anthropic
// ---------------------------------------------------------------------------

fn cache() -> Option<Value> {
    Some(json!({"type": "ephemeral"}))
}

fn user(parts: Vec<Part>) -> Message {
    Message {
        role: Role::User,
        content: parts,
        name: None,
    }
}

fn msg(role: Role, parts: Vec<Part>) -> Message {
    Message {
        role,
        content: parts,
        name: None,
    }
}

fn tool_call(id: &str, name: &str, arguments: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        signature: None,
    }
}

fn tool_result(call_id: &str, content: Vec<Part>, is_error: bool) -> Part {
    Part::ToolResult {
        call_id: call_id.into(),
        name: None,
        content,
        is_error,
        cache_control: None,
    }
}

/// What an OpenAI Chat Completions client's request looks like in the IR.
fn openai_like_request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5-20250929".into(),
        system: vec![
            Part::text("You are a weather assistant."),
            Part::Text {
                text: "Use metric units.".into(),
                cache_control: cache(),
            },
            Part::text(""),
        ],
        messages: vec![
            user(vec![
                Part::text("What's the weather in Paris and Tokyo?"),
                Part::Image {
                    source: MediaSource::from_url("data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="),
                    detail: Some("high".into()),
                    cache_control: None,
                },
                Part::Image {
                    source: MediaSource::from_url("https://example.com/map.png"),
                    detail: None,
                    cache_control: None,
                },
            ]),
            // Consecutive user messages are merged into one turn.
            Message::text(Role::User, "Also, be brief."),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "I need both cities; call the tool twice.".into(),
                        signature: Some("EqQBCgIYAhIMsig".into()),
                    },
                    // Unsigned reasoning from another vendor cannot be sent back.
                    Part::Reasoning {
                        text: "vendor reasoning".into(),
                        signature: None,
                    },
                    Part::text(""),
                    Part::text("Checking both."),
                    tool_call("call_paris", "get_weather", r#"{"city":"Paris"}"#),
                    tool_call(
                        "functions.get_weather:1",
                        "get_weather",
                        r#"{"city": "Tokyo"}"#,
                    ),
                ],
            ),
            msg(
                Role::Tool,
                vec![tool_result(
                    "call_paris",
                    vec![Part::text("18°C, sunny")],
                    false,
                )],
            ),
            msg(
                Role::Tool,
                vec![tool_result(
                    "functions.get_weather:1",
                    vec![
                        Part::text("timeout; cached value:"),
                        Part::Image {
                            source: MediaSource::from_url("https://example.com/tokyo.png"),
                            detail: None,
                            cache_control: None,
                        },
                    ],
                    true,
                )],
            ),
            Message::text(Role::System, "The user is in a hurry."),
            Message::text(Role::User, "Thanks, now summarise."),
        ],
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: Some("Current weather for a city.".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                strict: Some(true),
                cache_control: None,
            },
            Tool {
                name: "get_time".into(),
                description: None,
                // No `type`: Anthropic requires one.
                parameters: json!({"properties": {"tz": {"type": "string"}}}),
                strict: None,
                cache_control: cache(),
            },
        ],
        tool_choice: Some(ToolChoice::Auto),
        parallel_tool_calls: Some(false),
        max_tokens: None,
        temperature: Some(0.7),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["\n".into(), "END".into()],
        seed: Some(7),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(0.1),
        n: Some(1),
        stream: true,
        include_usage: true,
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            ..Reasoning::default()
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather".into(),
            schema: json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}),
            strict: Some(true),
        }),
        user: Some("user-123".into()),
        extra: json!({"logit_bias": {"50256": -100}})
            .as_object()
            .unwrap()
            .clone(),
        extra_format: Some(Format::OpenAiChat),
    }
}

#[test]
fn openai_like_request_becomes_the_golden_anthropic_body() {
    let body = request_from_ir(&openai_like_request()).unwrap();
    assert_eq!(to_value(&body), json_fixture("request_from_openai_ir.json"));
}

fn minimal(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::text(Role::User, "hi")],
        ..ChatRequest::default()
    }
}

fn build(req: &ChatRequest) -> Value {
    to_value(&request_from_ir(req).unwrap())
}

#[test]
fn tool_choice_maps_every_variant_and_needs_tools() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.tool_choice = Some(ToolChoice::Required);
    // No tools: Anthropic rejects a tool_choice, so none is sent.
    assert!(build(&req).get("tool_choice").is_none());

    req.tools.push(Tool {
        name: "lookup".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: None,
        cache_control: None,
    });
    let cases = [
        (Some(ToolChoice::None), None, json!({"type": "none"})),
        (Some(ToolChoice::Auto), None, json!({"type": "auto"})),
        (Some(ToolChoice::Required), None, json!({"type": "any"})),
        (
            Some(ToolChoice::Named("lookup".into())),
            Some(false),
            json!({"type": "tool", "name": "lookup", "disable_parallel_tool_use": true}),
        ),
        (
            None,
            Some(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
    ];
    for (choice, parallel, expected) in cases {
        req.tool_choice = choice;
        req.parallel_tool_calls = parallel;
        assert_eq!(build(&req)["tool_choice"], expected);
    }
    req.tool_choice = None;
    req.parallel_tool_calls = Some(true);
    assert!(build(&req).get("tool_choice").is_none());
}

#[test]
fn max_tokens_defaults_per_model_and_is_capped_at_the_model_limit() {
    for (model, expected) in [
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-opus-4-1-20250805", 32_000),
        ("claude-sonnet-4-20250514", 64_000),
        ("claude-opus-4-6", 128_000),
        ("some-compatible-model", 8192),
    ] {
        assert_eq!(default_max_tokens(model), expected);
        assert_eq!(
            build(&minimal(model))["max_tokens"],
            json!(expected),
            "{model}"
        );
    }
    let mut req = minimal("claude-opus-4-20250514");
    req.max_tokens = Some(100_000);
    assert_eq!(build(&req)["max_tokens"], json!(32_000));
    req.max_tokens = Some(500);
    assert_eq!(build(&req)["max_tokens"], json!(500));
    // Unknown models are not capped: the vendor knows its limits.
    let mut req = minimal("glm-4.6");
    req.max_tokens = Some(100_000);
    assert_eq!(build(&req)["max_tokens"], json!(100_000));
}

#[test]
fn thinking_budget_raises_max_tokens_and_drops_incompatible_sampling() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.max_tokens = Some(1000);
    req.temperature = Some(0.2);
    req.top_k = Some(5);
    req.top_p = Some(0.98);
    req.reasoning = Some(Reasoning {
        budget_tokens: Some(4000),
        ..Reasoning::default()
    });
    let body = build(&req);
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4000})
    );
    // The caller's 1000 answer tokens on top of the budget.
    assert_eq!(body["max_tokens"], json!(5000));
    assert!(body.get("temperature").is_none());
    assert!(body.get("top_k").is_none());
    assert_eq!(body["top_p"], json!(0.98));

    // Budgets below Anthropic's minimum are raised to it.
    req.reasoning = Some(Reasoning {
        budget_tokens: Some(100),
        ..Reasoning::default()
    });
    req.max_tokens = None;
    assert_eq!(build(&req)["thinking"]["budget_tokens"], json!(1024));

    // A budget beyond the model's output limit shrinks to fit under it.
    let mut req = minimal("claude-opus-4-20250514");
    req.reasoning = Some(Reasoning {
        effort: Some("max".into()),
        ..Reasoning::default()
    });
    let body = build(&req);
    assert_eq!(body["max_tokens"], json!(32_000));
    assert_eq!(body["thinking"]["budget_tokens"], json!(24_000));

    // Without thinking the sampling parameters pass, temperature clamped.
    let mut req = minimal("claude-sonnet-4-20250514");
    req.temperature = Some(1.5);
    req.top_k = Some(5);
    let body = build(&req);
    assert_eq!(body["temperature"], json!(1.0));
    assert_eq!(body["top_k"], json!(5));
    assert!(body.get("thinking").is_none());
}

#[test]
fn thinking_follows_the_model_generation() {
    let with = |model: &str, reasoning: Reasoning| {
        let mut req = minimal(model);
        req.temperature = Some(0.5);
        req.reasoning = Some(reasoning);
        build(&req)
    };
    let effort = |e: &str| Reasoning {
        effort: Some(e.into()),
        ..Reasoning::default()
    };

    // Claude 4.6: adaptive plus effort, or a manual budget when given one.
    let body = with("claude-sonnet-4-6", effort("medium"));
    assert_eq!(body["thinking"], json!({"type": "adaptive"}));
    assert_eq!(body["output_config"], json!({"effort": "medium"}));
    let body = with(
        "claude-sonnet-4-6",
        Reasoning {
            budget_tokens: Some(2048),
            ..Reasoning::default()
        },
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );

    // Opus 4.7+: adaptive only, budgets become effort levels, no sampling.
    let body = with(
        "claude-opus-4-7",
        Reasoning {
            budget_tokens: Some(30_000),
            include_thoughts: Some(false),
            ..Reasoning::default()
        },
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "adaptive", "display": "omitted"})
    );
    assert_eq!(body["output_config"], json!({"effort": "high"}));
    assert!(body.get("temperature").is_none());

    // Opus 4.5 takes both a budget and an effort (clamped to high).
    let body = with("claude-opus-4-5-20251101", effort("xhigh"));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 32_768})
    );
    assert_eq!(body["output_config"], json!({"effort": "high"}));

    // Claude 3.5 cannot think: nothing is sent, sampling stays.
    let body = with("claude-3-5-sonnet-20241022", effort("high"));
    assert!(body.get("thinking").is_none());
    assert_eq!(body["temperature"], json!(0.5));

    // Explicitly off, or effort "none": no thinking.
    for off in [
        Reasoning {
            enabled: Some(false),
            budget_tokens: Some(5000),
            ..Reasoning::default()
        },
        effort("none"),
    ] {
        assert!(
            with("claude-sonnet-4-20250514", off)
                .get("thinking")
                .is_none()
        );
    }
}

#[test]
fn forced_tool_use_wins_over_thinking() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.tools.push(Tool {
        name: "lookup".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: None,
        cache_control: None,
    });
    req.tool_choice = Some(ToolChoice::Named("lookup".into()));
    req.reasoning = Some(Reasoning {
        effort: Some("high".into()),
        ..Reasoning::default()
    });
    let body = build(&req);
    assert!(body.get("thinking").is_none());
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "lookup"})
    );
}

#[test]
fn json_object_mode_becomes_a_system_instruction() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.response_format = Some(ResponseFormat::JsonObject);
    let body = build(&req);
    let system = body["system"].as_str().unwrap();
    assert!(system.contains("JSON object"), "{system}");
    assert!(body.get("output_config").is_none());
}

#[test]
fn final_assistant_prefill_loses_trailing_whitespace() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.messages
        .push(Message::text(Role::Assistant, "The answer is: \n"));
    let body = build(&req);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "The answer is:"}
        ])
    );
    // A prefill of only whitespace is dropped entirely.
    req.messages.pop();
    req.messages.push(Message::text(Role::Assistant, "  "));
    assert_eq!(build(&req)["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn what_anthropic_cannot_take_is_an_error() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.n = Some(2);
    assert!(matches!(
        request_from_ir(&req),
        Err(ConvertError::Unsupported(_))
    ));

    let mut req = minimal("claude-sonnet-4-20250514");
    req.messages.push(user(vec![Part::Audio {
        data: "UklGR".into(),
        format: "wav".into(),
    }]));
    assert!(matches!(
        request_from_ir(&req),
        Err(ConvertError::Unsupported(m)) if m.contains("audio")
    ));

    let mut req = minimal("claude-sonnet-4-20250514");
    req.messages.push(msg(
        Role::Assistant,
        vec![tool_call("call_1", "f", "{\"a\": tru")],
    ));
    let err = request_from_ir(&req).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Invalid { field, .. } if field == "messages[1].content[0]"),
        "{err:?}"
    );
}

#[test]
fn text_files_become_plain_text_documents_and_pdfs_stay_base64() {
    let mut req = minimal("claude-sonnet-4-20250514");
    req.messages.push(user(vec![
        Part::File {
            source: MediaSource::from_url("data:text/plain;base64,aGVsbG8gd29ybGQ="),
            filename: Some("notes.txt".into()),
            cache_control: None,
        },
        Part::File {
            source: MediaSource::from_url("data:application/pdf;base64,JVBERi0x"),
            filename: None,
            cache_control: cache(),
        },
    ]));
    let body = build(&req);
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "hi"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello world"}, "title": "notes.txt"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "cache_control": {"type": "ephemeral"}}
        ])
    );
}

// ---------------------------------------------------------------------------
// Requests: Anthropic -> IR (-> Anthropic)
// ---------------------------------------------------------------------------

#[test]
fn anthropic_request_round_trips_through_the_ir() {
    let original = fixture("request_roundtrip.json");
    let ir = request_to_ir(original.as_bytes()).unwrap();

    // What the IR holds, as other formats see it.
    assert_eq!(ir.system.len(), 2);
    assert_eq!(ir.max_tokens, Some(16_000));
    assert!(ir.stream && ir.include_usage);
    assert_eq!(ir.user.as_deref(), Some("u_42"));
    assert_eq!(ir.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(ir.parallel_tool_calls, Some(false));
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            effort: Some("high".into()),
            budget_tokens: Some(10_000),
            enabled: Some(true),
            include_thoughts: None,
        })
    );
    // Server tools are not IR tools; they wait in `extra` for Anthropic.
    let names: Vec<_> = ir.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["fetch_sales", "notify"]);
    assert_eq!(ir.extra["service_tier"], json!("auto"));
    let roles: Vec<_> = ir.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User,
            Role::Assistant,
            Role::User
        ]
    );
    assert_eq!(
        ir.messages[1].content[3],
        tool_call(
            "toolu_01Q1",
            "fetch_sales",
            r#"{"filters":{"region":["EU","US"]},"quarter":"Q1"}"#
        )
    );
    assert_eq!(
        ir.messages[2].content[1],
        Part::ToolResult {
            call_id: "toolu_01Q2".into(),
            name: Some("fetch_sales".into()),
            content: vec![Part::text("no data"), Part::text("for Q2")],
            is_error: true,
            cache_control: cache(),
        }
    );
    assert_eq!(ir.tool_name_for("toolu_01Q2"), Some("fetch_sales"));

    let back = request_from_ir(&ir).unwrap();
    assert_eq!(to_value(&back), json_fixture("request_roundtrip.json"));
}

#[test]
fn claude_code_request_parses_and_round_trips() {
    let original = fixture("claude_code_request.json");
    let ir = request_to_ir(original.as_bytes()).unwrap();
    assert_eq!(ir.model, "claude-sonnet-4-5-20250929");
    assert_eq!(ir.system.len(), 3);
    assert!(
        matches!(&ir.system[2], Part::Text { cache_control: Some(c), .. } if c["type"] == "ephemeral")
    );
    assert_eq!(ir.tools.len(), 8);
    assert_eq!(ir.tools[7].cache_control, cache());
    assert_eq!(
        ir.tools[1].parameters["$schema"],
        json!("http://json-schema.org/draft-07/schema#")
    );
    assert_eq!(
        ir.reasoning.as_ref().and_then(|r| r.budget_tokens),
        Some(31_999)
    );
    assert_eq!(ir.temperature, Some(1.0));
    assert!(ir.stream && ir.include_usage);
    assert!(
        ir.user
            .as_deref()
            .unwrap()
            .starts_with("user_2f6a9c0e_account_")
    );
    // The user turn with two results splits into a tool message and a user
    // message that keeps its cache marker.
    let last_two: Vec<_> = ir.messages[2..].iter().map(|m| m.role).collect();
    assert_eq!(last_two, [Role::Tool, Role::User]);
    assert_eq!(ir.messages[2].content.len(), 2);
    assert!(matches!(
        &ir.messages[3].content[0],
        Part::Text {
            cache_control: Some(_),
            ..
        }
    ));

    let back = request_from_ir(&ir).unwrap();
    let mut expected = json_fixture("claude_code_request.json");
    // The same number, written from the IR's f64.
    expected["temperature"] = json!(1.0);
    assert_eq!(to_value(&back), expected);
}

#[test]
fn system_role_messages_and_thinking_modes_parse() {
    let body = json!({
        "model": "claude-opus-4-7",
        "max_tokens": 2048,
        "system": "Be terse.",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": [{"type": "text", "text": "Switch to French."}]},
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}, "title": "t"},
                {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "part 1"}]}}
            ]}
        ],
        "thinking": {"type": "adaptive", "display": "summarized"},
        "output_config": {"effort": "xhigh", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        "tool_choice": {"type": "any"}
    });
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(ir.system, vec![Part::text("Be terse.")]);
    assert_eq!(
        ir.messages[1],
        Message::text(Role::System, "Switch to French.")
    );
    assert_eq!(
        ir.messages[2].content,
        vec![Part::text("doc text"), Part::text("part 1")]
    );
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            effort: Some("xhigh".into()),
            budget_tokens: None,
            enabled: Some(true),
            include_thoughts: Some(true),
        })
    );
    assert_eq!(ir.tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        ir.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: json!({"type": "object"}),
            strict: Some(true)
        })
    );

    let disabled =
        json!({"model": "m", "max_tokens": 1, "messages": [], "thinking": {"type": "disabled"}});
    let ir = request_to_ir(disabled.to_string().as_bytes()).unwrap();
    assert_eq!(ir.reasoning.and_then(|r| r.enabled), Some(false));
}

#[test]
fn count_tokens_bodies_parse_without_max_tokens() {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this image in detail please."},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ]}],
        "tools": [{"name": "f", "description": "does f", "input_schema": {"type": "object"}}]
    });
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(ir.max_tokens, None);
    let text_chars = "You are terse.".len()
        + "Describe this image in detail please.".len()
        + "f".len()
        + "does f".len()
        + r#"{"type":"object"}"#.len();
    // chars/4 rounded up, one image, one message and one tool overhead.
    let expected = (text_chars as u64).div_ceil(4) + 1600 + 4 + 4;
    assert_eq!(estimate_input_tokens(&ir), expected);
}

#[test]
fn content_without_an_ir_form_is_rejected_by_name() {
    for (block, what) in [
        (
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
            "server_tool_use",
        ),
        (
            json!({"type": "image", "source": {"type": "file", "file_id": "file_1"}}),
            "file",
        ),
        (
            json!({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}),
            "search_result",
        ),
    ] {
        let body = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [block]}]});
        match request_to_ir(body.to_string().as_bytes()) {
            Err(ConvertError::Unsupported(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let bad = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","name":"x"}]}]}"#;
    // The error names where the problem is.
    match request_to_ir(bad) {
        Err(ConvertError::Invalid { field, .. }) => {
            assert!(field.starts_with("messages[0]"), "{field}")
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

#[test]
fn response_parses_and_round_trips() {
    let raw = fixture("response_thinking_tools.json");
    let resp = response_to_ir(raw.as_bytes()).unwrap();
    assert_eq!(resp.id, "msg_01Aq9w938a90dw8q");
    assert_eq!(resp.model, "claude-sonnet-4-5-20250929");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.content,
        vec![
            Part::Reasoning {
                text: "Two cities, so two calls.".into(),
                signature: Some("WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve".into()),
            },
            Part::RedactedReasoning {
                data: "EmwKAhgBEgy3va3pzix/LafPsn4aGgxnpF".into()
            },
            Part::text("I'll look up both."),
            tool_call(
                "toolu_01A09q90qw90lq917835lq9",
                "get_weather",
                r#"{"city":"Paris","unit":"celsius"}"#
            ),
            tool_call(
                "toolu_01B7yYKs3Z4ZRn7mJt5WmHvX",
                "get_weather",
                r#"{"city":"Tokyo","unit":"celsius"}"#
            ),
        ]
    );
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 2095 + 2051 + 3000,
            output_tokens: 503,
            cache_read_tokens: 3000,
            cache_write_tokens: 2051,
            reasoning_tokens: 120,
        }
    );
    let back = response_from_ir(&resp);
    assert_eq!(
        to_value(&back),
        json_fixture("response_thinking_tools.json")
    );
}

#[test]
fn stop_reasons_map_to_finish_reasons_and_back() {
    for (stop, finish, back) in [
        ("end_turn", FinishReason::Stop, "end_turn"),
        ("stop_sequence", FinishReason::Stop, "stop_sequence"),
        ("pause_turn", FinishReason::Stop, "end_turn"),
        ("max_tokens", FinishReason::Length, "max_tokens"),
        (
            "model_context_window_exceeded",
            FinishReason::Length,
            "max_tokens",
        ),
        ("tool_use", FinishReason::ToolCalls, "tool_use"),
        ("refusal", FinishReason::ContentFilter, "refusal"),
    ] {
        let sequence = (stop == "stop_sequence").then_some("###");
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "x"}],
            "stop_reason": stop, "stop_sequence": sequence,
            "usage": {"input_tokens": 1, "output_tokens": 1}
        });
        let resp = response_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(resp.finish_reason, finish, "{stop}");
        assert_eq!(resp.stop_sequence.as_deref(), sequence);
        let out = to_value(&response_from_ir(&resp));
        assert_eq!(out["stop_reason"], json!(back), "{stop}");
    }
}

#[test]
fn response_from_an_openai_upstream_gets_anthropic_ids_and_usage() {
    let resp = ChatResponse {
        id: "chatcmpl-abc".into(),
        model: "gpt-4.1".into(),
        created: 1_741_569_952,
        content: vec![
            Part::Reasoning {
                text: "thought".into(),
                signature: None,
            },
            Part::text("Hello"),
            tool_call("call_1", "f", ""),
        ],
        // Gemini-style "stop" with a function call is a tool_use turn.
        finish_reason: FinishReason::Stop,
        stop_sequence: None,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        },
        refusal: None,
    };
    let out = to_value(&response_from_ir(&resp));
    assert_eq!(
        out,
        json!({
            "id": "msg_chatcmpl-abc",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4.1",
            "content": [
                {"type": "thinking", "thinking": "thought", "signature": ""},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 20}
        })
    );

    let refused = ChatResponse {
        refusal: Some("I can't help with that.".into()),
        ..ChatResponse::default()
    };
    let out = to_value(&response_from_ir(&refused));
    assert_eq!(out["stop_reason"], json!("refusal"));
    assert_eq!(out["content"][0]["text"], json!("I can't help with that."));
    let id = out["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() > 10, "{id}");
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// Decodes `bytes` fed in the given chunks.
fn decode_chunks(chunks: &[&[u8]]) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new(1 << 20);
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        sse.push(chunk).unwrap();
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

/// Decodes whole, then split at every byte boundary, then byte by byte, and
/// checks every way gives the same events.
fn decode_everywhere(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = decode_chunks(&[bytes]);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(decode_chunks(&[a, b]), whole, "split at byte {at}");
    }
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_chunks(&bytewise), whole, "byte by byte");
    whole
}

#[test]
fn recorded_stream_decodes_identically_at_every_split() {
    let events = decode_everywhere(fixture("stream_thinking_tools.sse").as_bytes());
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "msg_01XFDUDYJgAACzvnptvVoYEL".into(),
                model: "claude-sonnet-4-5-20250929".into(),
                created: 0,
            },
            StreamEvent::ReasoningDelta("The user wants the weather in two cities.".into()),
            StreamEvent::ReasoningDelta(" I'll call the tool for each.".into()),
            StreamEvent::ReasoningSignature(
                "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+p4LqY=".into()
            ),
            StreamEvent::TextDelta("Checking both cities".into()),
            StreamEvent::TextDelta(" now: é😀\n".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_01A09q90qw90lq917835lq9".into(),
                name: "get_weather".into(),
                signature: None,
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\": \"Par".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "is\"}".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "toolu_01B7yYKs3Z4ZRn7mJt5WmHvX".into(),
                name: "get_weather".into(),
                signature: None,
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"city\": \"Tokyo\"}".into(),
            },
            StreamEvent::Usage(Usage {
                input_tokens: 472 + 1024 + 2048,
                output_tokens: 189,
                cache_read_tokens: 2048,
                cache_write_tokens: 1024,
                reasoning_tokens: 0,
            }),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ]
    );
}

#[test]
fn truncated_stream_still_finishes_and_errors_end_it() {
    let cut = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    );
    let events = decode_everywhere(cut.as_bytes());
    assert_eq!(
        &events[1..],
        &[
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 10,
                output_tokens: 1,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ]
    );

    let overloaded = format!(
        "{cut}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n"
    );
    let events = decode_everywhere(overloaded.as_bytes());
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Error(ApiError {
            status: 529,
            kind: ErrorKind::Overloaded,
            message: "Overloaded".into(),
        }))
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn stop_sequence_and_unknown_events_decode() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\":\\\"x\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: some_future_event\n",
        "data: {\"type\":\"some_future_event\"}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"type\":\"char_location\"}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"1, 2, 3\"}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"4\"},\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":0,\"output_tokens\":9,\"output_tokens_details\":{\"thinking_tokens\":0}}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    let events = decode_everywhere(stream.as_bytes());
    assert_eq!(
        &events[1..],
        &[
            StreamEvent::TextDelta("1, 2, 3".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 9,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: Some("4".into())
            },
        ]
    );
}

/// An OpenAI upstream's events: usage arrives after the finish reason.
fn openai_order_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT".into(),
            model: "gpt-4.1-2025-04-14".into(),
            created: 1_741_569_952,
        },
        StreamEvent::ReasoningDelta("Plan: ".into()),
        StreamEvent::ReasoningDelta("check the weather.".into()),
        StreamEvent::ReasoningSignature("c2lnbmF0dXJl".into()),
        StreamEvent::TextDelta("Looking up".into()),
        StreamEvent::TextDelta(String::new()),
        StreamEvent::TextDelta(" both \"cities\".\n".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
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
            id: "call_b".into(),
            name: "get_time".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{\"tz\":\"Asia/Tokyo\"}".into(),
        },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 120,
            output_tokens: 45,
            cache_read_tokens: 100,
            cache_write_tokens: 0,
            reasoning_tokens: 12,
        }),
    ]
}

fn encode(events: &[StreamEvent]) -> String {
    let mut enc = StreamEncoder::new();
    let mut out = Vec::new();
    for ev in events {
        enc.push(ev, &mut out);
    }
    enc.finish(&mut out);
    // Nothing more once finished.
    enc.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn encoder_writes_the_exact_anthropic_event_sequence() {
    let sse = encode(&openai_order_events());
    assert_eq!(sse, fixture("encoder_expected.sse"));
}

#[test]
fn encoder_output_decodes_back_to_the_same_events() {
    let sse = encode(&openai_order_events());
    let decoded = decode_everywhere(sse.as_bytes());
    let mut expected = openai_order_events();
    expected[0] = StreamEvent::Start {
        id: "msg_chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT".into(),
        model: "gpt-4.1-2025-04-14".into(),
        created: 0,
    };
    expected.retain(|e| *e != StreamEvent::TextDelta(String::new()));
    // Anthropic reports usage with the stop reason, before it.
    let usage = expected.pop().unwrap();
    let finish = expected.pop().unwrap();
    expected.push(usage);
    expected.push(finish);
    assert_eq!(decoded, expected);
}

#[test]
fn encoder_handles_redacted_thinking_refusals_and_errors() {
    let sse = encode(&[
        StreamEvent::Start {
            id: "msg_9".into(),
            model: "claude-x".into(),
            created: 0,
        },
        StreamEvent::RedactedReasoning("opaque".into()),
        StreamEvent::RefusalDelta("No.".into()),
        StreamEvent::Finish {
            reason: FinishReason::ContentFilter,
            stop_sequence: None,
        },
    ]);
    let frames: Vec<&str> = sse.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(
        frames[2],
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"opaque\"}}"
    );
    assert_eq!(
        frames[3],
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}"
    );
    assert!(frames[5].contains("\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"No.\"}"));
    assert!(frames[7].contains("\"stop_reason\":\"refusal\""));
    assert_eq!(
        frames[8],
        "event: message_stop\ndata: {\"type\":\"message_stop\"}"
    );

    let sse = encode(&[
        StreamEvent::Start {
            id: String::new(),
            model: "claude-x".into(),
            created: 0,
        },
        StreamEvent::TextDelta("partial".into()),
        StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "slow down".into(),
        }),
        StreamEvent::TextDelta("ignored".into()),
    ]);
    assert!(sse.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n"
    ));
    assert!(!sse.contains("ignored") && !sse.contains("message_stop"));
    // A generated id when the upstream gave none.
    assert!(sse.contains("\"id\":\"msg_01"));
}

#[test]
fn encoder_without_finish_or_start_still_closes_the_message() {
    let sse = encode(&[StreamEvent::TextDelta("hi".into())]);
    let names: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(sse.contains("\"stop_reason\":\"end_turn\""));
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn error_bodies_use_anthropics_types() {
    for (status, expected) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        let err = ApiError {
            status,
            kind: ErrorKind::from_status(status),
            message: "boom".into(),
        };
        let body = error_body(&err);
        assert_eq!(
            to_value(&body),
            json!({"type": "error", "error": {"type": expected, "message": "boom"}})
        );
        // And back.
        let parsed = parse_error(status, &body);
        assert_eq!(parsed, err, "{status}");
    }
}

#[test]
fn upstream_errors_parse_in_every_shape() {
    let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
    assert_eq!(
        parse_error(529, anthropic),
        ApiError {
            status: 529,
            kind: ErrorKind::Overloaded,
            message: "Overloaded".into()
        }
    );
    // The body's type wins over the status.
    let e = parse_error(
        400,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"x"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::RateLimit);
    // Compatible vendors answering in OpenAI's shape.
    let e = parse_error(
        401,
        br#"{"error":{"message":"Invalid API key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    );
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidRequest, "Invalid API key")
    );
    let e = parse_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Api, "<html>Bad Gateway</html>")
    );
    let e = parse_error(503, b"");
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert!(e.message.contains("503"));
    let long = "é".repeat(600);
    assert!(parse_error(500, long.as_bytes()).message.len() <= 512);
}
