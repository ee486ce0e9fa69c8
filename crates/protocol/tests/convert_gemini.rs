#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::convert::gemini::{
    self, Method, StreamDecoder, StreamEncoder, count_tokens_body, encode_json_array_stream,
    error_body, estimate_input_tokens, model_from_path, parse_error, request_from_ir, request_path,
    request_to_ir, response_from_ir, response_to_ir,
};
use protocol::convert::{ConvertError, DecodeStream, EncodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn text(t: &str) -> Part {
    Part::text(t)
}

fn call(id: &str, name: &str, args: &str, sig: Option<&str>) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
        signature: sig.map(Into::into),
    }
}

fn result(call_id: &str, name: Option<&str>, body: &str, is_error: bool) -> Part {
    Part::ToolResult {
        call_id: call_id.into(),
        name: name.map(Into::into),
        content: vec![text(body)],
        is_error,
        cache_control: None,
    }
}

fn reasoning(t: &str, sig: Option<&str>) -> Part {
    Part::Reasoning {
        text: t.into(),
        signature: sig.map(Into::into),
    }
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

/// Decodes an SSE byte stream fed in the given pieces.
fn decode(pieces: &[&[u8]]) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new(1 << 20);
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for piece in pieces {
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

/// Whole, then split at every byte boundary: the events must not change.
fn decode_all_splits(input: &[u8]) -> Vec<StreamEvent> {
    let whole = decode(&[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(decode(&[a, b]), whole, "split at byte {at}");
    }
    whole
}

fn encode(mut enc: StreamEncoder, events: &[StreamEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        enc.push(ev, &mut out);
    }
    enc.finish(&mut out);
    out
}

// ---------------------------------------------------------------------------
// Requests: IR -> Gemini
// ---------------------------------------------------------------------------

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": false
        }),
        strict: Some(true),
        cache_control: None,
    }
}

