#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::convert::cohere::{StreamDecoder, parse_error, request_from_ir, response_to_ir};
use protocol::convert::{ConvertError, DecodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ErrorKind, FinishReason, MediaSource, Message, Part, Reasoning,
    ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/cohere/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

fn call(id: &str, args: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: args.into(),
        signature: None,
    }
}

fn result(id: &str, texts: &[&str], is_error: bool) -> Part {
    Part::ToolResult {
        call_id: id.into(),
        name: None,
        content: texts.iter().map(|t| Part::text(*t)).collect(),
        is_error,
        cache_control: None,
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Weather for a location".into()),
        parameters: json!({"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}),
        strict: None,
        cache_control: None,
    }
}

fn full_request() -> ChatRequest {
    ChatRequest {
        model: "command-a-reasoning-08-2025".into(),
        system: vec![Part::text("You are a weather bot.")],
        messages: vec![
            msg(
                Role::User,
                vec![
                    Part::text("Weather in Paris and Berlin?"),
                    Part::Image {
                        source: MediaSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                        detail: Some("low".into()),
                        cache_control: None,
                    },
                    Part::Image {
                        source: MediaSource::from_url("https://example.com/map.png"),
                        detail: None,
                        cache_control: None,
                    },
                ],
            ),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "Need two lookups.".into(),
                        signature: Some("dropped".into()),
                    },
                    Part::text("I will look up both cities."),
                    call("get_weather_abc123", "{\"location\":\"Paris\"}"),
                    call("get_weather_def456", ""),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("get_weather_abc123", &["{\"temperature\":18}"], false),
                    result("get_weather_def456", &["error:", "timeout"], true),
                ],
            ),
            msg(Role::User, vec![Part::text("Thanks!")]),
            msg(Role::Assistant, vec![Part::text("Paris is 18C.")]),
            msg(
                Role::User,
                vec![Part::text("And tomorrow?"), Part::text(" Briefly.")],
            ),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(false),
        max_tokens: Some(512),
        temperature: Some(0.3),
        top_p: Some(0.75),
        top_k: Some(50),
        stop: vec!["\n\n".into()],
        seed: Some(42),
        frequency_penalty: Some(0.1),
        presence_penalty: Some(0.2),
        stream: true,
        reasoning: Some(Reasoning {
            budget_tokens: Some(1024),
            ..Reasoning::default()
        }),
        user: Some("dropped".into()),
        ..ChatRequest::default()
    }
}

fn body_of(req: &ChatRequest) -> Value {
    serde_json::from_slice(&request_from_ir(req).unwrap()).unwrap()
}

#[test]
fn full_request_matches_the_chat_fixture() {
    let want: Value = serde_json::from_slice(&fixture("chat_request.json")).unwrap();
    assert_eq!(body_of(&full_request()), want);
}

#[test]
fn tool_choice_and_options_map_to_cohere_fields() {
    let base = || ChatRequest {
        model: "command-r7b-12-2024".into(),
        messages: vec![msg(Role::User, vec![Part::text("hi")])],
        tools: vec![
            weather_tool(),
            Tool {
                name: "get_time".into(),
                description: None,
                parameters: json!({"type":"object"}),
                strict: Some(true),
                cache_control: None,
            },
        ],
        ..ChatRequest::default()
    };
    let with = |c: Option<ToolChoice>| {
        body_of(&ChatRequest {
            tool_choice: c,
            ..base()
        })
    };
    assert!(with(None).get("tool_choice").is_none());
    assert!(with(Some(ToolChoice::Auto)).get("tool_choice").is_none());
    assert_eq!(with(Some(ToolChoice::None))["tool_choice"], "NONE");
    assert_eq!(with(Some(ToolChoice::Required))["tool_choice"], "REQUIRED");
    // Forcing one tool: only that tool is offered, and a call is required.
    let named = with(Some(ToolChoice::Named("get_time".into())));
    assert_eq!(named["tool_choice"], "REQUIRED");
    assert_eq!(
        named["tools"],
        json!([{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}])
    );
    // All remaining tools strict -> strict_tools.
    assert_eq!(named["strict_tools"], true);
    assert!(with(None).get("strict_tools").is_none());
    assert!(matches!(
        request_from_ir(&ChatRequest {
            tool_choice: Some(ToolChoice::Named("nope".into())),
            ..base()
        }),
        Err(ConvertError::Invalid { .. })
    ));

    let schema = json!({"type":"object","properties":{"city":{"type":"string"}}});
    let json_mode = body_of(&ChatRequest {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "city".into(),
            schema: schema.clone(),
            strict: Some(true),
        }),
        reasoning: Some(Reasoning {
            enabled: Some(false),
            ..Reasoning::default()
        }),
        ..base()
    });
    assert_eq!(
        json_mode["response_format"],
        json!({"type":"json_object","json_schema":schema})
    );
    assert_eq!(json_mode["thinking"], json!({"type":"disabled"}));
    let effort = body_of(&ChatRequest {
        response_format: Some(ResponseFormat::JsonObject),
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            ..Reasoning::default()
        }),
        ..base()
    });
    assert_eq!(effort["response_format"], json!({"type":"json_object"}));
    assert_eq!(effort["thinking"], json!({"type":"enabled"}));
    assert!(effort.get("stream").is_none());
}

