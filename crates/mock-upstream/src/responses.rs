//! OpenAI's Responses API: `POST /v1/responses` (buffered, or the
//! `response.*` event stream) and `GET /v1/responses/{id}` for stored
//! responses, with `previous_response_id` chaining, answered by the shared
//! rules of [`crate::convo`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::convo::{self, Choice, Convo, Plan, Stop, ToolDef};
use crate::errors::ApiError;
use crate::server::{Ctx, Shared, TokenUsage, lock};
use crate::stream::{self, Events, arg_pieces};
use crate::util::{
    Json, alnum_id, hex_chars, obj, tokens_for_chars, unix_now, word_ends, word_pieces,
};

/// Label of the `encrypted_content` the mock issues for reasoning items.
const ENCRYPTED_LABEL: &str = "mock-encrypted-reasoning";
/// Stored responses kept (oldest forgotten first).
const STORE_CAPACITY: usize = 4096;

/// Request fields the API knows.
const FIELDS: &[&str] = &[
    "access_programs",
    "background",
    "background_options",
    "context_management",
    "conversation",
    "image",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

const ROLES: [&str; 4] = ["assistant", "system", "developer", "user"];

struct Stored {
    /// The whole conversation as input items: earlier turns, this request's
    /// input and this response's output.
    items: Vec<Value>,
    /// The response object as returned.
    response: Vec<u8>,
}

#[derive(Default)]
struct StoreInner {
    map: HashMap<String, Stored>,
    order: VecDeque<String>,
}

/// Responses created with `store` (the default), for chaining and `GET`.
#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<StoreInner>,
}

impl Store {
    fn put(&self, id: String, stored: Stored) {
        let mut s = lock(&self.inner);
        if s.order.len() >= STORE_CAPACITY
            && let Some(old) = s.order.pop_front()
        {
            s.map.remove(&old);
        }
        s.order.push_back(id.clone());
        s.map.insert(id, stored);
    }

    fn items(&self, id: &str) -> Option<Vec<Value>> {
        lock(&self.inner).map.get(id).map(|s| s.items.clone())
    }

    fn response(&self, id: &str) -> Option<Vec<u8>> {
        lock(&self.inner).map.get(id).map(|s| s.response.clone())
    }
}

/// Characters the prompt rule counts in one input item: message text
/// (string content or `input_text`/`output_text` parts) and function call
/// outputs.
fn item_chars(item: &Value) -> usize {
    let text_chars = |c: &Value| -> usize {
        match c {
            Value::String(s) => s.chars().count(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| t.chars().count())
                .sum(),
            _ => 0,
        }
    };
    match item.get("type").and_then(Value::as_str) {
        None | Some("message") => item.get("content").map_or(0, text_chars),
        Some("function_call_output") => item.get("output").map_or(0, text_chars),
        _ => 0,
    }
}

/// `input` as a list of items (a string is one user message).
fn input_items(v: &Value) -> Vec<Value> {
    match v.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

fn instructions_chars(v: &Value) -> usize {
    v.get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count())
}

/// Input tokens of this request's own input and instructions (the stored
/// conversation a `previous_response_id` adds is counted in `usage`).
pub(crate) fn input_tokens_of(v: &Value) -> u64 {
    tokens_for_chars(instructions_chars(v) + input_items(v).iter().map(item_chars).sum::<usize>())
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("max_output_tokens").and_then(Value::as_u64)
}

fn is_message(item: &Value) -> bool {
    matches!(
        item.get("type").and_then(Value::as_str),
        None | Some("message")
    )
}