fn rich_ir(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: vec![text("You are a weather bot."), text("Answer briefly.")],
        messages: vec![
            msg(
                Role::User,
                vec![
                    text("What's the weather in Paris and Tokyo?"),
                    Part::Image {
                        source: MediaSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                        detail: Some("high".into()),
                        cache_control: None,
                    },
                    Part::Image {
                        source: MediaSource::from_url(
                            "https://example.com/photos/cat.webp?size=large",
                        ),
                        detail: None,
                        cache_control: None,
                    },
                ],
            ),
            // Consecutive user messages merge into one turn.
            msg(
                Role::User,
                vec![Part::Audio {
                    data: "UklGRg==".into(),
                    format: "wav".into(),
                }],
            ),
            msg(
                Role::Assistant,
                vec![
                    reasoning("I should call the tool twice.", None),
                    call(
                        "call_a",
                        "get_weather",
                        r#"{"city":"Paris"}"#,
                        Some("c2lnLXBhcmlz"),
                    ),
                    call("call_b", "get_weather", r#"{"city":"Tokyo"}"#, None),
                ],
            ),
            // Names are missing (OpenAI tool messages): recovered by id.
            msg(
                Role::Tool,
                vec![result("call_a", None, r#"{"temp_c":18}"#, false)],
            ),
            msg(
                Role::Tool,
                vec![result("call_b", None, "service unavailable", true)],
            ),
            msg(Role::User, vec![text("And in Berlin?")]),
            msg(
                Role::Assistant,
                vec![
                    reasoning("", Some("c2lnLXRleHQ=")),
                    text("Berlin is 12°C and sunny."),
                ],
            ),
            msg(Role::System, vec![text("Use Celsius.")]),
            msg(
                Role::User,
                vec![
                    text("Thanks! Any rain tomorrow?"),
                    Part::File {
                        source: MediaSource::from_url("https://example.com/forecast.pdf"),
                        filename: Some("forecast.pdf".into()),
                        cache_control: None,
                    },
                ],
            ),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Named("get_weather".into())),
        parallel_tool_calls: Some(true),
        max_tokens: Some(1024),
        temperature: Some(0.7),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        n: Some(1),
        reasoning: Some(Reasoning {
            budget_tokens: Some(2048),
            include_thoughts: Some(true),
            ..Reasoning::default()
        }),
        user: Some("user-1".into()),
        ..ChatRequest::default()
    }
}

#[test]
fn request_from_ir_matches_golden_fixture() {
    let body = request_from_ir(&rich_ir("gemini-2.5-flash")).unwrap();
    assert_eq!(as_json(&body), fixture_json("request_from_ir.json"));
}

#[test]
fn request_never_sends_call_ids_upstream() {
    let body = String::from_utf8(request_from_ir(&rich_ir("gemini-2.5-flash")).unwrap()).unwrap();
    assert!(!body.contains("call_a") && !body.contains("call_b"));
    assert!(!body.contains("\"id\""));
}

#[test]
fn gemini3_gets_thinking_level_and_placeholder_signatures() {
    let mut ir = rich_ir("gemini-3-pro-preview");
    // History written by another model: no signatures anywhere.
    for m in &mut ir.messages {
        for p in &mut m.content {
            if let Part::ToolCall { signature, .. } = p {
                *signature = None;
            }
        }
    }
    ir.reasoning = Some(Reasoning {
        effort: Some("high".into()),
        ..Reasoning::default()
    });
    ir.response_format = Some(ResponseFormat::JsonSchema {
        name: "weather".into(),
        schema: json!({"$schema": "x", "type": "object", "properties": {"t": {"type": "number"}}}),
        strict: Some(true),
    });
    let body = as_json(&request_from_ir(&ir).unwrap());
    let calls = &body["contents"][1]["parts"];
    assert_eq!(
        calls[0]["thoughtSignature"],
        json!(gemini::SKIP_SIGNATURE),
        "first call of the turn gets the placeholder"
    );
    assert!(calls[1].get("thoughtSignature").is_none());
    let config = &body["generationConfig"];
    // Asking for reasoning shows it, as the other upstreams do.
    assert_eq!(
        config["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingLevel": "HIGH"})
    );
    assert_eq!(config["responseMimeType"], json!("application/json"));
    assert_eq!(
        config["responseJsonSchema"],
        json!({"type": "object", "properties": {"t": {"type": "number"}}})
    );

    // A real signature is never replaced.
    let body = as_json(&request_from_ir(&rich_ir("gemini-3-pro-preview")).unwrap());
    assert_eq!(
        body["contents"][1]["parts"][0]["thoughtSignature"],
        json!("c2lnLXBhcmlz")
    );
    // Gemini 2.5 never gets the placeholder.
    let mut ir = rich_ir("gemini-2.5-pro");
    if let Part::ToolCall { signature, .. } = &mut ir.messages[2].content[1] {
        *signature = None;
    }
    let body = String::from_utf8(request_from_ir(&ir).unwrap()).unwrap();
    assert!(!body.contains(gemini::SKIP_SIGNATURE));
}

fn thinking_for(model: &str, reasoning: Reasoning) -> Value {
    let ir = ChatRequest {
        model: model.into(),
        messages: vec![msg(Role::User, vec![text("hi")])],
        reasoning: Some(reasoning),
        ..ChatRequest::default()
    };
    let body = as_json(&request_from_ir(&ir).unwrap());
    body["generationConfig"]["thinkingConfig"].clone()
}

#[test]
fn reasoning_maps_per_model_family() {
    let effort = |e: &str| Reasoning {
        effort: Some(e.into()),
        ..Reasoning::default()
    };
    assert_eq!(
        thinking_for("gemini-2.5-flash", effort("low")),
        json!({"includeThoughts": true, "thinkingBudget": 1024})
    );
    assert_eq!(
        thinking_for("gemini-2.5-flash", effort("high")),
        json!({"includeThoughts": true, "thinkingBudget": 24576})
    );
    assert_eq!(
        thinking_for("gemini-3-flash-preview", effort("minimal")),
        json!({"includeThoughts": true, "thinkingLevel": "MINIMAL"})
    );
    assert_eq!(
        thinking_for("gemini-3.5-flash", effort("medium")),
        json!({"includeThoughts": true, "thinkingLevel": "MEDIUM"})
    );
    let off = Reasoning {
        enabled: Some(false),
        ..Reasoning::default()
    };
    assert_eq!(
        thinking_for("gemini-2.5-flash", off.clone()),
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        thinking_for("gemini-3-pro-preview", off),
        json!({"thinkingLevel": "LOW"})
    );
    // An explicit budget wins over effort, on every family.
    let budget = Reasoning {
        budget_tokens: Some(333),
        effort: Some("high".into()),
        include_thoughts: Some(false),
        ..Reasoning::default()
    };
    assert_eq!(
        thinking_for("gemini-3-pro-preview", budget),
        json!({"includeThoughts": false, "thinkingBudget": 333})
    );

    let ir = ChatRequest {
        model: "gemini-2.5-flash".into(),
        reasoning: Some(effort("extreme")),
        ..ChatRequest::default()
    };
    assert!(matches!(
        request_from_ir(&ir),
        Err(ConvertError::Invalid { field, .. }) if field == "reasoning_effort"
    ));
}

#[test]
fn tool_choice_modes() {
    let with_choice = |choice: ToolChoice| {
        let ir = ChatRequest {
            messages: vec![msg(Role::User, vec![text("hi")])],
            tools: vec![weather_tool()],
            tool_choice: Some(choice),
            ..ChatRequest::default()
        };
        as_json(&request_from_ir(&ir).unwrap())["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(with_choice(ToolChoice::None), json!({"mode": "NONE"}));
    assert_eq!(with_choice(ToolChoice::Auto), json!({"mode": "AUTO"}));
    assert_eq!(with_choice(ToolChoice::Required), json!({"mode": "ANY"}));
    assert_eq!(
        with_choice(ToolChoice::Named("get_weather".into())),
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
}

#[test]
fn json_object_format_and_plain_tool_results() {
    let ir = ChatRequest {
        messages: vec![
            msg(Role::User, vec![text("list")]),
            msg(Role::Assistant, vec![call("c1", "ls", "", None)]),
            msg(Role::Tool, vec![result("c1", Some("ls"), "[1,2]", false)]),
        ],
        response_format: Some(ResponseFormat::JsonObject),
        ..ChatRequest::default()
    };
    let body = as_json(&request_from_ir(&ir).unwrap());
    assert_eq!(
        body["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    // Empty arguments are `{}`; a non-object result is wrapped.
    assert_eq!(
        body["contents"][1]["parts"][0]["functionCall"],
        json!({"name": "ls", "args": {}})
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "ls", "response": {"result": "[1,2]"}})
    );
}

#[test]
fn tool_result_with_image_follows_the_response() {
    let ir = ChatRequest {
        messages: vec![
            msg(Role::Assistant, vec![call("c1", "shot", "{}", None)]),
            msg(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "c1".into(),
                    name: None,
                    content: vec![
                        text("a screenshot"),
                        Part::Image {
                            source: MediaSource::from_url("data:image/jpeg;base64,/9j/"),
                            detail: None,
                            cache_control: None,
                        },
                    ],
                    is_error: false,
                    cache_control: None,
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = as_json(&request_from_ir(&ir).unwrap());
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"functionResponse": {"name": "shot", "response": {"result": "a screenshot"}}},
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}
        ])
    );
}

#[test]
fn repeated_call_ids_resolve_to_the_nearest_call() {
    // Ids synthesized per response repeat across turns (`call_0` twice).
    let ir = ChatRequest {
        messages: vec![
            msg(Role::User, vec![text("go")]),
            msg(Role::Assistant, vec![call("call_0", "first", "{}", None)]),
            msg(Role::Tool, vec![result("call_0", None, "1", false)]),
            msg(Role::Assistant, vec![call("call_0", "second", "{}", None)]),
            msg(Role::Tool, vec![result("call_0", None, "2", false)]),
        ],
        ..ChatRequest::default()
    };
    let body = as_json(&request_from_ir(&ir).unwrap());
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["name"],
        "first"
    );
    assert_eq!(
        body["contents"][4]["parts"][0]["functionResponse"]["name"],
        "second"
    );
}

#[test]
fn unknown_call_id_and_bad_arguments_are_errors() {
    let ir = ChatRequest {
        messages: vec![msg(Role::Tool, vec![result("call_zz", None, "x", false)])],
        ..ChatRequest::default()
    };
    let err = request_from_ir(&ir).unwrap_err();
    assert!(err.to_string().contains("call_zz"), "{err}");

    let ir = ChatRequest {
        messages: vec![msg(Role::Assistant, vec![call("c", "f", "[1]", None)])],
        ..ChatRequest::default()
    };
    let err = request_from_ir(&ir).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
}

// ---------------------------------------------------------------------------
// Requests: Gemini -> IR
// ---------------------------------------------------------------------------

#[test]
fn ingress_request_to_ir() {
    let ir = request_to_ir(&fixture("request_ingress.json")).unwrap();
    assert_eq!(ir.model, "");
    assert!(ir.include_usage && !ir.stream);
    assert_eq!(ir.system, vec![text("You are a travel agent.")]);
    let expected = vec![
        msg(
            Role::User,
            vec![
                text("Find flights and hotels in Rome."),
                Part::Image {
                    source: MediaSource::Base64 {
                        media_type: "image/jpeg".into(),
                        data: "/9j/4AAQ".into(),
                    },
                    detail: None,
                    cache_control: None,
                },
            ],
        ),
        msg(
            Role::Assistant,
            vec![
                reasoning("Planning the search.", None),
                call(
                    "call_0",
                    "search_flights",
                    r#"{"to":"FCO"}"#,
                    Some("c2lnLWZsaWdodHM="),
                ),
                call("call_1", "search_hotels", r#"{"city":"Rome"}"#, None),
                call("call_2", "search_flights", r#"{"to":"CIA"}"#, None),
            ],
        ),
        // Responses come back in another order: matched by name, in order.
        msg(
            Role::Tool,
            vec![
                result("call_1", Some("search_hotels"), "3 hotels", false),
                result("call_0", Some("search_flights"), "2 flights", false),
                result("call_2", Some("search_flights"), r#"{"flights":[]}"#, false),
            ],
        ),
        msg(
            Role::Assistant,
            vec![
                reasoning("", Some("c2lnLWFuc3dlcg==")),
                text("Here is what I found."),
            ],
        ),
        msg(
            Role::User,
            vec![
                text("Book the cheapest."),
                Part::File {
                    source: MediaSource::Url {
                        url: "https://generativelanguage.googleapis.com/v1beta/files/abc123".into(),
                    },
                    filename: None,
                    cache_control: None,
                },
            ],
        ),
        msg(
            Role::Assistant,
            vec![call("fc-7", "book", "{}", Some("c2lnLWJvb2s="))],
        ),
        msg(
            Role::Tool,
            vec![result("fc-7", Some("book"), "sold out", true)],
        ),
    ];
    assert_eq!(ir.messages, expected);

    assert_eq!(ir.tools.len(), 3);
    assert_eq!(
        ir.tools[0].parameters,
        json!({
            "type": "object",
            "properties": {
                "to": {"type": "string", "description": "IATA code"},
                "max_price": {"type": ["number", "null"]}
            },
            "required": ["to"]
        })
    );
    assert_eq!(ir.tools[1].parameters["additionalProperties"], json!(false));
    assert_eq!(ir.tools[2].parameters, json!({"type": "object"}));
    // Two allowed names cannot be expressed outside Gemini.
    assert_eq!(ir.tool_choice, Some(ToolChoice::Required));
    assert_eq!(ir.temperature, Some(1.0));
    assert_eq!(ir.top_k, Some(64));
    assert_eq!(ir.max_tokens, Some(8192));
    assert_eq!(ir.stop, vec!["STOP!".to_owned()]);
    assert_eq!(
        ir.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: json!({"type": "object", "properties": {"answer": {"type": "string"}}}),
            strict: None,
        })
    );
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            effort: Some("high".into()),
            include_thoughts: Some(true),
            ..Reasoning::default()
        })
    );
    assert_eq!(ir.extra_format, Some(Format::Gemini));
    assert_eq!(ir.extra["tools"], json!([{"googleSearch": {}}]));
    assert_eq!(ir.extra["cachedContent"], json!("cachedContents/xyz"));
    assert_eq!(
        ir.extra["generationConfig"],
        json!({"mediaResolution": "MEDIA_RESOLUTION_LOW"})
    );
    assert_eq!(
        ir.extra["safetySettings"],
        json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}])
    );
}