#[test]
fn unsupported_inputs_are_refused() {
    let with_part = |p: Part| ChatRequest {
        messages: vec![msg(Role::User, vec![p])],
        ..ChatRequest::default()
    };
    for part in [
        Part::Audio {
            data: "UklGRg==".into(),
            format: "wav".into(),
        },
        Part::File {
            source: MediaSource::from_url("data:application/pdf;base64,JVBERi0="),
            filename: None,
            cache_control: None,
        },
        Part::ToolResult {
            call_id: "c".into(),
            name: None,
            content: vec![Part::Image {
                source: MediaSource::from_url("https://x.test/a.png"),
                detail: None,
                cache_control: None,
            }],
            is_error: false,
            cache_control: None,
        },
    ] {
        assert!(matches!(
            request_from_ir(&with_part(part)),
            Err(ConvertError::Unsupported(_))
        ));
    }
    assert!(matches!(
        request_from_ir(&ChatRequest {
            n: Some(3),
            ..ChatRequest::default()
        }),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn parallel_tool_call_response_keeps_ids_plan_and_usage() {
    let resp = response_to_ir(&fixture("response_tool_calls.json")).unwrap();
    assert_eq!(resp.id, "5a50480a-cf52-46f0-af01-53d18539bd31");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.content,
        vec![
            Part::text("I will search for the weather in Paris and Berlin."),
            call("get_weather_1byjy32y4hvq", "{\"location\":\"Paris\"}"),
            call("get_weather_e7v5r3gatgar", "{\"location\":\"Berlin\"}"),
        ]
    );
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 913,
            output_tokens: 81,
            cache_read_tokens: 512,
            ..Usage::default()
        }
    );
}

