#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::convert::cloudflare::{StreamDecoder, parse_error, request_from_ir, response_to_ir};
use protocol::convert::{ConvertError, DecodeStream};
use protocol::ir::{
    ApiError, ChatRequest, ErrorKind, FinishReason, MediaSource, Message, Part, Reasoning,
    ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/cloudflare/{name}",
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

fn result(id: &str, text: &str) -> Part {
    Part::ToolResult {
        call_id: id.into(),
        name: None,
        content: vec![Part::text(text)],
        is_error: false,
        cache_control: None,
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool {
            name: "get_weather".into(),
            description: Some("Get the weather for a city".into()),
            parameters: json!({"type":"object","properties":{"city":{"type":"string","description":"City name"}},"required":["city"]}),
            strict: Some(true),
            cache_control: None,
        },
        Tool {
            name: "get_time".into(),
            description: None,
            parameters: json!({"type":"object","properties":{}}),
            strict: None,
            cache_control: None,
        },
    ]
}

fn full_request() -> ChatRequest {
    ChatRequest {
        model: "@cf/meta/llama-4-scout-17b-16e-instruct".into(),
        system: vec![Part::text("You are helpful.")],
        messages: vec![
            msg(
                Role::User,
                vec![Part::text("What's the weather in Paris and Lyon?")],
            ),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "two calls".into(),
                        signature: None,
                    },
                    Part::text("Let me check."),
                    call("call_1", "{\"city\":\"Paris\"}"),
                    call("call_2", ""),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("call_1", "{\"temp\":18}"),
                    result("call_2", "{\"temp\":21}"),
                ],
            ),
            msg(
                Role::User,
                vec![
                    Part::text("Describe this:"),
                    Part::Image {
                        source: MediaSource::from_url("data:image/jpeg;base64,/9j/4AAQ"),
                        detail: Some("low".into()),
                        cache_control: None,
                    },
                ],
            ),
            msg(Role::Assistant, vec![Part::text("It is a cat.")]),
            msg(Role::User, vec![Part::text("Thanks"), Part::text("!")]),
        ],
        tools: tools(),
        tool_choice: Some(ToolChoice::Auto),
        max_tokens: Some(256),
        temperature: Some(0.6),
        top_p: Some(0.9),
        top_k: Some(40),
        seed: Some(1),
        frequency_penalty: Some(0.5),
        presence_penalty: Some(0.1),
        stream: true,
        user: Some("dropped".into()),
        reasoning: Some(Reasoning {
            effort: Some("low".into()),
            ..Reasoning::default()
        }),
        ..ChatRequest::default()
    }
}

fn body_of(req: &ChatRequest) -> Value {
    serde_json::from_slice(&request_from_ir(req).unwrap()).unwrap()
}

#[test]
fn full_history_request_matches_the_fixture() {
    let want: Value = serde_json::from_slice(&fixture("run_request.json")).unwrap();
    assert_eq!(body_of(&full_request()), want);
}

#[test]
fn tool_choice_response_format_and_refusals() {
    let base = || ChatRequest {
        messages: vec![msg(Role::User, vec![Part::text("hi")])],
        tools: tools(),
        ..ChatRequest::default()
    };
    // `none`: no tools offered.
    let none = body_of(&ChatRequest {
        tool_choice: Some(ToolChoice::None),
        ..base()
    });
    assert!(none.get("tools").is_none());
    for choice in [ToolChoice::Required, ToolChoice::Named("get_time".into())] {
        assert!(matches!(
            request_from_ir(&ChatRequest {
                tool_choice: Some(choice),
                ..base()
            }),
            Err(ConvertError::Unsupported(_))
        ));
    }
    assert!(matches!(
        request_from_ir(&ChatRequest {
            stop: vec!["END".into()],
            ..base()
        }),
        Err(ConvertError::Unsupported(_))
    ));
    assert!(matches!(
        request_from_ir(&ChatRequest {
            messages: vec![msg(
                Role::User,
                vec![Part::Audio {
                    data: "x".into(),
                    format: "mp3".into()
                }]
            )],
            ..ChatRequest::default()
        }),
        Err(ConvertError::Unsupported(_))
    ));

    let schema =
        json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]});
    let json_schema = body_of(&ChatRequest {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "c".into(),
            schema: schema.clone(),
            strict: None,
        }),
        ..base()
    });
    assert_eq!(
        json_schema["response_format"],
        json!({"type":"json_schema","json_schema":schema})
    );
    let json_object = body_of(&ChatRequest {
        response_format: Some(ResponseFormat::JsonObject),
        ..base()
    });
    assert_eq!(
        json_object["response_format"],
        json!({"type":"json_object"})
    );
    let text = body_of(&ChatRequest {
        response_format: Some(ResponseFormat::Text),
        ..base()
    });
    assert!(text.get("response_format").is_none());
    assert!(text.get("stream").is_none());
}