#[test]
fn ingress_request_reencodes_to_gemini_with_signatures_and_extras() {
    let mut ir = request_to_ir(&fixture("request_ingress.json")).unwrap();
    ir.model = "gemini-3-pro-preview".into();
    let body = as_json(&request_from_ir(&ir).unwrap());
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 7);
    // Thought text is dropped; call signatures stay on their calls.
    assert_eq!(
        contents[1]["parts"],
        json!([
            {"functionCall": {"name": "search_flights", "args": {"to": "FCO"}}, "thoughtSignature": "c2lnLWZsaWdodHM="},
            {"functionCall": {"name": "search_hotels", "args": {"city": "Rome"}}},
            {"functionCall": {"name": "search_flights", "args": {"to": "CIA"}}}
        ])
    );
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "search_hotels", "response": {"result": "3 hotels"}}})
    );
    assert_eq!(
        contents[3]["parts"],
        json!([{"text": "Here is what I found.", "thoughtSignature": "c2lnLWFuc3dlcg=="}])
    );
    assert_eq!(
        contents[5]["parts"],
        json!([{"functionCall": {"name": "book", "args": {}}, "thoughtSignature": "c2lnLWJvb2s="}])
    );
    assert_eq!(
        contents[6]["parts"],
        json!([{"functionResponse": {"name": "book", "response": {"error": "sold out"}}}])
    );
    // Gemini-only settings come back.
    assert_eq!(body["tools"].as_array().unwrap().len(), 2);
    assert_eq!(body["tools"][1], json!({"googleSearch": {}}));
    assert_eq!(body["cachedContent"], json!("cachedContents/xyz"));
    assert_eq!(
        body["safetySettings"][0]["threshold"],
        json!("BLOCK_ONLY_HIGH")
    );
    assert_eq!(
        body["generationConfig"]["mediaResolution"],
        json!("MEDIA_RESOLUTION_LOW")
    );
    assert_eq!(
        body["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingLevel": "HIGH"})
    );

    // The same IR bound for another format keeps Gemini extras to itself.
    ir.extra_format = Some(Format::OpenAiChat);
    let body = as_json(&request_from_ir(&ir).unwrap());
    assert!(body.get("safetySettings").is_none());
}