fn check_items(items: &[Value], first_new: usize) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate().skip(first_new) {
        let at = format!("input[{}]", i - first_new);
        let Some(obj) = item.as_object() else {
            return Err(ApiError::invalid_type(&at, "an object", item));
        };
        if is_message(item) {
            match obj.get("role") {
                None => return Err(ApiError::missing(&format!("{at}.role"))),
                Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
                Some(Value::String(r)) => {
                    return Err(ApiError::invalid_value(&format!("{at}.role"), r, &ROLES));
                }
                Some(other) => {
                    return Err(ApiError::invalid_type(
                        &format!("{at}.role"),
                        "a string",
                        other,
                    ));
                }
            }
            if obj.get("content").is_none() {
                return Err(ApiError::missing(&format!("{at}.content")));
            }
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                for f in ["call_id", "name", "arguments"] {
                    if obj.get(f).is_none() {
                        return Err(ApiError::missing(&format!("{at}.{f}")));
                    }
                }
            }
            Some("function_call_output") => {
                for f in ["call_id", "output"] {
                    if obj.get(f).is_none() {
                        return Err(ApiError::missing(&format!("{at}.{f}")));
                    }
                }
            }
            Some("reasoning") => {
                if let (Some(id), Some(enc)) = (
                    obj.get("id").and_then(Value::as_str),
                    obj.get("encrypted_content").and_then(Value::as_str),
                ) && enc != convo::signature(ENCRYPTED_LABEL, id)
                {
                    return Err(ApiError::invalid(
                        format!("The encrypted content for item {id} could not be verified."),
                        None,
                        None,
                    ));
                }
            }
            _ => {}
        }
    }
    // Calls and outputs pair up by call_id, calls first.
    let call_id = |item: &Value| {
        item.get("call_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let kind = |item: &Value| {
        item.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    for (i, item) in items.iter().enumerate() {
        match kind(item).as_str() {
            "function_call_output" => {
                let id = call_id(item);
                let called = items
                    .iter()
                    .take(i)
                    .any(|x| kind(x) == "function_call" && call_id(x) == id);
                if !called {
                    return Err(ApiError::invalid(
                        format!("No tool call found for function call output with call_id {id}."),
                        Some("input"),
                        None,
                    ));
                }
            }
            "function_call" => {
                let id = call_id(item);
                let answered = items
                    .iter()
                    .skip(i + 1)
                    .any(|x| kind(x) == "function_call_output" && call_id(x) == id);
                if !answered {
                    return Err(ApiError::invalid(
                        format!("No tool output found for function call {id}."),
                        Some("input"),
                        None,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn tools_of(obj: &Map<String, Value>) -> Result<Vec<ToolDef<'_>>, ApiError> {
    let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(tools) = tools.as_array() else {
        return Err(ApiError::invalid_type("tools", "an array", tools));
    };
    let mut defs = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            continue;
        }
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            return Err(ApiError::missing(&format!("tools[{i}].name")));
        };
        defs.push(ToolDef {
            name,
            params: t.get("parameters"),
        });
    }
    Ok(defs)
}

fn choice_of(obj: &Map<String, Value>) -> Choice<'_> {
    match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Choice::None,
        Some(Value::String(s)) if s == "required" => Choice::Required,
        Some(c @ Value::Object(_)) if c.get("type").and_then(Value::as_str) == Some("function") => {
            c.get("name")
                .and_then(Value::as_str)
                .map_or(Choice::Auto, Choice::Named)
        }
        _ => Choice::Auto,
    }
}

fn user_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<&str>>()
            .join(" "),
        _ => String::new(),
    }
}

fn is_user(item: &Value) -> bool {
    is_message(item) && item.get("role").and_then(Value::as_str) == Some("user")
}

/// The ids of one answer.
struct Ids {
    response: String,
    reasoning: String,
    message: String,
    seed: u64,
}

impl Ids {
    fn new(seed: u64) -> Ids {
        Ids {
            response: hex_chars("resp_", seed, 48),
            reasoning: hex_chars("rs_", seed ^ 0x5151, 48),
            message: hex_chars("msg_", seed ^ 0x3131, 48),
            seed,
        }
    }

    fn call(&self, i: usize) -> (String, String) {
        let s = self.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (hex_chars("fc_", s, 48), alnum_id("call_", s, 24))
    }
}

/// What the request asked for, beyond the conversation.
struct Options<'a> {
    model: &'a str,
    obj: &'a Map<String, Value>,
    reasoning: bool,
    summary: bool,
    encrypted: bool,
    store: bool,
    input_tokens: u64,
}