#[test]
fn tool_messages_recover_the_tool_name_from_history() {
    let req = ChatRequest {
        messages: vec![
            msg(Role::Assistant, vec![call("c9", "{}")]),
            msg(
                Role::User,
                vec![result("c9", "sunny"), Part::text("and now?")],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = body_of(&req);
    assert_eq!(
        body["messages"],
        json!([
            {"role":"assistant","content":"","tool_calls":[{"id":"c9","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
            {"role":"tool","content":"sunny","tool_call_id":"c9","name":"get_weather"},
            {"role":"user","content":"and now?"}
        ])
    );
}

#[test]
fn classic_responses() {
    let resp = response_to_ir(&fixture("response_classic.json")).unwrap();
    assert_eq!(
        resp.content,
        vec![Part::text("Hello! How can I help you today?")]
    );
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 24,
            output_tokens: 9,
            ..Usage::default()
        }
    );

    // Tool calls without ids get call_<n>, in order.
    let resp = response_to_ir(&fixture("response_tool_calls_classic.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.content,
        vec![
            call("call_0", "{\"city\":\"Paris\"}"),
            call("call_1", "{\"city\":\"Lyon\"}"),
        ]
    );

    // Newer models: ids, and arguments as an object or as text.
    let resp = response_to_ir(&fixture("response_tool_calls_llama4.json")).unwrap();
    assert_eq!(
        resp.content,
        vec![
            call("chatcmpl-tool-5e1a0f2b9c8d4e7f", "{\"city\":\"Paris\"}"),
            call("chatcmpl-tool-a4b3c2d1e0f94a8b", "{\"city\":\"Lyon\"}"),
        ]
    );

    // JSON mode answers with a JSON value: it becomes JSON text.
    let resp = response_to_ir(&fixture("response_json_mode.json")).unwrap();
    let Part::Text { text, .. } = &resp.content[0] else {
        panic!()
    };
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"city":"Paris","temp":18})
    );

    // A bare result (no envelope) and a bare string are accepted too.
    let bare = response_to_ir(br#"{"response":"hi"}"#).unwrap();
    assert_eq!(bare.content, vec![Part::text("hi")]);
    let string = response_to_ir(br#"{"result":"hi","success":true}"#).unwrap();
    assert_eq!(string.content, vec![Part::text("hi")]);
}

#[test]
fn openai_shaped_responses() {
    let resp = response_to_ir(&fixture("response_openai.json")).unwrap();
    assert_eq!(resp.id, "chatcmpl-7c0a4d3e2b1f4a5c");
    assert_eq!(resp.model, "@cf/qwen/qwq-32b");
    assert_eq!(resp.created, 1_745_000_000);
    assert_eq!(
        resp.content,
        vec![
            Part::Reasoning {
                text: "17*3: 10*3=30, 7*3=21, total 51.".into(),
                signature: None
            },
            Part::text("17 × 3 = 51."),
        ]
    );
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 12,
            output_tokens: 30,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 20,
        }
    );

    let resp = response_to_ir(&fixture("response_openai_tools.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.content,
        vec![
            call("Xk3fP9qLm", "{\"city\":\"Paris\"}"),
            call("Rt7vB2nWc", "{\"city\":\"Lyon\"}"),
        ]
    );
}

#[test]
fn failed_envelopes_are_errors() {
    let err = response_to_ir(&fixture("error_quota.json")).unwrap_err();
    assert!(err.to_string().contains("daily free allocation"), "{err}");
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

fn anonymous_start() -> StreamEvent {
    StreamEvent::Start {
        id: String::new(),
        model: String::new(),
        created: 0,
    }
}

#[test]
fn classic_stream_decodes_at_every_byte_split() {
    let events = decode_all_splits(&fixture("stream_classic.sse"));
    assert_eq!(
        events,
        vec![
            anonymous_start(),
            StreamEvent::TextDelta("Hello".into()),
            StreamEvent::TextDelta(" wor".into()),
            StreamEvent::TextDelta("ld é😀".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 20,
                output_tokens: 3,
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
fn classic_tool_call_stream_decodes_at_every_byte_split() {
    let events = decode_all_splits(&fixture("stream_tool_calls_classic.sse"));
    let start = |index: u32, id: &str| StreamEvent::ToolCallStart {
        index,
        id: id.into(),
        name: "get_weather".into(),
        signature: None,
    };
    assert_eq!(
        events,
        vec![
            anonymous_start(),
            start(0, "call_0"),
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":\"Paris\"}".into()
            },
            start(1, "call_1"),
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"city\":\"Lyon\"}".into()
            },
            StreamEvent::Usage(Usage {
                input_tokens: 310,
                output_tokens: 38,
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
fn openai_shaped_stream_with_interleaved_parallel_calls() {
    let events = decode_all_splits(&fixture("stream_openai.sse"));
    let start = |index: u32, id: &str| StreamEvent::ToolCallStart {
        index,
        id: id.into(),
        name: "get_weather".into(),
        signature: None,
    };
    let delta = |index: u32, a: &str| StreamEvent::ToolCallDelta {
        index,
        arguments: a.into(),
    };
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "chatcmpl-9a8b7c".into(),
                model: "@cf/meta/llama-4-scout-17b-16e-instruct".into(),
                created: 1_745_000_200
            },
            start(0, "chatcmpl-tool-111"),
            delta(0, "{\"city\": "),
            start(1, "chatcmpl-tool-222"),
            delta(1, "{\"city\": \"Lyon\"}"),
            delta(0, "\"Paris\"}"),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            },
            StreamEvent::Usage(Usage {
                input_tokens: 402,
                output_tokens: 41,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn stream_errors_end_the_stream() {
    let sse = concat!(
        "data: {\"response\":\"Hi\"}\n\n",
        "data: {\"errors\":[{\"code\":3040,\"message\":\"Out of capacity\"}]}\n\n",
        "data: {\"response\":\"ignored\"}\n\n",
    );
    let events = decode_all_splits(sse.as_bytes());
    assert_eq!(
        events,
        vec![
            anonymous_start(),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::Error(ApiError {
                status: 500,
                kind: ErrorKind::Api,
                message: "Out of capacity".into()
            }),
        ]
    );
    let bad = "data: {not json\n\n";
    let mut sse = SseDecoder::new(1 << 16);
    sse.push(bad.as_bytes()).unwrap();
    let ev = sse.next_event().unwrap();
    assert!(StreamDecoder::new().push(&ev, &mut Vec::new()).is_err());
}

#[test]
fn error_envelopes_are_classified_by_code() {
    assert_eq!(
        parse_error(429, &fixture("error_quota.json")),
        ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "AiError: Account limited: You have used up your daily free allocation of 10,000 neurons. Please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage.".into()
        }
    );
    let cases: [(u16, &str, ErrorKind); 5] = [
        (
            429,
            r#"{"errors":[{"code":3040,"message":"Out of capacity"}],"success":false}"#,
            ErrorKind::Overloaded,
        ),
        (
            400,
            r#"{"errors":[{"code":5007,"message":"No such model @cf/x or task"}],"success":false}"#,
            ErrorKind::NotFound,
        ),
        (
            401,
            r#"{"errors":[{"code":10000,"message":"Authentication error"}],"success":false}"#,
            ErrorKind::Authentication,
        ),
        (
            408,
            r#"{"errors":[{"code":3007,"message":"Request timeout"}],"success":false}"#,
            ErrorKind::Timeout,
        ),
        (
            400,
            r#"{"errors":[{"code":9999,"message":"Something else"}],"success":false}"#,
            ErrorKind::InvalidRequest,
        ),
    ];
    for (status, body, kind) in cases {
        let e = parse_error(status, body.as_bytes());
        assert_eq!((e.status, e.kind), (status, kind), "{body}");
    }
    let openai_like = parse_error(
        500,
        br#"{"error":{"message":"boom","type":"server_error"}}"#,
    );
    assert_eq!(openai_like.message, "boom");
    assert_eq!(parse_error(502, b"bad gateway").message, "bad gateway");
    assert_eq!(
        parse_error(500, b"").message,
        "Workers AI returned HTTP 500"
    );
}