#[test]
fn function_response_without_a_call_is_an_error() {
    let body = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "ghost", "response": {}}}]}
        ]
    });
    let err = request_to_ir(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ConvertError::invalid(
            "contents[1].parts[0].functionResponse",
            "no earlier functionCall named \"ghost\" is waiting for a response"
        )
    );
}

#[test]
fn snake_case_request_and_tool_choice_variants() {
    let body = json!({
        "model": "models/gemini-2.5-flash",
        "contents": [{"parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
        "tool_config": {"function_calling_config": {"mode": "any", "allowed_function_names": ["f"]}},
        "generation_config": {
            "max_output_tokens": 5,
            "top_p": 0.5,
            "seed": "42",
            "response_mime_type": "application/json",
            "thinking_config": {"thinking_budget": 0, "include_thoughts": false}
        }
    });
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(ir.model, "gemini-2.5-flash");
    assert_eq!(ir.system, vec![text("sys")]);
    assert_eq!(ir.messages, vec![msg(Role::User, vec![text("hi")])]);
    assert_eq!(ir.tools[0].name, "f");
    assert_eq!(ir.tool_choice, Some(ToolChoice::Named("f".into())));
    assert_eq!(ir.max_tokens, Some(5));
    assert_eq!(ir.top_p, Some(0.5));
    assert_eq!(ir.seed, Some(42));
    assert_eq!(ir.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            enabled: Some(false),
            include_thoughts: Some(false),
            ..Reasoning::default()
        })
    );

    for (mode, want) in [
        ("NONE", Some(ToolChoice::None)),
        ("AUTO", Some(ToolChoice::Auto)),
        ("VALIDATED", Some(ToolChoice::Auto)),
        ("ANY", Some(ToolChoice::Required)),
        ("MODE_UNSPECIFIED", None),
    ] {
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": mode}}
        });
        let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(ir.tool_choice, want, "{mode}");
    }

    let bad_role = json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]});
    assert!(matches!(
        request_to_ir(bad_role.to_string().as_bytes()),
        Err(ConvertError::Invalid { field, .. }) if field == "contents[0].role"
    ));
    assert!(matches!(request_to_ir(b"{"), Err(ConvertError::Json(_))));
}