fn reasoning_item(ids: &Ids, plan: &Plan, opts: &Options<'_>, done: bool) -> Json {
    let mut fields = vec![
        ("id", Json::from(ids.reasoning.as_str())),
        ("type", Json::from("reasoning")),
    ];
    let summary = match (&plan.thinking, opts.summary && done) {
        (Some(t), true) => vec![obj! {"type": "summary_text", "text": t.as_str()}],
        _ => Vec::new(),
    };
    fields.push(("summary", Json::Arr(summary)));
    if opts.encrypted {
        fields.push((
            "encrypted_content",
            Json::Str(convo::signature(ENCRYPTED_LABEL, &ids.reasoning)),
        ));
    }
    Json::Obj(fields)
}

fn text_part(text: &str) -> Json {
    obj! {
        "type": "output_text",
        "annotations": Json::Arr(Vec::new()),
        "logprobs": Json::Arr(Vec::new()),
        "text": text,
    }
}

fn message_item(ids: &Ids, text: Option<&str>, status: &str) -> Json {
    obj! {
        "id": ids.message.as_str(),
        "type": "message",
        "status": status,
        "content": Json::Arr(text.map(text_part).into_iter().collect()),
        "role": "assistant",
    }
}

fn call_item(ids: &Ids, i: usize, name: &str, arguments: &str, status: &str) -> Json {
    let (id, call_id) = ids.call(i);
    obj! {
        "id": id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }
}

/// The output items of a finished answer.
fn output(ids: &Ids, plan: &Plan, opts: &Options<'_>) -> Vec<Json> {
    let mut out = Vec::new();
    if plan.thinking.is_some() {
        out.push(reasoning_item(ids, plan, opts, true));
    }
    if plan.calls.is_empty() {
        out.push(message_item(ids, Some(&plan.text), "completed"));
    }
    for (i, c) in plan.calls.iter().enumerate() {
        out.push(call_item(ids, i, &c.name, &c.arguments, "completed"));
    }
    out
}

fn usage(plan: &Plan, input: u64) -> Json {
    let output = plan.output_tokens();
    obj! {
        "input_tokens": input,
        "input_tokens_details": obj! {"cached_tokens": 0u64},
        "output_tokens": output,
        "output_tokens_details": obj! {"reasoning_tokens": plan.thinking_tokens()},
        "total_tokens": input + output,
    }
}

fn echo(obj: &Map<String, Value>, name: &str, default: Value) -> Json {
    Json::Val(
        obj.get(name)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default),
    )
}

/// The response object: in progress (no output, no usage) or final.
fn response(
    ids: &Ids,
    created: u64,
    opts: &Options<'_>,
    status: &str,
    output: Vec<Json>,
    usage: Option<Json>,
) -> Json {
    let o = opts.obj;
    let incomplete = if status == "incomplete" {
        obj! {"reason": "max_output_tokens"}
    } else {
        Json::Null
    };
    let reasoning = o.get("reasoning").filter(|r| !r.is_null());
    obj! {
        "id": ids.response.as_str(),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": false,
        "error": Json::Null,
        "incomplete_details": incomplete,
        "instructions": echo(o, "instructions", Value::Null),
        "max_output_tokens": echo(o, "max_output_tokens", Value::Null),
        "max_tool_calls": echo(o, "max_tool_calls", Value::Null),
        "model": opts.model,
        "output": Json::Arr(output),
        "parallel_tool_calls": o.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false),
        "previous_response_id": echo(o, "previous_response_id", Value::Null),
        "prompt_cache_key": echo(o, "prompt_cache_key", Value::Null),
        "reasoning": obj! {
            "effort": Json::Val(reasoning.and_then(|r| r.get("effort")).cloned().unwrap_or(Value::Null)),
            "summary": Json::Val(reasoning.and_then(|r| r.get("summary")).cloned().unwrap_or(Value::Null)),
        },
        "safety_identifier": echo(o, "safety_identifier", Value::Null),
        "service_tier": "default",
        "store": opts.store,
        "temperature": echo(o, "temperature", json!(1.0)),
        "text": echo(o, "text", json!({"format": {"type": "text"}, "verbosity": "medium"})),
        "tool_choice": echo(o, "tool_choice", json!("auto")),
        "tools": echo(o, "tools", json!([])),
        "top_logprobs": echo(o, "top_logprobs", json!(0)),
        "top_p": echo(o, "top_p", json!(1.0)),
        "truncation": echo(o, "truncation", json!("disabled")),
        "usage": usage.unwrap_or(Json::Null),
        "user": echo(o, "user", Value::Null),
        "metadata": echo(o, "metadata", json!({})),
    }
}