#[test]
fn thinking_response_and_finish_reasons() {
    let resp = response_to_ir(&fixture("response_thinking.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(
        resp.content,
        vec![
            Part::Reasoning {
                text: "The user asks for 17*3. That is 51.".into(),
                signature: None
            },
            Part::text("17 × 3 = 51."),
        ]
    );
    assert_eq!(
        (resp.usage.input_tokens, resp.usage.output_tokens),
        (502, 40)
    );

    // Only billed units: they are used.
    let resp = response_to_ir(&fixture("response_max_tokens.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::Length);
    assert_eq!((resp.usage.input_tokens, resp.usage.output_tokens), (6, 5));

    for (reason, want) in [
        ("COMPLETE", FinishReason::Stop),
        ("STOP_SEQUENCE", FinishReason::Stop),
        ("MAX_TOKENS", FinishReason::Length),
        ("TOOL_CALL", FinishReason::ToolCalls),
    ] {
        let body =
            json!({"id":"x","finish_reason":reason,"message":{"role":"assistant","content":null}});
        let resp = response_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(resp.finish_reason, want, "{reason}");
        assert!(resp.content.is_empty());
    }
}

fn decode_split(bytes: &[u8], cut: usize) -> Vec<StreamEvent> {
    let mut sse = SseDecoder::new(1 << 20);
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for chunk in [&bytes[..cut], &bytes[cut..]] {
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

/// Decodes the stream whole and split at every byte; all must agree.
fn decode_all_splits(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = decode_split(bytes, bytes.len());
    for cut in 0..bytes.len() {
        assert_eq!(decode_split(bytes, cut), whole, "split at {cut}");
    }
    whole
}

fn start(id: &str) -> StreamEvent {
    StreamEvent::Start {
        id: id.into(),
        model: String::new(),
        created: 0,
    }
}

#[test]
fn tool_call_stream_decodes_at_every_byte_split() {
    let events = decode_all_splits(&fixture("stream_tool_calls.sse"));
    assert_eq!(
        events,
        vec![
            start("29f14a5a-11de-4cae-9800-25e4747408ea"),
            StreamEvent::TextDelta("I will".into()),
            StreamEvent::TextDelta(" check both.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "get_weather_nsz5zm3w56q3".into(),
                name: "get_weather".into(),
                signature: None
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"location\":".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "get_weather_j3ywzvsd9ah1".into(),
                name: "get_weather".into(),
                signature: None
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"location\":\"Berlin\"}".into()
            },
            StreamEvent::Usage(Usage {
                input_tokens: 913,
                output_tokens: 81,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            },
        ]
    );
}

#[test]
fn thinking_stream_decodes_at_every_byte_split() {
    let events = decode_all_splits(&fixture("stream_thinking.sse"));
    assert_eq!(
        events,
        vec![
            start("d1f2e3c4-0000-4a4a-9b9b-1234567890ab"),
            StreamEvent::ReasoningDelta("17*3".into()),
            StreamEvent::ReasoningDelta(" is 51.".into()),
            StreamEvent::TextDelta("17 × 3".into()),
            StreamEvent::TextDelta(" = 51 😀".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 502,
                output_tokens: 40,
                cache_read_tokens: 448,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ]
    );
}

#[test]
fn error_finish_ends_the_stream_with_an_error() {
    let events = decode_all_splits(&fixture("stream_error.sse"));
    assert_eq!(events.len(), 4);
    assert_eq!(events[1], StreamEvent::TextDelta("Partial".into()));
    assert_eq!(
        events[3],
        StreamEvent::Error(ApiError {
            status: 500,
            kind: ErrorKind::Api,
            message: "internal server error, this has been reported to our developers".into()
        })
    );
}

#[test]
fn done_markers_missing_types_and_truncated_streams() {
    // `type` missing from the data: the SSE event name is used; `[DONE]`
    // is ignored; a stream without message-end still finishes.
    let sse = concat!(
        "event: message-start\ndata: {\"id\":\"m1\"}\n\n",
        "event: content-delta\ndata: {\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Hi\"}}}}\n\n",
        "data: [DONE]\n\n",
    );
    let events = decode_all_splits(sse.as_bytes());
    assert_eq!(
        events,
        vec![
            start("m1"),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            }
        ]
    );
    let timeout = "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TIMEOUT\"}}\n\n";
    let events = decode_all_splits(timeout.as_bytes());
    assert!(matches!(
        &events[1],
        StreamEvent::Error(ApiError {
            status: 504,
            kind: ErrorKind::Timeout,
            ..
        })
    ));
    assert_eq!(events.len(), 2);

    let orphan =
        "event: tool-call-delta\ndata: {\"type\":\"tool-call-delta\",\"index\":3,\"delta\":{}}\n\n";
    let mut sse = SseDecoder::new(1 << 16);
    sse.push(orphan.as_bytes()).unwrap();
    let ev = sse.next_event().unwrap();
    assert!(StreamDecoder::new().push(&ev, &mut Vec::new()).is_err());
}

#[test]
fn error_bodies_keep_the_message() {
    assert_eq!(
        parse_error(
            400,
            br#"{"id":"a1b2","message":"invalid request: message must be at least 1 token long or tool results must be specified."}"#
        ),
        ApiError {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            message: "invalid request: message must be at least 1 token long or tool results must be specified.".into()
        }
    );
    let limited = parse_error(
        429,
        br#"{"id":"x","message":"You are using a Trial key, which is limited to 10 API calls / minute."}"#,
    );
    assert_eq!(limited.kind, ErrorKind::RateLimit);
    assert_eq!(
        parse_error(498, br#"{"message":"invalid api token"}"#).kind,
        ErrorKind::Authentication
    );
    assert_eq!(parse_error(503, b"upstream down").message, "upstream down");
    assert_eq!(parse_error(500, b"").message, "Cohere returned HTTP 500");
}