#[test]
fn count_tokens_bodies() {
    let plain = json!({"contents": [{"role": "user", "parts": [{"text": "abcdefgh"}]}]});
    let ir = gemini::count_tokens_request_to_ir(plain.to_string().as_bytes()).unwrap();
    assert_eq!(estimate_input_tokens(&ir), 2);
    let wrapped = json!({"generateContentRequest": {
        "contents": [{"role": "user", "parts": [
            {"text": "abcde"},
            {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
        ]}],
        "systemInstruction": {"parts": [{"text": "xyz"}]}
    }});
    let ir = gemini::count_tokens_request_to_ir(wrapped.to_string().as_bytes()).unwrap();
    // 8 characters -> 2 tokens, plus one image at 258.
    assert_eq!(estimate_input_tokens(&ir), 2 + 258);
    assert_eq!(
        as_json(&count_tokens_body(260)),
        json!({"totalTokens": 260})
    );
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

#[test]
fn response_with_thoughts_text_and_two_calls() {
    let resp = response_to_ir(&fixture("response_thought_tools.json")).unwrap();
    assert_eq!(resp.id, "mT8Zab2cKqa1");
    assert_eq!(resp.model, "gemini-2.5-pro");
    assert_eq!(
        resp.content,
        vec![
            reasoning("The user wants two cities; call the tool for each.", None),
            reasoning("", Some("c2lnLXRleHQ=")),
            text("Let me check both cities."),
            call(
                "call_794647640768_0",
                "get_weather",
                r#"{"city":"Paris"}"#,
                Some("c2lnLWZjMQ==")
            ),
            call(
                "call_794647640768_1",
                "get_weather",
                r#"{"city":"Tokyo","unit":"celsius"}"#,
                None
            ),
        ]
    );
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 70,
            cache_read_tokens: 64,
            cache_write_tokens: 0,
            reasoning_tokens: 30,
        }
    );
}

#[test]
fn response_round_trip_preserves_signatures_and_layout() {
    let original = fixture_json("response_thought_tools.json");
    let ir = response_to_ir(&fixture("response_thought_tools.json")).unwrap();
    let back = as_json(&response_from_ir(&ir));
    // What the IR adds (ids it synthesized) and cannot carry (per-modality
    // details) aside, the response comes back as Gemini sent it.
    let mut expected = original.clone();
    // Synthesized ids are unique per response (derived from responseId), so a conversation
    // never repeats one across turns.
    expected["candidates"][0]["content"]["parts"][2]["functionCall"]["id"] =
        json!("call_794647640768_0");
    expected["candidates"][0]["content"]["parts"][3]["functionCall"]["id"] =
        json!("call_794647640768_1");
    expected["usageMetadata"]
        .as_object_mut()
        .unwrap()
        .remove("promptTokensDetails");
    assert_eq!(back, expected);
    // And the second trip is exact.
    let again = response_from_ir(&response_to_ir(&serde_json::to_vec(&back).unwrap()).unwrap());
    assert_eq!(as_json(&again), back);
}