/// This answer's output as input items, for `previous_response_id`.
fn as_input(ids: &Ids, plan: &Plan, opts: &Options<'_>) -> Vec<Value> {
    let mut items = Vec::new();
    if plan.thinking.is_some() {
        let mut r = json!({"type": "reasoning", "id": ids.reasoning, "summary": []});
        if opts.encrypted {
            r["encrypted_content"] = json!(convo::signature(ENCRYPTED_LABEL, &ids.reasoning));
        }
        items.push(r);
    }
    if plan.calls.is_empty() {
        items.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": plan.text}]}));
    }
    for (i, c) in plan.calls.iter().enumerate() {
        let (_, call_id) = ids.call(i);
        items.push(json!({"type": "function_call", "call_id": call_id, "name": c.name, "arguments": c.arguments}));
    }
    items
}

/// `POST /v1/responses`.
pub(crate) fn create(ctx: &Ctx<'_>, v: &Value) -> Result<Response<Body>, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::parse_error());
    };
    if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("Unknown parameter: '{extra}'."),
            Some(extra),
            Some("unknown_parameter"),
        ));
    }
    let model = match obj.get("model") {
        None | Some(Value::Null) => return Err(ApiError::missing("model")),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    match obj.get("input") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
        Some(other) => {
            return Err(ApiError::invalid_type(
                "input",
                "one of a string or array of objects",
                other,
            ));
        }
    }
    let mut items = Vec::new();
    if let Some(prev) = obj.get("previous_response_id").and_then(Value::as_str) {
        match ctx.shared.stored.items(prev) {
            Some(earlier) => items = earlier,
            None => {
                return Err(ApiError::invalid(
                    format!("Previous response with id '{prev}' not found."),
                    Some("previous_response_id"),
                    Some("previous_response_not_found"),
                ));
            }
        }
    }
    let first_new = items.len();
    items.extend(input_items(v));
    check_items(&items, first_new)?;
    let tools = tools_of(obj)?;
    if !ctx.shared.has_model(model) {
        return Err(ApiError::invalid(
            format!("The requested model '{model}' does not exist."),
            Some("model"),
            Some("model_not_found"),
        ));
    }
    let reasoning = obj
        .get("reasoning")
        .filter(|r| !r.is_null())
        .filter(|r| r.get("effort").and_then(Value::as_str) != Some("none"));
    let include: Vec<&str> = obj
        .get("include")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let opts = Options {
        model,
        obj,
        reasoning: reasoning.is_some(),
        summary: reasoning
            .and_then(|r| r.get("summary"))
            .is_some_and(|s| s.is_string()),
        encrypted: include.contains(&"reasoning.encrypted_content"),
        store: obj.get("store").and_then(Value::as_bool) != Some(false),
        input_tokens: tokens_for_chars(
            instructions_chars(v) + items.iter().map(item_chars).sum::<usize>(),
        ),
    };
    let last_user = items.iter().rev().find(|i| is_user(i)).map(user_text);
    let convo = Convo {
        last_user,
        last_is_user: items.last().is_some_and(is_user),
        tools,
        choice: choice_of(obj),
        parallel: obj.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false),
    };
    let limits = convo::Limits {
        max_tokens: max_tokens_of(v),
        thinking: opts.reasoning,
        stop_sequences: &[],
    };
    let plan = convo::plan(ctx, &convo, limits);
    let ids = Ids::new(ctx.seed());
    let created = unix_now();
    let status = if plan.stop == Stop::MaxTokens {
        "incomplete"
    } else {
        "completed"
    };
    let final_response = response(
        &ids,
        created,
        &opts,
        status,
        output(&ids, &plan, &opts),
        Some(usage(&plan, opts.input_tokens)),
    );
    let bytes = final_response.to_vec();
    if opts.store {
        items.extend(as_input(&ids, &plan, &opts));
        ctx.shared.stored.put(
            ids.response.clone(),
            Stored {
                items,
                response: bytes.clone(),
            },
        );
    }
    let tokens = TokenUsage::single(opts.input_tokens, plan.output_tokens());
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    let mut resp = if stream {
        stream_response(ctx, &ids, created, &opts, &plan, status, final_response)
    } else {
        body::json(StatusCode::OK, bytes)
    };
    resp.extensions_mut().insert(tokens);
    Ok(resp)
}