#[test]
fn finish_reasons_and_blocked_prompts() {
    let resp = response_to_ir(&fixture("response_safety.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ContentFilter);
    assert!(resp.content.is_empty());
    assert_eq!(resp.usage.input_tokens, 14);

    let resp = response_to_ir(&fixture("response_prompt_blocked.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ContentFilter);
    assert!(resp.content.is_empty());
    assert_eq!(resp.id, "blk-2");

    let with_reason = |reason: &str| {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]});
        response_to_ir(body.to_string().as_bytes())
            .unwrap()
            .finish_reason
    };
    assert_eq!(with_reason("STOP"), FinishReason::Stop);
    assert_eq!(with_reason("MAX_TOKENS"), FinishReason::Length);
    for r in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ] {
        assert_eq!(with_reason(r), FinishReason::ContentFilter, "{r}");
    }
    for r in [
        "OTHER",
        "LANGUAGE",
        "MALFORMED_FUNCTION_CALL",
        "SOMETHING_NEW",
    ] {
        assert_eq!(with_reason(r), FinishReason::Stop, "{r}");
    }

    // Tool-use prompt tokens count as input.
    let body = json!({"candidates": [], "usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 5, "candidatesTokenCount": 2}});
    let resp = response_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!((resp.usage.input_tokens, resp.usage.output_tokens), (15, 2));
}

#[test]
fn response_from_ir_shapes() {
    let resp = ChatResponse {
        id: "r1".into(),
        model: "gpt-4o".into(),
        content: vec![text("partial")],
        finish_reason: FinishReason::Length,
        usage: Usage {
            input_tokens: 5,
            output_tokens: 3,
            ..Usage::default()
        },
        refusal: Some("I can't help with that.".into()),
        ..ChatResponse::default()
    };
    assert_eq!(
        as_json(&response_from_ir(&resp)),
        json!({
            "candidates": [{
                "content": {"parts": [{"text": "partial"}, {"text": "I can't help with that."}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
            "modelVersion": "gpt-4o",
            "responseId": "r1"
        })
    );
    let filtered = ChatResponse {
        finish_reason: FinishReason::ContentFilter,
        ..ChatResponse::default()
    };
    assert_eq!(
        as_json(&response_from_ir(&filtered)),
        json!({"candidates": [{"finishReason": "SAFETY", "index": 0}], "usageMetadata": {}})
    );
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn upstream_stream_decodes_at_every_split() {
    let events = decode_all_splits(&fixture("stream_upstream.sse"));
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "resp-stream-1".into(),
                model: "gemini-2.5-flash".into(),
                created: 0,
            },
            StreamEvent::ReasoningDelta("**Planning** the lookup".into()),
            StreamEvent::ReasoningDelta(" for two cities.".into()),
            StreamEvent::ReasoningSignature("c2lnLXRleHQ=".into()),
            StreamEvent::TextDelta("Looking up Paris and Tokyo é😀.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_3a6a9df9bb1c_0".into(),
                name: "get_weather".into(),
                signature: Some("c2lnLWZjMQ==".into()),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"Paris"}"#.into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_3a6a9df9bb1c_1".into(),
                name: "get_weather".into(),
                signature: None,
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: r#"{"city":"Tokyo"}"#.into(),
            },
            StreamEvent::Usage(Usage {
                input_tokens: 50,
                output_tokens: 45,
                cache_read_tokens: 10,
                cache_write_tokens: 0,
                reasoning_tokens: 25,
            }),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ]
    );
}

#[test]
fn stream_finish_reasons_and_truncation() {
    let length = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}],\"responseId\":\"a\"}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"totalTokenCount\":5}}\n\n",
    );
    let events = decode_all_splits(length.as_bytes());
    assert_eq!(
        events[1..],
        [
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Length,
                stop_sequence: None
            },
        ]
    );

    // Upstream closed without a finish reason: finish() completes it.
    let cut = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":4}}\n\n";
    let events = decode(&[cut.as_bytes()]);
    assert_eq!(
        events[2..],
        [
            StreamEvent::Usage(Usage {
                input_tokens: 4,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ]
    );

    // A blocked prompt in a stream.
    let blocked = "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n";
    let events = decode(&[blocked.as_bytes()]);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: FinishReason::ContentFilter,
            stop_sequence: None
        })
    );

    // Usage that grows after the finish chunk is reported again.
    let late = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":1}}\n\n",
        "data: {\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":1}}\n\n",
    );
    let events = decode(&[late.as_bytes()]);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Usage(Usage {
            input_tokens: 1,
            output_tokens: 1,
            ..Usage::default()
        }))
    );
}

#[test]
fn stream_error_chunk_ends_the_stream() {
    let input = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"}}]}\n\n",
        "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ignored\"}],\"role\":\"model\"}}]}\n\n",
    );
    let events = decode_all_splits(input.as_bytes());
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2],
        StreamEvent::Error(ApiError {
            status: 503,
            kind: ErrorKind::Overloaded,
            message: "The model is overloaded. Please try again later.".into(),
        })
    );
}

fn encoder_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "resp-enc-1".into(),
            model: "gemini-2.5-flash".into(),
            created: 1_700_000_000,
        },
        StreamEvent::ReasoningDelta("Thinking".into()),
        StreamEvent::ReasoningSignature("c2lnLXI=".into()),
        StreamEvent::TextDelta("Hi ".into()),
        StreamEvent::TextDelta("there".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_x".into(),
            name: "lookup".into(),
            signature: Some("c2lnLWZj".into()),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"q\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"rust\"}".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_y".into(),
            name: "lookup".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: String::new(),
        },
        StreamEvent::Usage(Usage {
            input_tokens: 12,
            output_tokens: 9,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 3,
        }),
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
    ]
}

#[test]
fn encoder_output_matches_golden_sse() {
    let out = encode(StreamEncoder::new(), &encoder_events());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(fixture("stream_encoded.sse")).unwrap()
    );
}

#[test]
fn encoder_json_array_mode_matches_golden() {
    let out = encode(StreamEncoder::json_array(), &encoder_events());
    let want = fixture("stream_encoded.json");
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert_eq!(encode_json_array_stream(&encoder_events()), out);
    // It is one JSON array of chunks.
    let chunks: Vec<Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(chunks.len(), 5);
    assert_eq!(encode_json_array_stream(&[]), b"[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}]}\n]");
}

#[test]
fn encoded_stream_decodes_back_to_the_same_events() {
    let bytes = encode(StreamEncoder::new(), &encoder_events());
    let events = decode_all_splits(&bytes);
    let mut want = encoder_events();
    // No timestamp on the wire; argument fragments arrive as one.
    want[0] = StreamEvent::Start {
        id: "resp-enc-1".into(),
        model: "gemini-2.5-flash".into(),
        created: 0,
    };
    want.remove(7);
    want[6] = StreamEvent::ToolCallDelta {
        index: 0,
        arguments: r#"{"q":"rust"}"#.into(),
    };
    want[8] = StreamEvent::ToolCallDelta {
        index: 1,
        arguments: "{}".into(),
    };
    assert_eq!(events, want);
}

#[test]
fn encoder_flushes_calls_before_later_content_and_reports_errors() {
    let events = vec![
        StreamEvent::Start {
            id: String::new(),
            model: String::new(),
            created: 0,
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into(),
            signature: None,
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"a\":1}".into(),
        },
        StreamEvent::TextDelta("after".into()),
        StreamEvent::Error(ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "slow down".into(),
        }),
        StreamEvent::TextDelta("dropped".into()),
    ];
    let out = String::from_utf8(encode(StreamEncoder::new(), &events)).unwrap();
    assert_eq!(
        out,
        concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"id\":\"c\",\"name\":\"f\",\"args\":{\"a\":1}}}],\"role\":\"model\"},\"index\":0}]}\n\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"after\"}],\"role\":\"model\"},\"index\":0}]}\n\n",
            "data: {\"error\":{\"code\":429,\"message\":\"slow down\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n",
        )
    );
    let out = String::from_utf8(encode(StreamEncoder::json_array(), &events[4..])).unwrap();
    assert_eq!(
        out,
        "[{\"error\":{\"code\":429,\"message\":\"slow down\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n]"
    );
}

// ---------------------------------------------------------------------------
// Errors and paths
// ---------------------------------------------------------------------------

#[test]
fn errors_parse_and_render() {
    let err = parse_error(429, &fixture("error_429.json"));
    assert_eq!(
        err,
        ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "You exceeded your current quota, please check your plan and billing details."
                .into(),
        }
    );
    let err = parse_error(400, &fixture("error_api_key.json"));
    assert_eq!((err.status, err.kind), (400, ErrorKind::Authentication));

    // The array form a JSON-array stream returns.
    let arr = br#"[{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}]"#;
    assert_eq!(parse_error(404, arr).kind, ErrorKind::NotFound);
    let plain = parse_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        (plain.kind, plain.message.as_str()),
        (ErrorKind::Api, "<html>Bad Gateway</html>")
    );
    assert_eq!(parse_error(503, b"").message, "upstream returned HTTP 503");
    // Proxies in front of Gemini sometimes answer `{"error": "text"}`.
    let proxy = parse_error(401, br#"{"error":"invalid token"}"#);
    assert_eq!(
        (proxy.kind, proxy.message.as_str()),
        (ErrorKind::Authentication, "invalid token")
    );

    for (status, kind, google) in [
        (400, ErrorKind::InvalidRequest, "INVALID_ARGUMENT"),
        (401, ErrorKind::Authentication, "UNAUTHENTICATED"),
        (403, ErrorKind::Permission, "PERMISSION_DENIED"),
        (404, ErrorKind::NotFound, "NOT_FOUND"),
        (429, ErrorKind::RateLimit, "RESOURCE_EXHAUSTED"),
        (500, ErrorKind::Api, "INTERNAL"),
        (503, ErrorKind::Overloaded, "UNAVAILABLE"),
        (504, ErrorKind::Timeout, "DEADLINE_EXCEEDED"),
        (529, ErrorKind::Overloaded, "UNAVAILABLE"),
        (413, ErrorKind::RequestTooLarge, "INVALID_ARGUMENT"),
    ] {
        let body = error_body(&ApiError {
            status,
            kind,
            message: "m".into(),
        });
        assert_eq!(
            as_json(&body),
            json!({"error": {"code": status, "message": "m", "status": google}}),
            "{status}"
        );
        // And what we render parses back to the same kind.
        assert_eq!(parse_error(status, &body).kind, kind, "{status}");
    }
}