/// Builds the numbered `response.*` events.
struct Seq {
    events: Events,
    next: u64,
}

impl Seq {
    fn push(&mut self, name: &'static str, rest: Vec<(&'static str, Json)>, tokens: u64) {
        let mut fields = vec![
            ("type", Json::from(name)),
            ("sequence_number", Json::Num(self.next)),
        ];
        fields.extend(rest);
        self.next += 1;
        self.events
            .push_generated(stream::named(name, &Json::Obj(fields).to_vec()), tokens);
    }
}

fn stream_response(
    ctx: &Ctx<'_>,
    ids: &Ids,
    created: u64,
    opts: &Options<'_>,
    plan: &Plan,
    status: &str,
    final_response: Json,
) -> Response<Body> {
    let mut s = Seq {
        events: Events::new(),
        next: 0,
    };
    let pending = || response(ids, created, opts, "in_progress", Vec::new(), None);
    s.push("response.created", vec![("response", pending())], 0);
    s.push("response.in_progress", vec![("response", pending())], 0);
    let mut index = 0u64;
    if let Some(thinking) = &plan.thinking {
        let item_id = || Json::from(ids.reasoning.as_str());
        s.push(
            "response.output_item.added",
            vec![
                ("output_index", Json::Num(index)),
                ("item", reasoning_item(ids, plan, opts, false)),
            ],
            0,
        );
        if opts.summary {
            let part = |text: &str| obj! {"type": "summary_text", "text": text};
            let at = |s: &mut Seq, name, extra: (&'static str, Json), tokens| {
                s.push(
                    name,
                    vec![
                        ("item_id", item_id()),
                        ("output_index", Json::Num(index)),
                        ("summary_index", Json::Num(0)),
                        extra,
                    ],
                    tokens,
                );
            };
            at(
                &mut s,
                "response.reasoning_summary_part.added",
                ("part", part("")),
                0,
            );
            for piece in word_pieces(thinking) {
                at(
                    &mut s,
                    "response.reasoning_summary_text.delta",
                    ("delta", Json::from(piece)),
                    1,
                );
            }
            at(
                &mut s,
                "response.reasoning_summary_text.done",
                ("text", Json::from(thinking.as_str())),
                0,
            );
            at(
                &mut s,
                "response.reasoning_summary_part.done",
                ("part", part(thinking)),
                0,
            );
        }
        // Hidden reasoning still takes its time.
        let hidden = if opts.summary {
            0
        } else {
            word_ends(thinking).len() as u64
        };
        s.push(
            "response.output_item.done",
            vec![
                ("output_index", Json::Num(index)),
                ("item", reasoning_item(ids, plan, opts, true)),
            ],
            hidden,
        );
        index += 1;
    }
    if plan.calls.is_empty() {
        let item_id = || Json::from(ids.message.as_str());
        let place = |extra: Vec<(&'static str, Json)>| {
            let mut v = vec![
                ("item_id", item_id()),
                ("output_index", Json::Num(index)),
                ("content_index", Json::Num(0)),
            ];
            v.extend(extra);
            v
        };
        s.push(
            "response.output_item.added",
            vec![
                ("output_index", Json::Num(index)),
                ("item", message_item(ids, None, "in_progress")),
            ],
            0,
        );
        s.push(
            "response.content_part.added",
            place(vec![("part", text_part(""))]),
            0,
        );
        for piece in word_pieces(&plan.text) {
            s.push(
                "response.output_text.delta",
                place(vec![
                    ("delta", Json::from(piece)),
                    ("logprobs", Json::Arr(Vec::new())),
                ]),
                1,
            );
        }
        s.push(
            "response.output_text.done",
            place(vec![
                ("text", Json::from(plan.text.as_str())),
                ("logprobs", Json::Arr(Vec::new())),
            ]),
            0,
        );
        s.push(
            "response.content_part.done",
            place(vec![("part", text_part(&plan.text))]),
            0,
        );
        s.push(
            "response.output_item.done",
            vec![
                ("output_index", Json::Num(index)),
                ("item", message_item(ids, Some(&plan.text), "completed")),
            ],
            0,
        );
    }
    for (i, call) in plan.calls.iter().enumerate() {
        let (item_id, _) = ids.call(i);
        s.push(
            "response.output_item.added",
            vec![
                ("output_index", Json::Num(index)),
                ("item", call_item(ids, i, &call.name, "", "in_progress")),
            ],
            0,
        );
        for piece in arg_pieces(&call.arguments) {
            s.push(
                "response.function_call_arguments.delta",
                vec![
                    ("item_id", Json::from(item_id.as_str())),
                    ("output_index", Json::Num(index)),
                    ("delta", Json::from(piece)),
                ],
                tokens_for_chars(piece.chars().count()),
            );
        }
        s.push(
            "response.function_call_arguments.done",
            vec![
                ("item_id", Json::from(item_id.as_str())),
                ("output_index", Json::Num(index)),
                ("arguments", Json::from(call.arguments.as_str())),
            ],
            0,
        );
        s.push(
            "response.output_item.done",
            vec![
                ("output_index", Json::Num(index)),
                (
                    "item",
                    call_item(ids, i, &call.name, &call.arguments, "completed"),
                ),
            ],
            0,
        );
        index += 1;
    }
    let last = if status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    s.push(last, vec![("response", final_response)], 0);
    s.events
        .into_response(ctx, "text/event-stream; charset=utf-8", |kept| {
            let err = ApiError::server_error();
            let v = obj! {
                "type": "error",
                "sequence_number": kept as u64,
                "code": "server_error",
                "message": err.message,
                "param": Json::Null,
            };
            vec![stream::named("error", &v.to_vec())]
        })
}

/// `GET /v1/responses/{id}`.
pub(crate) fn get(shared: &Shared, id: &str) -> Result<Response<Body>, ApiError> {
    match shared.stored.response(id) {
        Some(bytes) => Ok(body::json(StatusCode::OK, bytes)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Response with id '{id}' not found."),
            "invalid_request_error",
            None,
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_calls_and_outputs() {
        let ok = vec![
            json!({"role": "user", "content": "weather"}),
            json!({"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "call_1", "output": "sunny"}),
        ];
        assert!(check_items(&ok, 0).is_ok());
        let stray =
            vec![json!({"type": "function_call_output", "call_id": "call_9", "output": "x"})];
        let err = check_items(&stray, 0).err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("No tool call found for function call output with call_id call_9.")
        );
        let open = vec![
            json!({"type": "function_call", "call_id": "call_2", "name": "w", "arguments": "{}"}),
            json!({"role": "user", "content": "and?"}),
        ];
        let err = check_items(&open, 0).err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("No tool output found for function call call_2.")
        );
        let robot = vec![json!({"role": "robot", "content": "x"})];
        assert_eq!(
            check_items(&robot, 0)
                .err()
                .and_then(|e| e.param)
                .as_deref(),
            Some("input[0].role")
        );
    }

    #[test]
    fn counts_messages_and_outputs() {
        let v = json!({
            "instructions": "abcd",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
                {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{\"long\":\"ignored\"}"},
                {"type": "function_call_output", "call_id": "c", "output": "abcd"},
            ],
        });
        assert_eq!(input_tokens_of(&v), 3);
    }
}