#[test]
fn paths() {
    assert_eq!(
        model_from_path("/v1beta/models/gemini-2.5-flash:generateContent"),
        Some(("gemini-2.5-flash", Method::GenerateContent))
    );
    assert_eq!(
        model_from_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
        Some(("gemini-2.5-pro", Method::StreamGenerateContent))
    );
    assert_eq!(
        model_from_path("/v1/models/gemini-2.0-flash-001:countTokens"),
        Some(("gemini-2.0-flash-001", Method::CountTokens))
    );
    assert_eq!(
        model_from_path(
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
        ),
        Some(("gemini-2.5-pro", Method::GenerateContent))
    );
    assert_eq!(
        model_from_path("/v1beta/models/gemini-2.5-flash:embedContent"),
        None
    );
    assert_eq!(model_from_path("/v1beta/models/:generateContent"), None);
    assert_eq!(model_from_path("/v1/chat/completions"), None);
    assert_eq!(model_from_path("/v2/models/x:generateContent"), None);

    assert_eq!(
        request_path("models/gemini-2.5-flash", true),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        request_path("gemini-2.5-flash", false),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
}

#[test]
fn token_estimate_counts_text_tools_and_media() {
    let req = ChatRequest {
        system: vec![text("abcd")],
        messages: vec![
            msg(Role::User, vec![text("abcdefgh")]),
            msg(Role::Assistant, vec![call("c", "fn", "{}", None)]),
            msg(Role::Tool, vec![result("c", None, "ok", false)]),
            msg(
                Role::User,
                vec![Part::Audio {
                    data: "x".into(),
                    format: "mp3".into(),
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    // 4 + 8 + (2 + 2) + 2 = 18 chars -> 5 tokens, plus one media part.
    assert_eq!(estimate_input_tokens(&req), 5 + 258);
}

#[test]
fn google_genai_sdk_body_to_ir() {
    // Generated by google-genai 1.x's own request converter: note the mixed
    // casing (`mime_type`, `parameters_json_schema`, snake_case
    // `thinkingConfig` fields) and the float `topK`.
    let ir = request_to_ir(&fixture("request_sdk.json")).unwrap();
    assert_eq!(ir.system, vec![text("be nice")]);
    assert_eq!(
        ir.messages,
        vec![
            msg(
                Role::User,
                vec![
                    text("hi"),
                    Part::Image {
                        source: MediaSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw==".into(),
                        },
                        detail: None,
                        cache_control: None,
                    },
                ],
            ),
            msg(
                Role::Assistant,
                vec![
                    reasoning("thinking", None),
                    call("x1", "f", r#"{"a":1}"#, Some("c2lnLWJ5dGVz")),
                ],
            ),
            msg(Role::Tool, vec![result("x1", Some("f"), "ok", false)]),
        ]
    );
    assert_eq!(ir.temperature, Some(0.5));
    assert_eq!(ir.top_k, Some(40));
    assert_eq!(ir.max_tokens, Some(100));
    assert_eq!(ir.seed, Some(3));
    assert_eq!(ir.stop, vec!["X".to_owned()]);
    assert_eq!(ir.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(
        ir.reasoning,
        Some(Reasoning {
            budget_tokens: Some(1024),
            include_thoughts: Some(true),
            ..Reasoning::default()
        })
    );
    assert_eq!(ir.tools.len(), 1);
    assert_eq!(ir.tools[0].parameters, json!({"type": "object"}));
    assert_eq!(ir.tool_choice, Some(ToolChoice::Named("f".into())));
    assert_eq!(ir.extra["tools"], json!([{"googleSearch": {}}]));
}

#[test]
fn mixed_user_turn_puts_results_first_and_reads_legacy_signatures() {
    let body = json!({"contents": [
        {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {}, "thoughtSignature": "bGVnYWN5"}},
            {"functionCall": {"name": "b"}}
        ]},
        {"role": "user", "parts": [
            {"text": "here you go"},
            {"functionResponse": {"name": "b", "response": {"n": 2}}},
            {"functionResponse": {"name": "a", "response": null}}
        ]}
    ]});
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        ir.messages,
        vec![
            msg(
                Role::Assistant,
                vec![
                    call("call_0", "a", "{}", Some("bGVnYWN5")),
                    call("call_1", "b", "{}", None),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("call_1", Some("b"), r#"{"n":2}"#, false),
                    Part::ToolResult {
                        call_id: "call_0".into(),
                        name: Some("a".into()),
                        content: vec![],
                        is_error: false,
                        cache_control: None,
                    },
                ],
            ),
            msg(Role::User, vec![text("here you go")]),
        ]
    );
}

#[test]
fn pro_models_keep_a_minimal_budget_when_thinking_is_off() {
    let off = Reasoning {
        enabled: Some(false),
        ..Reasoning::default()
    };
    assert_eq!(
        thinking_for("gemini-2.5-pro", off),
        json!({"thinkingBudget": 128})
    );
    let none = Reasoning {
        effort: Some("none".into()),
        ..Reasoning::default()
    };
    assert_eq!(
        thinking_for("gemini-2.5-flash-lite", none),
        json!({"thinkingBudget": 0})
    );
}

#[test]
fn echoed_call_ids_repeating_across_turns_stay_unique() {
    // A client echoing ids from two of our responses: both numbered from 0.
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "call_0", "name": "a", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "call_0", "name": "a", "response": {"result": "1"}}}]},
        {"role": "model", "parts": [{"functionCall": {"id": "call_0", "name": "b", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "call_0", "name": "b", "response": {"result": "2"}}}]}
    ]});
    let ir = request_to_ir(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        ir.messages[1].content,
        vec![call("call_0", "a", "{}", None)]
    );
    assert_eq!(
        ir.messages[2].content,
        vec![result("call_0", Some("a"), "1", false)]
    );
    assert_eq!(
        ir.messages[3].content,
        vec![call("call_1", "b", "{}", None)]
    );
    assert_eq!(
        ir.messages[4].content,
        vec![result("call_1", Some("b"), "2", false)]
    );
}
