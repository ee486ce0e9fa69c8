//! Anthropic Messages API (`2023-06-01`) <-> canonical IR.
//!
//! Anthropic is both an upstream (OpenAI-style clients -> Claude) and an
//! ingress (Claude Code, the Anthropic SDKs -> any upstream), so every
//! direction is here. The choices below are the ones Anthropic's validation
//! forces on a request built from another format:
//!
//! - **System**: all IR system parts go to top-level `system` in order,
//!   `cache_control` kept. IR mid-conversation system messages become user
//!   text (only the newest API revisions accept `role: "system"` messages).
//! - **Turns** strictly alternate: consecutive same-role messages are merged;
//!   IR tool messages become user turns whose `tool_result` blocks come first;
//!   empty text blocks are dropped (Anthropic rejects them) and trailing
//!   whitespace is trimmed from a final assistant (prefill) turn.
//! - **Tool call ids** are restricted to `[A-Za-z0-9_-]` in requests (other
//!   characters become `_`, identically for the call and its result).
//! - **Reasoning**: parts with a signature become `thinking` blocks and
//!   redacted reasoning `redacted_thinking`, on assistant turns only; unsigned
//!   reasoning (from other vendors) cannot be verified by Anthropic and is
//!   dropped. See [`default_max_tokens`] and the "Thinking" notes below for
//!   how `reasoning` maps to `thinking` / `output_config.effort`.
//! - **Sampling**: `temperature` is clamped to Anthropic's 0..=1. With
//!   thinking on, Anthropic accepts `temperature` only at its default 1 (what
//!   Claude Code sends), no `top_k`, and `top_p` only within 0.95..=1, so
//!   anything else is dropped; models from Claude Opus 4.7 on reject all
//!   three, so they are dropped there. `seed`, penalties and `n == 1` have no
//!   Anthropic equivalent and are ignored; `n > 1` is
//!   [`ConvertError::Unsupported`]. Whitespace-only stop sequences (which
//!   Anthropic rejects) are dropped.
//! - **Response format**: a JSON schema becomes the native structured-output
//!   `output_config.format` (`name`/`strict` have no slot there: schemas are
//!   always enforced). `json_object` has no native form, so an instruction to
//!   answer with one JSON object is appended to `system` rather than dropped.
//! - `tool_choice` is only sent with tools (Anthropic rejects it otherwise);
//!   `parallel_tool_calls: false` becomes `disable_parallel_tool_use: true`.
//!
//! Thinking (IR `reasoning` -> Anthropic), by model generation:
//! - `enabled: false` (or effort `none`, or a zero budget) omits `thinking`
//!   (off by default on every model that accepts turning it off).
//! - Budget models (Claude 3.7 Sonnet through the 4.5 family, and unknown
//!   models) get `{"type":"enabled","budget_tokens":N}` with N = the IR budget
//!   or, from an effort, `minimal`/`low` 1024, `medium` 8192, `high` 24576,
//!   `xhigh` 32768, `max` 65536; N is at least 1024 (Anthropic's minimum),
//!   and `max_tokens` is raised to N + the requested `max_tokens` when it
//!   does not exceed N, capped at the model's output limit (N then shrinks to
//!   3/4 of that limit).
//! - Claude 4.6 models take a budget when the IR has one, else
//!   `{"type":"adaptive"}` plus `output_config.effort`.
//! - Claude Opus 4.7 and later, Mythos/Fable and 5.x only accept adaptive
//!   thinking: `{"type":"adaptive"}` plus the effort (a budget is turned into
//!   the nearest effort level at or below it).
//! - Forced tool use (`any` / named tool) cannot be combined with thinking,
//!   so thinking is omitted then; models without extended thinking (Claude
//!   3 / 3.5) never get it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use crate::body::write_json_string;
use crate::convert::{ConvertError, DecodeStream, EncodeStream};
use crate::ir::{
    self, ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource,
    Message, Part, Reasoning, ResponseFormat, Role, StreamEvent, ToolChoice, Usage,
};
use crate::sse::SseEvent;
use crate::wire::anthropic as wire;
use crate::wire::anthropic::{BlockDelta, ContentBlock, MessageContent};

// ---------------------------------------------------------------------------
// Model traits
// ---------------------------------------------------------------------------

/// Anthropic's minimum `thinking.budget_tokens`.
pub(crate) const MIN_THINKING_BUDGET: u64 = 1024;
/// Budget when thinking is asked for without a budget or effort.
pub(crate) const DEFAULT_THINKING_BUDGET: u64 = 8192;
/// `max_tokens` for models this module does not recognise.
const UNKNOWN_MODEL_MAX_TOKENS: u64 = 8192;
/// `extra` key holding the original `tools` order with server tools inline
/// (custom tools by name), so an Anthropic round trip keeps both.
const EXTRA_TOOLS: &str = "tools";
/// `extra` key holding `output_config` fields the IR has no slot for.
const EXTRA_OUTPUT_CONFIG: &str = "output_config";
/// Appended to `system` for IR `json_object` responses.
const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object only, with no text before or after it.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkingSupport {
    /// Claude 3 / 3.5: no extended thinking.
    None,
    /// `{"type":"enabled","budget_tokens":N}` only.
    Budget,
    /// Both manual budgets and `adaptive` (Claude 4.6).
    BudgetOrAdaptive,
    /// `adaptive` only; `enabled`/`disabled` are rejected.
    AdaptiveOnly,
}

#[derive(Debug, Clone, Copy)]
struct ModelTraits {
    /// Largest accepted `max_tokens`.
    max_output: u64,
    /// Whether `max_output` is the documented limit (else a default).
    known: bool,
    thinking: ThinkingSupport,
    /// Which `output_config.effort` levels the model accepts.
    effort_levels: EffortLevels,
    /// Accepts `temperature` / `top_p` / `top_k`.
    sampling: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EffortLevels {
    None,
    /// `low`/`medium`/`high` (Claude Opus 4.5).
    UpToHigh,
    /// Plus `max` (Claude 4.6).
    WithMax,
    /// Plus `xhigh` (Claude Opus 4.7 and later).
    All,
}

impl ModelTraits {
    const UNKNOWN: ModelTraits = ModelTraits {
        max_output: UNKNOWN_MODEL_MAX_TOKENS,
        known: false,
        thinking: ThinkingSupport::Budget,
        effort_levels: EffortLevels::None,
        sampling: true,
    };

    fn of(model: &str) -> ModelTraits {
        let lower = model.to_ascii_lowercase();
        let Some(at) = lower.find("claude") else {
            return ModelTraits::UNKNOWN;
        };
        let (family, version) = parse_claude_name(lower.get(at + "claude".len()..).unwrap_or(""));
        let traits = |max_output, thinking, effort_levels, sampling| ModelTraits {
            max_output,
            known: true,
            thinking,
            effort_levels,
            sampling,
        };
        use EffortLevels as E;
        use ThinkingSupport as T;
        let adaptive_only = traits(128_000, T::AdaptiveOnly, E::All, false);
        if matches!(family, Some("mythos" | "fable")) {
            return adaptive_only;
        }
        let Some((major, minor)) = version else {
            return ModelTraits::UNKNOWN;
        };
        match (major, minor, family) {
            (5.., _, _) | (4, 7.., _) => adaptive_only,
            (4, 6, _) => traits(128_000, T::BudgetOrAdaptive, E::WithMax, true),
            (4, 5, Some("opus")) => traits(64_000, T::Budget, E::UpToHigh, true),
            (4, 5, _) => traits(64_000, T::Budget, E::None, true),
            (4, _, Some("opus")) => traits(32_000, T::Budget, E::None, true),
            (4, _, _) => traits(64_000, T::Budget, E::None, true),
            (3, 7.., _) => traits(64_000, T::Budget, E::None, true),
            (3, 5..=6, _) => traits(8_192, T::None, E::None, true),
            _ => traits(4_096, T::None, E::None, true),
        }
    }
}

/// Family word and `(major, minor)` from what follows `claude` in a model
/// name, in any of the spellings in use: `-3-5-sonnet-20241022`,
/// `-sonnet-4-5@20250929`, `.claude-opus-4-1-20250805-v1:0`, `-sonnet-4.6`.
fn parse_claude_name(rest: &str) -> (Option<&str>, Option<(u32, u32)>) {
    let mut family = None;
    let mut numbers: Vec<u32> = Vec::with_capacity(2);
    let mut closed = false;
    for token in rest.split(|c: char| !c.is_ascii_alphanumeric()) {
        if token.is_empty() {
            continue;
        }
        if matches!(
            token,
            "opus" | "sonnet" | "haiku" | "mythos" | "fable" | "instant"
        ) {
            family = Some(token);
            closed |= !numbers.is_empty();
            continue;
        }
        let short_number = token.len() <= 2 && token.bytes().all(|b| b.is_ascii_digit());
        match token.parse::<u32>() {
            Ok(n) if short_number && !closed && numbers.len() < 2 => numbers.push(n),
            _ => closed |= !numbers.is_empty(),
        }
    }
    let version = match numbers.as_slice() {
        [] => None,
        [major] => Some((*major, 0)),
        [major, minor, ..] => Some((*major, *minor)),
    };
    (family, version)
}

/// `max_tokens` to send when the client gave none: the model's documented
/// output limit, since Anthropic requires the field and OpenAI-style clients
/// expect "no limit" by default. Claude 3: 4096; Claude 3.5: 8192; Claude 3.7
/// Sonnet, Sonnet 4 / 4.5, Haiku 4.5, Opus 4.5: 64000; Opus 4 / 4.1: 32000;
/// Claude 4.6 and later (and Mythos/Fable): 128000; unrecognised models:
/// 8192. (On Claude models before Sonnet 4.5, a prompt plus `max_tokens`
/// beyond the context window is rejected; callers with huge prompts there
/// should send `max_tokens`.)
pub fn default_max_tokens(model: &str) -> u64 {
    ModelTraits::of(model).max_output
}

/// Anthropic effort level for an IR (OpenAI-vocabulary) effort, clamped to
/// what the model accepts.
fn effort_level(effort: &str, levels: EffortLevels) -> Option<&'static str> {
    let wanted = match effort {
        "minimal" | "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "xhigh" => "xhigh",
        "max" => "max",
        _ => return None,
    };
    match (levels, wanted) {
        (EffortLevels::None, _) => None,
        (EffortLevels::UpToHigh, "xhigh" | "max") | (EffortLevels::WithMax, "xhigh") => {
            Some("high")
        }
        (_, level) => Some(level),
    }
}

/// Thinking budget standing in for an effort level on budget-only models.
pub(crate) fn effort_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24_576),
        "xhigh" => Some(32_768),
        "max" => Some(65_536),
        _ => None,
    }
}

/// The highest effort level whose budget ([`effort_budget`]) is at most
/// `budget` (`low` below that), for adaptive-only models.
fn budget_effort(budget: u64) -> &'static str {
    match budget {
        0..8192 => "low",
        8192..24_576 => "medium",
        24_576..32_768 => "high",
        32_768..65_536 => "xhigh",
        _ => "max",
    }
}

// ---------------------------------------------------------------------------
// Request: Anthropic -> IR
// ---------------------------------------------------------------------------

/// Reads a Messages (or count-tokens) request body. Content the IR cannot
/// carry to another format (server-tool blocks, Files API ids, search
/// results) is [`ConvertError::Unsupported`] rather than silently lost;
/// server tool *definitions* are kept in `extra` for an Anthropic upstream.
pub fn request_to_ir(body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let req: wire::MessagesRequest = super::parse_json(body)?;
    let mut extra = req.extra;
    let stream = req.stream.unwrap_or(false);
    let mut out = ChatRequest {
        model: req.model,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.unwrap_or_default(),
        stream,
        // Anthropic streams always carry usage; ask other upstreams for it.
        include_usage: stream,
        user: req.metadata.and_then(|m| m.user_id),
        extra_format: Some(Format::Anthropic),
        ..ChatRequest::default()
    };

    match req.system {
        None => {}
        Some(wire::SystemPrompt::Text(text)) => out.system.push(Part::text(text)),
        Some(wire::SystemPrompt::Blocks(blocks)) => {
            out.system.extend(
                blocks
                    .into_iter()
                    .map(|wire::SystemBlock::Text(t)| text_part(t)),
            );
        }
    }

    let mut tool_names: Vec<(String, String)> = Vec::new();
    for (i, message) in req.messages.into_iter().enumerate() {
        push_message(
            message,
            &format!("messages[{i}]"),
            &mut out.messages,
            &mut tool_names,
        )?;
    }

    if let Some(tools) = req.tools {
        let mut layout = Vec::with_capacity(tools.len());
        let mut has_server_tools = false;
        for tool in tools {
            match tool {
                wire::Tool::Custom(t) => {
                    layout.push(Value::String(t.name.clone()));
                    out.tools.push(ir::Tool {
                        name: t.name,
                        description: t.description,
                        parameters: t.input_schema,
                        strict: t.strict,
                        cache_control: t.cache_control,
                    });
                }
                wire::Tool::Server(v) => {
                    has_server_tools = true;
                    layout.push(v);
                }
            }
        }
        if has_server_tools {
            extra.insert(EXTRA_TOOLS.to_owned(), Value::Array(layout));
        }
    }

    if let Some(choice) = req.tool_choice {
        let (choice, disable_parallel) = match choice {
            wire::ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (ToolChoice::Auto, disable_parallel_tool_use),
            wire::ToolChoice::Any {
                disable_parallel_tool_use,
            } => (ToolChoice::Required, disable_parallel_tool_use),
            wire::ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (ToolChoice::Named(name), disable_parallel_tool_use),
            wire::ToolChoice::None => (ToolChoice::None, None),
        };
        out.tool_choice = Some(choice);
        if disable_parallel == Some(true) {
            out.parallel_tool_calls = Some(false);
        }
    }

    if let Some(thinking) = req.thinking {
        let mut r = Reasoning::default();
        match thinking.r#type.as_str() {
            "enabled" => {
                r.enabled = Some(true);
                r.budget_tokens = thinking.budget_tokens;
            }
            "adaptive" => r.enabled = Some(true),
            // `between_tools` is thinking off with progress notes.
            "disabled" | "between_tools" => r.enabled = Some(false),
            _ => {}
        }
        r.include_thoughts = thinking.display.map(|d| d != "omitted");
        out.reasoning = Some(r);
    }

    if let Some(config) = req.output_config {
        if let Some(effort) = config.effort {
            out.reasoning.get_or_insert_with(Reasoning::default).effort = Some(effort);
        }
        if let Some(format) = config.format
            && format.r#type == "json_schema"
        {
            out.response_format = Some(ResponseFormat::JsonSchema {
                // Anthropic schemas are unnamed and always enforced.
                name: "response".to_owned(),
                schema: format.schema.unwrap_or_else(|| Value::Object(Map::new())),
                strict: Some(true),
            });
        }
        if !config.extra.is_empty() {
            extra.insert(EXTRA_OUTPUT_CONFIG.to_owned(), Value::Object(config.extra));
        }
    }

    out.extra = extra;
    Ok(out)
}

fn text_part(block: wire::TextBlock) -> Part {
    Part::Text {
        text: block.text,
        cache_control: block.cache_control,
    }
}

/// Appends the IR message(s) for one Anthropic message: a user message with
/// `tool_result` blocks splits into tool messages (the results) and user
/// messages (everything else), in order.
fn push_message(
    message: wire::MessageParam,
    path: &str,
    out: &mut Vec<Message>,
    tool_names: &mut Vec<(String, String)>,
) -> Result<(), ConvertError> {
    let role = match message.role {
        wire::Role::User => Role::User,
        wire::Role::Assistant => Role::Assistant,
        wire::Role::System => Role::System,
    };
    let blocks = match message.content {
        MessageContent::Text(text) => {
            out.push(Message::text(role, text));
            return Ok(());
        }
        MessageContent::Blocks(blocks) if blocks.is_empty() => {
            out.push(Message {
                role,
                content: Vec::new(),
                name: None,
            });
            return Ok(());
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut current = Message {
        role,
        content: Vec::new(),
        name: None,
    };
    for (j, block) in blocks.into_iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        let part_role = match &block {
            ContentBlock::ToolResult(_) if role == Role::User => Role::Tool,
            ContentBlock::ToolResult(_) => {
                return Err(ConvertError::invalid(
                    block_path,
                    "tool_result blocks belong in user messages",
                ));
            }
            ContentBlock::ToolUse(t) => {
                tool_names.push((t.id.clone(), t.name.clone()));
                role
            }
            _ => role,
        };
        if part_role != current.role {
            if !current.content.is_empty() {
                out.push(current);
            }
            current = Message {
                role: part_role,
                content: Vec::new(),
                name: None,
            };
        }
        push_block(block, &block_path, &mut current.content, tool_names)?;
    }
    if !current.content.is_empty() {
        out.push(current);
    }
    Ok(())
}

/// Converts one content block into IR parts (a `content` document can hold
/// several).
fn push_block(
    block: ContentBlock,
    path: &str,
    out: &mut Vec<Part>,
    tool_names: &[(String, String)],
) -> Result<(), ConvertError> {
    match block {
        ContentBlock::Text(t) => out.push(text_part(t)),
        ContentBlock::Image(img) => out.push(Part::Image {
            source: image_source(img.source, path)?,
            detail: None,
            cache_control: img.cache_control,
        }),
        ContentBlock::Document(doc) => push_document(doc, path, out)?,
        ContentBlock::ToolUse(t) => out.push(Part::ToolCall {
            id: t.id,
            name: t.name,
            arguments: t.input.to_string(),
            signature: None,
        }),
        ContentBlock::ToolResult(r) => {
            let mut content = Vec::new();
            match r.content {
                None => {}
                Some(MessageContent::Text(text)) => content.push(Part::text(text)),
                Some(MessageContent::Blocks(blocks)) => {
                    for (k, b) in blocks.into_iter().enumerate() {
                        let inner = format!("{path}.content[{k}]");
                        match b {
                            ContentBlock::Text(_)
                            | ContentBlock::Image(_)
                            | ContentBlock::Document(_) => {
                                push_block(b, &inner, &mut content, tool_names)?;
                            }
                            other => return Err(unsupported_block(&other)),
                        }
                    }
                }
            }
            let name = tool_names
                .iter()
                .rev()
                .find(|(id, _)| *id == r.tool_use_id)
                .map(|(_, name)| name.clone());
            out.push(Part::ToolResult {
                call_id: r.tool_use_id,
                name,
                content,
                is_error: r.is_error,
                cache_control: r.cache_control,
            });
        }
        ContentBlock::Thinking(t) => out.push(Part::Reasoning {
            text: t.thinking,
            signature: Some(t.signature).filter(|s| !s.is_empty()),
        }),
        ContentBlock::RedactedThinking(r) => out.push(Part::RedactedReasoning { data: r.data }),
        other @ ContentBlock::Other(_) => return Err(unsupported_block(&other)),
    }
    Ok(())
}

fn unsupported_block(block: &ContentBlock) -> ConvertError {
    ConvertError::Unsupported(format!("content block type `{}`", block.type_name()))
}

fn image_source(source: wire::ImageSource, path: &str) -> Result<MediaSource, ConvertError> {
    match source {
        wire::ImageSource::Base64 { media_type, data } => {
            Ok(MediaSource::Base64 { media_type, data })
        }
        wire::ImageSource::Url { url } => Ok(MediaSource::Url { url }),
        wire::ImageSource::File { .. } => Err(ConvertError::Unsupported(format!(
            "{path}: image source `file` (Files API id)"
        ))),
    }
}

/// PDFs become file parts; plain-text and custom-content documents become
/// their text (and images), which every format can carry.
fn push_document(
    doc: wire::DocumentBlock,
    path: &str,
    out: &mut Vec<Part>,
) -> Result<(), ConvertError> {
    let file = |source| Part::File {
        source,
        filename: doc.title.clone(),
        cache_control: doc.cache_control.clone(),
    };
    match doc.source {
        wire::DocumentSource::Base64 { media_type, data } => {
            out.push(file(MediaSource::Base64 { media_type, data }));
        }
        wire::DocumentSource::Url { url } => out.push(file(MediaSource::Url { url })),
        wire::DocumentSource::Text { data, .. } => out.push(Part::Text {
            text: data,
            cache_control: doc.cache_control,
        }),
        wire::DocumentSource::Content { content } => match content {
            MessageContent::Text(text) => out.push(Part::Text {
                text,
                cache_control: doc.cache_control,
            }),
            MessageContent::Blocks(blocks) => {
                for (k, b) in blocks.into_iter().enumerate() {
                    let inner = format!("{path}.source.content[{k}]");
                    match b {
                        ContentBlock::Text(t) => out.push(text_part(t)),
                        ContentBlock::Image(img) => out.push(Part::Image {
                            source: image_source(img.source, &inner)?,
                            detail: None,
                            cache_control: img.cache_control,
                        }),
                        other => return Err(unsupported_block(&other)),
                    }
                }
            }
        },
        wire::DocumentSource::File { .. } => {
            return Err(ConvertError::Unsupported(format!(
                "{path}: document source `file` (Files API id)"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Request: IR -> Anthropic
// ---------------------------------------------------------------------------

/// Builds a Messages request body Anthropic accepts (see the module docs for
/// every adjustment made on the way).
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::Unsupported("n > 1 (several choices)".into()));
    }
    let traits = ModelTraits::of(&req.model);
    let own_extra = req.extra_format == Some(Format::Anthropic);

    let mut system = Vec::with_capacity(req.system.len() + 1);
    for (i, part) in req.system.iter().enumerate() {
        match part {
            Part::Text { text, .. } if text.is_empty() => {}
            Part::Text {
                text,
                cache_control,
            } => system.push(wire::TextBlock {
                text: text.clone(),
                cache_control: cache_control.clone(),
                extra: Map::new(),
            }),
            _ => {
                return Err(ConvertError::Unsupported(format!(
                    "system[{i}]: non-text system content"
                )));
            }
        }
    }
    if req.response_format == Some(ResponseFormat::JsonObject) {
        system.push(wire::TextBlock::new(JSON_OBJECT_INSTRUCTION));
    }

    let messages = build_turns(&req.messages)?;

    let mut tools: Vec<wire::Tool> = Vec::with_capacity(req.tools.len());
    let mut custom: Vec<Option<wire::Tool>> = req
        .tools
        .iter()
        .map(|t| Some(wire::Tool::Custom(custom_tool(t))))
        .collect();
    if own_extra && let Some(Value::Array(layout)) = req.extra.get(EXTRA_TOOLS) {
        for item in layout {
            match item {
                Value::String(name) => {
                    let slot = req
                        .tools
                        .iter()
                        .zip(custom.iter_mut())
                        .find(|(t, slot)| t.name == *name && slot.is_some())
                        .and_then(|(_, slot)| slot.take());
                    tools.extend(slot);
                }
                other => tools.push(wire::Tool::Server(other.clone())),
            }
        }
    }
    tools.extend(custom.into_iter().flatten());

    let forced_tool = !tools.is_empty()
        && matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Named(_))
        );
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = if tools.is_empty() {
        None
    } else {
        match &req.tool_choice {
            Some(ToolChoice::None) => Some(wire::ToolChoice::None),
            Some(ToolChoice::Auto) => Some(wire::ToolChoice::Auto {
                disable_parallel_tool_use: disable_parallel,
            }),
            Some(ToolChoice::Required) => Some(wire::ToolChoice::Any {
                disable_parallel_tool_use: disable_parallel,
            }),
            Some(ToolChoice::Named(name)) => Some(wire::ToolChoice::Tool {
                name: name.clone(),
                disable_parallel_tool_use: disable_parallel,
            }),
            None => disable_parallel.map(|d| wire::ToolChoice::Auto {
                disable_parallel_tool_use: Some(d),
            }),
        }
    };

    let requested_max = req.max_tokens.map(|m| {
        if traits.known {
            m.min(traits.max_output)
        } else {
            m
        }
    });
    let mut max_tokens = requested_max.unwrap_or(traits.max_output);
    let plan = plan_thinking(req.reasoning.as_ref(), traits, forced_tool);
    let thinking = match plan.thinking {
        PlannedThinking::Off => None,
        PlannedThinking::Adaptive => Some(wire::ThinkingConfig::adaptive()),
        PlannedThinking::Budget(budget) => {
            let mut budget = budget.max(MIN_THINKING_BUDGET);
            if max_tokens <= budget {
                max_tokens = budget.saturating_add(max_tokens);
            }
            if traits.known && max_tokens > traits.max_output {
                max_tokens = traits.max_output;
            }
            if budget >= max_tokens {
                budget = (max_tokens - max_tokens / 4).max(MIN_THINKING_BUDGET);
            }
            Some(wire::ThinkingConfig::enabled(budget))
        }
    };
    let thinking = thinking.map(|mut t| {
        let shows_display = matches!(
            traits.thinking,
            ThinkingSupport::BudgetOrAdaptive | ThinkingSupport::AdaptiveOnly
        );
        if shows_display && let Some(r) = &req.reasoning {
            t.display = r
                .include_thoughts
                .map(|show| if show { "summarized" } else { "omitted" }.to_owned());
        }
        t
    });

    let thinking_on = thinking.is_some();
    let (temperature, top_p, top_k) = if !traits.sampling {
        (None, None, None)
    } else if thinking_on {
        (
            req.temperature.filter(|t| *t == 1.0),
            req.top_p.filter(|p| (0.95..=1.0).contains(p)),
            None,
        )
    } else {
        (
            req.temperature.map(|t| t.clamp(0.0, 1.0)),
            req.top_p,
            req.top_k,
        )
    };

    let stop: Vec<String> = req
        .stop
        .iter()
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .collect();

    let mut output_config = wire::OutputConfig {
        effort: plan.effort.map(str::to_owned),
        ..wire::OutputConfig::default()
    };
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &req.response_format {
        output_config.format = Some(wire::OutputFormat {
            r#type: "json_schema".to_owned(),
            schema: Some(schema.clone()),
            extra: Map::new(),
        });
    }
    let mut extra = Map::new();
    if own_extra {
        for (key, value) in &req.extra {
            match (key.as_str(), value) {
                (EXTRA_TOOLS, _) => {}
                (EXTRA_OUTPUT_CONFIG, Value::Object(fields)) => {
                    output_config.extra.extend(fields.clone());
                }
                _ => {
                    extra.insert(key.clone(), value.clone());
                }
            }
        }
    }

    let body = wire::MessagesRequest {
        model: req.model.clone(),
        messages,
        max_tokens: Some(max_tokens),
        system: system_prompt(system),
        metadata: req.user.as_ref().map(|user| wire::Metadata {
            user_id: Some(user.clone()),
            extra: Map::new(),
        }),
        stop_sequences: (!stop.is_empty()).then_some(stop),
        stream: req.stream.then_some(true),
        temperature,
        top_p,
        top_k,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        output_config: (!output_config.is_empty()).then_some(output_config),
        extra,
    };
    Ok(serde_json::to_vec(&body)?)
}

/// One plain text block is sent in the string form.
fn system_prompt(mut blocks: Vec<wire::TextBlock>) -> Option<wire::SystemPrompt> {
    match blocks.as_mut_slice() {
        [] => None,
        [only] if only.cache_control.is_none() && only.extra.is_empty() => {
            Some(wire::SystemPrompt::Text(std::mem::take(&mut only.text)))
        }
        _ => Some(wire::SystemPrompt::Blocks(
            blocks.into_iter().map(wire::SystemBlock::Text).collect(),
        )),
    }
}

fn custom_tool(tool: &ir::Tool) -> wire::CustomTool {
    // Anthropic requires an object schema with `"type": "object"`.
    let input_schema = match &tool.parameters {
        Value::Object(schema) => {
            let mut schema = schema.clone();
            schema
                .entry("type")
                .or_insert_with(|| Value::String("object".to_owned()));
            Value::Object(schema)
        }
        _ => serde_json::json!({"type": "object"}),
    };
    wire::CustomTool {
        r#type: None,
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema,
        strict: tool.strict,
        cache_control: tool.cache_control.clone(),
        extra: Map::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlannedThinking {
    Off,
    Adaptive,
    Budget(u64),
}

struct ThinkingPlan {
    thinking: PlannedThinking,
    effort: Option<&'static str>,
}

/// Decides `thinking` and `output_config.effort` (see the module docs).
fn plan_thinking(r: Option<&Reasoning>, traits: ModelTraits, forced_tool: bool) -> ThinkingPlan {
    let off = ThinkingPlan {
        thinking: PlannedThinking::Off,
        effort: None,
    };
    let Some(r) = r else { return off };
    let effort = r.effort.as_deref().filter(|e| *e != "none");
    let disabled = r.enabled == Some(false)
        || r.effort.as_deref() == Some("none")
        || r.budget_tokens == Some(0);
    let wanted =
        !disabled && (r.enabled == Some(true) || r.budget_tokens.is_some() || effort.is_some());
    let effort_param = |e: Option<&str>| e.and_then(|e| effort_level(e, traits.effort_levels));
    if !wanted || forced_tool {
        // Effort also governs non-thinking output on models that take it.
        return ThinkingPlan {
            thinking: PlannedThinking::Off,
            effort: effort_param(effort),
        };
    }
    match traits.thinking {
        ThinkingSupport::None => off,
        ThinkingSupport::AdaptiveOnly => ThinkingPlan {
            thinking: PlannedThinking::Adaptive,
            effort: effort_param(effort.or(r.budget_tokens.map(budget_effort))),
        },
        ThinkingSupport::BudgetOrAdaptive => match r.budget_tokens {
            Some(budget) => ThinkingPlan {
                thinking: PlannedThinking::Budget(budget),
                effort: effort_param(effort),
            },
            None => ThinkingPlan {
                thinking: PlannedThinking::Adaptive,
                effort: effort_param(effort),
            },
        },
        ThinkingSupport::Budget => ThinkingPlan {
            thinking: PlannedThinking::Budget(
                r.budget_tokens
                    .or(effort.and_then(effort_budget))
                    .unwrap_or(DEFAULT_THINKING_BUDGET),
            ),
            effort: effort_param(effort),
        },
    }
}

/// Merges the IR conversation into strictly alternating user/assistant
/// turns.
fn build_turns(messages: &[Message]) -> Result<Vec<wire::MessageParam>, ConvertError> {
    let mut turns: Vec<(wire::Role, Vec<ContentBlock>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = match message.role {
            Role::Assistant => wire::Role::Assistant,
            Role::User | Role::System | Role::Tool => wire::Role::User,
        };
        let assistant = role == wire::Role::Assistant;
        let mut blocks = Vec::with_capacity(message.content.len());
        for (j, part) in message.content.iter().enumerate() {
            let path = format!("messages[{i}].content[{j}]");
            if let Some(block) = part_to_block(part, assistant, &path)? {
                blocks.push(block);
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    for (role, blocks) in &mut turns {
        if *role == wire::Role::User {
            // Results must directly follow the assistant's tool_use turn.
            let (mut results, rest): (Vec<_>, Vec<_>) = std::mem::take(blocks)
                .into_iter()
                .partition(|b| matches!(b, ContentBlock::ToolResult(_)));
            results.extend(rest);
            *blocks = results;
        }
    }
    // A prefill may not end with whitespace.
    if let Some((wire::Role::Assistant, blocks)) = turns.last_mut() {
        if let Some(ContentBlock::Text(t)) = blocks.last_mut() {
            let trimmed = t.text.trim_end().len();
            t.text.truncate(trimmed);
            if t.text.is_empty() {
                blocks.pop();
            }
        }
        if blocks.is_empty() {
            turns.pop();
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, blocks)| wire::MessageParam {
            role,
            content: compact_content(blocks),
            extra: Map::new(),
        })
        .collect())
}

/// A single plain text block is sent in the string form.
fn compact_content(mut blocks: Vec<ContentBlock>) -> MessageContent {
    if let [ContentBlock::Text(t)] = blocks.as_mut_slice()
        && t.cache_control.is_none()
        && t.extra.is_empty()
    {
        return MessageContent::Text(std::mem::take(&mut t.text));
    }
    MessageContent::Blocks(blocks)
}

fn part_to_block(
    part: &Part,
    assistant: bool,
    path: &str,
) -> Result<Option<ContentBlock>, ConvertError> {
    Ok(Some(match part {
        Part::Text { text, .. } if text.is_empty() => return Ok(None),
        Part::Text {
            text,
            cache_control,
        } => ContentBlock::Text(wire::TextBlock {
            text: text.clone(),
            cache_control: cache_control.clone(),
            extra: Map::new(),
        }),
        Part::Image {
            source,
            cache_control,
            ..
        } => ContentBlock::Image(image_block(source, cache_control)),
        Part::Audio { .. } => {
            return Err(ConvertError::Unsupported(format!("{path}: audio input")));
        }
        Part::File {
            source,
            filename,
            cache_control,
        } => ContentBlock::Document(document_block(source, filename, cache_control)),
        Part::ToolCall {
            id,
            name,
            arguments,
            ..
        } => ContentBlock::ToolUse(wire::ToolUseBlock {
            id: tool_id(id),
            name: name.clone(),
            input: arguments_object(arguments).ok_or_else(|| {
                ConvertError::invalid(path, "tool call arguments are not a JSON object")
            })?,
            cache_control: None,
            extra: Map::new(),
        }),
        Part::ToolResult {
            call_id,
            content,
            is_error,
            cache_control,
            ..
        } => {
            let mut blocks = Vec::with_capacity(content.len());
            for (k, p) in content.iter().enumerate() {
                let inner = format!("{path}.content[{k}]");
                match p {
                    Part::Text { .. } | Part::Image { .. } | Part::File { .. } => {
                        blocks.extend(part_to_block(p, false, &inner)?);
                    }
                    _ => {
                        return Err(ConvertError::Unsupported(format!(
                            "{inner}: tool result content other than text, images and documents"
                        )));
                    }
                }
            }
            ContentBlock::ToolResult(wire::ToolResultBlock {
                tool_use_id: tool_id(call_id),
                content: (!blocks.is_empty()).then(|| compact_content(blocks)),
                is_error: *is_error,
                cache_control: cache_control.clone(),
                extra: Map::new(),
            })
        }
        Part::Reasoning {
            text,
            signature: Some(signature),
        } if assistant && !signature.is_empty() => ContentBlock::Thinking(wire::ThinkingBlock {
            thinking: text.clone(),
            signature: signature.clone(),
            extra: Map::new(),
        }),
        Part::RedactedReasoning { data } if assistant => {
            ContentBlock::RedactedThinking(wire::RedactedThinkingBlock {
                data: data.clone(),
                extra: Map::new(),
            })
        }
        Part::Reasoning { .. } | Part::RedactedReasoning { .. } => return Ok(None),
    }))
}

fn image_block(source: &MediaSource, cache_control: &Option<Value>) -> wire::ImageBlock {
    wire::ImageBlock {
        source: match source {
            MediaSource::Base64 { media_type, data } => wire::ImageSource::Base64 {
                media_type: media_type.clone(),
                data: data.clone(),
            },
            MediaSource::Url { url } => wire::ImageSource::Url { url: url.clone() },
        },
        cache_control: cache_control.clone(),
        extra: Map::new(),
    }
}

/// Base64 text files become Anthropic plain-text documents (base64
/// documents must be PDFs); anything else is passed as given.
fn document_block(
    source: &MediaSource,
    filename: &Option<String>,
    cache_control: &Option<Value>,
) -> wire::DocumentBlock {
    let source = match source {
        MediaSource::Base64 { media_type, data } => {
            let text = media_type
                .starts_with("text/")
                .then(|| decode_base64(data))
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match text {
                Some(text) => wire::DocumentSource::Text {
                    media_type: "text/plain".to_owned(),
                    data: text,
                },
                None => wire::DocumentSource::Base64 {
                    media_type: media_type.clone(),
                    data: data.clone(),
                },
            }
        }
        MediaSource::Url { url } => wire::DocumentSource::Url { url: url.clone() },
    };
    wire::DocumentBlock {
        source,
        title: filename.clone(),
        cache_control: cache_control.clone(),
        extra: Map::new(),
    }
}

/// Standard base64 (padding optional); `None` on any other byte.
fn decode_base64(data: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in data.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The arguments object of a tool call; empty text means `{}`.
fn arguments_object(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Anthropic tool-use ids must match `^[a-zA-Z0-9_-]+$`.
fn tool_id(id: &str) -> String {
    if id.is_empty() {
        return "toolu_".to_owned();
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// Reads a `Message`. Server-tool blocks (`server_tool_use`,
/// `web_search_tool_result`, ...) have no IR form and are skipped; text
/// citations are not carried.
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let msg: wire::Message = serde_json::from_slice(body)?;
    let mut content = Vec::with_capacity(msg.content.len());
    for block in msg.content {
        match block {
            ContentBlock::Text(t) => content.push(Part::text(t.text)),
            ContentBlock::Thinking(t) => content.push(Part::Reasoning {
                text: t.thinking,
                signature: Some(t.signature).filter(|s| !s.is_empty()),
            }),
            ContentBlock::RedactedThinking(r) => {
                content.push(Part::RedactedReasoning { data: r.data });
            }
            ContentBlock::ToolUse(t) => content.push(Part::ToolCall {
                id: t.id,
                name: t.name,
                arguments: t.input.to_string(),
                signature: None,
            }),
            _ => {}
        }
    }
    let finish_reason = msg
        .stop_reason
        .as_deref()
        .map_or(FinishReason::Stop, finish_from_stop_reason);
    let refusal = if msg.stop_reason.as_deref() == Some("refusal") {
        msg.extra
            .get("stop_details")
            .and_then(|d| d.get("explanation"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        None
    };
    Ok(ChatResponse {
        id: msg.id,
        model: msg.model,
        created: 0,
        content,
        finish_reason,
        stop_sequence: msg.stop_sequence,
        usage: usage_to_ir(&msg.usage),
        refusal,
    })
}

/// Writes a `Message`. The id is kept when it is already a `msg_` id, else
/// `msg_` is prefixed (or a fresh id made when there is none). Tool call
/// arguments that are not a JSON object are sent as `{}`.
pub fn response_from_ir(resp: &ChatResponse) -> Vec<u8> {
    let mut content = Vec::with_capacity(resp.content.len() + 1);
    let mut has_tool_use = false;
    for part in &resp.content {
        match part {
            Part::Reasoning { text, signature } => {
                content.push(ContentBlock::Thinking(wire::ThinkingBlock {
                    thinking: text.clone(),
                    signature: signature.clone().unwrap_or_default(),
                    extra: Map::new(),
                }));
            }
            Part::RedactedReasoning { data } => {
                content.push(ContentBlock::RedactedThinking(
                    wire::RedactedThinkingBlock {
                        data: data.clone(),
                        extra: Map::new(),
                    },
                ));
            }
            Part::Text { text, .. } if !text.is_empty() => {
                content.push(ContentBlock::Text(wire::TextBlock::new(text.clone())));
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                has_tool_use = true;
                content.push(ContentBlock::ToolUse(wire::ToolUseBlock {
                    id: id.clone(),
                    name: name.clone(),
                    input: arguments_object(arguments).unwrap_or_else(|| Value::Object(Map::new())),
                    cache_control: None,
                    extra: Map::new(),
                }));
            }
            _ => {}
        }
    }
    if let Some(refusal) = resp.refusal.as_deref().filter(|r| !r.is_empty()) {
        content.push(ContentBlock::Text(wire::TextBlock::new(refusal)));
    }
    let reason = if resp.refusal.is_some() {
        FinishReason::ContentFilter
    } else {
        resp.finish_reason
    };
    let msg = wire::Message {
        id: message_id(&resp.id),
        model: resp.model.clone(),
        content,
        stop_reason: Some(
            stop_reason(reason, resp.stop_sequence.is_some(), has_tool_use).to_owned(),
        ),
        stop_sequence: resp.stop_sequence.clone(),
        usage: usage_from_ir(&resp.usage, resp.usage.output_tokens),
        ..wire::Message::default()
    };
    serde_json::to_vec(&msg).unwrap_or_default()
}

fn finish_from_stop_reason(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => FinishReason::Stop,
    }
}

/// A `stop` with tool calls present is `tool_use` (Gemini reports `STOP`
/// for function calls; Anthropic clients key their tool loop on it).
fn stop_reason(reason: FinishReason, has_stop_sequence: bool, has_tool_use: bool) -> &'static str {
    match reason {
        FinishReason::Stop if has_tool_use => "tool_use",
        FinishReason::Stop if has_stop_sequence => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

fn usage_to_ir(u: &wire::Usage) -> Usage {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        input_tokens: u.input_tokens.unwrap_or(0) + cache_read + cache_write,
        output_tokens: u.output_tokens,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: u
            .output_tokens_details
            .as_ref()
            .map_or(0, |d| d.thinking_tokens),
    }
}

fn usage_from_ir(u: &Usage, output_tokens: u64) -> wire::Usage {
    wire::Usage {
        input_tokens: Some(
            u.input_tokens
                .saturating_sub(u.cache_read_tokens)
                .saturating_sub(u.cache_write_tokens),
        ),
        cache_creation_input_tokens: Some(u.cache_write_tokens),
        cache_read_input_tokens: Some(u.cache_read_tokens),
        output_tokens,
        output_tokens_details: (u.reasoning_tokens > 0).then_some(wire::OutputTokensDetails {
            thinking_tokens: u.reasoning_tokens,
        }),
        extra: Map::new(),
    }
}

/// `msg_` ids pass through; others are prefixed so clients see the shape
/// they expect while the upstream id stays traceable.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else if id.is_empty() {
        new_message_id()
    } else {
        format!("msg_{id}")
    }
}

/// A fresh `msg_01…` id (24 base62 characters after the prefix). Uniqueness
/// comes from a process counter, the clock and std's per-process random
/// hash keys.
pub fn new_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let keys = RandomState::new();
    let mut id = String::with_capacity(28);
    id.push_str("msg_01");
    for salt in 0..2u64 {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u64(nanos);
        h.write_u64(salt);
        let mut x = h.finish();
        for _ in 0..11 {
            let digit = (x % 62) as usize;
            id.push(char::from(ALPHABET.get(digit).copied().unwrap_or(b'0')));
            x /= 62;
        }
    }
    id
}

// ---------------------------------------------------------------------------
// Stream decoding: Anthropic SSE -> IR
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// IR tool index of this `tool_use` block.
    ToolUse(u32),
    /// Server tool blocks and other content with no IR form.
    Other,
}

/// Anthropic usage as last reported; `message_delta` counts are cumulative
/// and overwrite, absent ones keep the `message_start` value.
#[derive(Debug, Default, Clone, Copy)]
struct UsageState {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    thinking: u64,
}

impl UsageState {
    fn update(&mut self, u: &wire::Usage) {
        if let Some(v) = u.input_tokens {
            self.input = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.cache_read = v;
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.cache_write = v;
        }
        self.output = self.output.max(u.output_tokens);
        if let Some(d) = &u.output_tokens_details {
            self.thinking = d.thinking_tokens;
        }
    }

    fn to_ir(self) -> Usage {
        Usage {
            input_tokens: self.input + self.cache_read + self.cache_write,
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            reasoning_tokens: self.thinking,
        }
    }
}

/// Anthropic SSE events -> IR events. Events are dispatched on the SSE
/// `event:` name (falling back to the payload's `type`); `ping` and event
/// types this crate does not know are ignored. Usage is emitted once, merged
/// from `message_start` and `message_delta`, just before `Finish`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// Anthropic block index -> what it carries.
    blocks: Vec<(u32, BlockKind)>,
    next_tool: u32,
    usage: UsageState,
    saw_usage: bool,
    usage_sent: bool,
    finished: bool,
    failed: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn kind_of(&self, index: u32) -> BlockKind {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(BlockKind::Other, |(_, k)| *k)
    }

    fn emit_usage(&mut self, out: &mut Vec<StreamEvent>) {
        if self.saw_usage {
            out.push(StreamEvent::Usage(self.usage.to_ir()));
            self.usage_sent = true;
        }
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let name = match event.event.as_deref() {
            Some(name) if !name.is_empty() && name != "message" => name.to_owned(),
            // Some compatible vendors end with OpenAI's marker.
            _ if event.data.trim() == "[DONE]" => return Ok(()),
            _ => {
                #[derive(serde::Deserialize)]
                struct TypeOnly {
                    #[serde(rename = "type", default)]
                    t: String,
                }
                serde_json::from_str::<TypeOnly>(&event.data)?.t
            }
        };
        match name.as_str() {
            "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop" => {}
            "error" => {
                out.push(StreamEvent::Error(parse_error_value(&event.data)));
                self.failed = true;
                return Ok(());
            }
            _ => return Ok(()),
        }
        let parsed: wire::StreamEvent = serde_json::from_str(&event.data)?;
        match parsed {
            wire::StreamEvent::MessageStart { message } => {
                self.started = true;
                self.usage.update(&message.usage);
                self.saw_usage = true;
                out.push(StreamEvent::Start {
                    id: message.id,
                    model: message.model,
                    created: 0,
                });
            }
            wire::StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let kind = match content_block {
                    ContentBlock::Text(t) => {
                        if !t.text.is_empty() {
                            out.push(StreamEvent::TextDelta(t.text));
                        }
                        BlockKind::Text
                    }
                    ContentBlock::Thinking(t) => {
                        if !t.thinking.is_empty() {
                            out.push(StreamEvent::ReasoningDelta(t.thinking));
                        }
                        if !t.signature.is_empty() {
                            out.push(StreamEvent::ReasoningSignature(t.signature));
                        }
                        BlockKind::Thinking
                    }
                    ContentBlock::RedactedThinking(r) => {
                        out.push(StreamEvent::RedactedReasoning(r.data));
                        BlockKind::Other
                    }
                    ContentBlock::ToolUse(t) => {
                        let tool = self.next_tool;
                        self.next_tool += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index: tool,
                            id: t.id,
                            name: t.name,
                            signature: None,
                        });
                        // Anthropic starts with `{}` and streams the input;
                        // some compatible vendors send it whole here.
                        if t.input.as_object().is_some_and(|o| !o.is_empty()) {
                            out.push(StreamEvent::ToolCallDelta {
                                index: tool,
                                arguments: t.input.to_string(),
                            });
                        }
                        BlockKind::ToolUse(tool)
                    }
                    _ => BlockKind::Other,
                };
                self.blocks.push((index, kind));
            }
            wire::StreamEvent::ContentBlockDelta { index, delta } => {
                match (self.kind_of(index), delta) {
                    (_, BlockDelta::Text { text }) if !text.is_empty() => {
                        out.push(StreamEvent::TextDelta(text));
                    }
                    (_, BlockDelta::Thinking { thinking }) if !thinking.is_empty() => {
                        out.push(StreamEvent::ReasoningDelta(thinking));
                    }
                    (_, BlockDelta::Signature { signature }) => {
                        out.push(StreamEvent::ReasoningSignature(signature));
                    }
                    (BlockKind::ToolUse(tool), BlockDelta::InputJson { partial_json })
                        if !partial_json.is_empty() =>
                    {
                        out.push(StreamEvent::ToolCallDelta {
                            index: tool,
                            arguments: partial_json,
                        });
                    }
                    _ => {}
                }
            }
            wire::StreamEvent::MessageDelta { delta, usage } => {
                self.usage.update(&usage);
                self.saw_usage = true;
                if let Some(reason) = delta.stop_reason {
                    self.emit_usage(out);
                    out.push(StreamEvent::Finish {
                        reason: finish_from_stop_reason(&reason),
                        stop_sequence: delta.stop_sequence,
                    });
                    self.finished = true;
                }
            }
            wire::StreamEvent::ContentBlockStop { .. }
            | wire::StreamEvent::MessageStop
            | wire::StreamEvent::Ping
            | wire::StreamEvent::Error { .. } => {}
        }
        Ok(())
    }

    /// When the upstream closed without a stop reason: the usage seen so far
    /// and a `Finish` (`tool_calls` if tool calls were streamed). Nothing
    /// after an `error` event or when the stream never started.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.failed || self.finished || !self.started {
            return;
        }
        if !self.usage_sent {
            self.emit_usage(out);
        }
        out.push(StreamEvent::Finish {
            reason: if self.next_tool > 0 {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            },
            stop_sequence: None,
        });
        self.finished = true;
    }
}

// ---------------------------------------------------------------------------
// Stream encoding: IR -> Anthropic SSE
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text(u32),
    Thinking(u32),
    /// IR tool index, block index.
    ToolUse(u32, u32),
}

impl OpenBlock {
    fn index(self) -> u32 {
        match self {
            OpenBlock::Text(i) | OpenBlock::Thinking(i) | OpenBlock::ToolUse(_, i) => i,
        }
    }
}

/// IR events -> the Anthropic event sequence: `message_start`, `ping`, then
/// `content_block_start`/`_delta`/`_stop` per block (a new block whenever the
/// kind changes: text, thinking, each tool call; a signature closes its
/// thinking block), and at [`finish`](EncodeStream::finish) one
/// `message_delta` (stop reason and final cumulative usage) and
/// `message_stop`. `Finish` is held until then so usage that arrives after it
/// (OpenAI's order) still lands in `message_delta`. An IR `Error` becomes an
/// `error` event that ends the stream.
///
/// The id and model come from `Start` (`msg_`-prefixed like
/// [`response_from_ir`]); refusal text is sent as text.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    open: Option<OpenBlock>,
    next_index: u32,
    /// IR tool index -> block index, for deltas of an already closed tool
    /// block (interleaved parallel calls).
    tool_blocks: Vec<(u32, u32)>,
    usage: Usage,
    finish: Option<(FinishReason, Option<String>)>,
    ended: bool,
}

impl StreamEncoder {
    pub fn new() -> Self {
        StreamEncoder::default()
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        self.started = true;
        let message = wire::Message {
            id: message_id(id),
            model: model.to_owned(),
            usage: usage_from_ir(&self.usage, 1),
            ..wire::Message::default()
        };
        write_event(out, &wire::StreamEvent::MessageStart { message });
        write_event(out, &wire::StreamEvent::Ping);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("", "", out);
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            write_event(
                out,
                &wire::StreamEvent::ContentBlockStop {
                    index: open.index(),
                },
            );
        }
    }

    fn open(&mut self, block: ContentBlock, out: &mut Vec<u8>) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        write_event(
            out,
            &wire::StreamEvent::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn text_index(&mut self, out: &mut Vec<u8>) -> u32 {
        match self.open {
            Some(OpenBlock::Text(i)) => i,
            _ => {
                let i = self.open(ContentBlock::Text(wire::TextBlock::new("")), out);
                self.open = Some(OpenBlock::Text(i));
                i
            }
        }
    }

    fn thinking_index(&mut self, out: &mut Vec<u8>) -> u32 {
        match self.open {
            Some(OpenBlock::Thinking(i)) => i,
            _ => {
                let block = ContentBlock::Thinking(wire::ThinkingBlock::default());
                let i = self.open(block, out);
                self.open = Some(OpenBlock::Thinking(i));
                i
            }
        }
    }
}

impl EncodeStream for StreamEncoder {
    fn push(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            StreamEvent::Start { id, model, .. } => {
                if !self.started {
                    self.start(id, model, out);
                }
            }
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let index = self.text_index(out);
                write_delta(out, index, "text_delta", "text", text);
            }
            StreamEvent::ReasoningDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let index = self.thinking_index(out);
                write_delta(out, index, "thinking_delta", "thinking", text);
            }
            StreamEvent::ReasoningSignature(signature) => {
                self.ensure_started(out);
                let index = self.thinking_index(out);
                write_delta(out, index, "signature_delta", "signature", signature);
                self.close(out);
            }
            StreamEvent::RedactedReasoning(data) => {
                self.ensure_started(out);
                let block = ContentBlock::RedactedThinking(wire::RedactedThinkingBlock {
                    data: data.clone(),
                    extra: Map::new(),
                });
                let index = self.open(block, out);
                write_event(out, &wire::StreamEvent::ContentBlockStop { index });
            }
            StreamEvent::ToolCallStart {
                index: tool,
                id,
                name,
                ..
            } => {
                self.ensure_started(out);
                let block = ContentBlock::ToolUse(wire::ToolUseBlock {
                    id: id.clone(),
                    name: name.clone(),
                    input: Value::Object(Map::new()),
                    cache_control: None,
                    extra: Map::new(),
                });
                let index = self.open(block, out);
                self.open = Some(OpenBlock::ToolUse(*tool, index));
                self.tool_blocks.push((*tool, index));
            }
            StreamEvent::ToolCallDelta {
                index: tool,
                arguments,
            } => {
                if arguments.is_empty() {
                    return;
                }
                let index = match self.open {
                    Some(OpenBlock::ToolUse(t, i)) if t == *tool => Some(i),
                    _ => self
                        .tool_blocks
                        .iter()
                        .rev()
                        .find(|(t, _)| t == tool)
                        .map(|(_, i)| *i),
                };
                if let Some(index) = index {
                    write_delta(out, index, "input_json_delta", "partial_json", arguments);
                }
            }
            StreamEvent::Usage(u) => self.usage.merge_max(u),
            StreamEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.ensure_started(out);
                self.close(out);
                self.finish = Some((*reason, stop_sequence.clone()));
            }
            StreamEvent::Error(err) => {
                let body = wire::ErrorResponse::new(error_type(err), err.message.clone());
                let error = wire::StreamEvent::Error { error: body.error };
                write_event(out, &error);
                self.ended = true;
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.ensure_started(out);
        self.close(out);
        let has_tool_use = !self.tool_blocks.is_empty();
        let (reason, stop_sequence) = self.finish.take().unwrap_or((FinishReason::Stop, None));
        let delta = wire::MessageDeltaBody {
            stop_reason: Some(
                stop_reason(reason, stop_sequence.is_some(), has_tool_use).to_owned(),
            ),
            stop_sequence,
            extra: Map::new(),
        };
        let usage = usage_from_ir(&self.usage, self.usage.output_tokens);
        write_event(out, &wire::StreamEvent::MessageDelta { delta, usage });
        write_event(out, &wire::StreamEvent::MessageStop);
    }
}

/// `event: <name>\ndata: <json>\n\n`.
fn write_event(out: &mut Vec<u8>, event: &wire::StreamEvent) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // These types always serialize (string keys only).
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
}

/// A `content_block_delta` frame, written directly: it is the hot path.
fn write_delta(out: &mut Vec<u8>, index: u32, delta_type: &str, field: &str, value: &str) {
    out.extend_from_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"delta\":{\"type\":\"");
    out.extend_from_slice(delta_type.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_string(out, value);
    out.extend_from_slice(b"}}\n\n");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Anthropic's `error.type` for an IR error (402 is `billing_error`).
fn error_type(err: &ApiError) -> &'static str {
    if err.status == 402 {
        return "billing_error";
    }
    match err.kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Api => "api_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
    }
}

/// Kind and the status Anthropic uses for an `error.type`.
fn kind_of_type(error_type: &str) -> Option<(ErrorKind, u16)> {
    Some(match error_type {
        "invalid_request_error" => (ErrorKind::InvalidRequest, 400),
        "authentication_error" => (ErrorKind::Authentication, 401),
        "billing_error" => (ErrorKind::Permission, 402),
        "permission_error" => (ErrorKind::Permission, 403),
        "not_found_error" => (ErrorKind::NotFound, 404),
        "request_too_large" => (ErrorKind::RequestTooLarge, 413),
        "rate_limit_error" => (ErrorKind::RateLimit, 429),
        "api_error" => (ErrorKind::Api, 500),
        "timeout_error" => (ErrorKind::Timeout, 504),
        "overloaded_error" => (ErrorKind::Overloaded, 529),
        _ => return None,
    })
}

/// `{"type":"error","error":{"type":..,"message":..}}`.
pub fn error_body(err: &ApiError) -> Vec<u8> {
    let body = wire::ErrorResponse::new(error_type(err), err.message.clone());
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Reads an upstream error body: Anthropic's shape first, then the
/// OpenAI-style shapes compatible vendors use, else the raw text (cut to
/// 512 bytes). The kind comes from `error.type` when known, else the status.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    if let Ok(resp) = serde_json::from_slice::<wire::ErrorResponse>(body) {
        let kind = kind_of_type(&resp.error.r#type)
            .map_or_else(|| ErrorKind::from_status(status), |(k, _)| k);
        return ApiError {
            status,
            kind,
            message: resp.error.message,
        };
    }
    if let Some(info) = crate::openai::parse_error_body(body) {
        let kind = info
            .error_type
            .as_deref()
            .and_then(kind_of_type)
            .map_or_else(|| ErrorKind::from_status(status), |(k, _)| k);
        return ApiError {
            status,
            kind,
            message: info.message,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ApiError {
        status,
        kind: ErrorKind::from_status(status),
        message: match text.get(..end) {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => format!("upstream returned HTTP {status}"),
        },
    }
}

/// An `error` stream event: the status is the one Anthropic uses for its
/// `error.type` (500 when unknown).
fn parse_error_value(data: &str) -> ApiError {
    let type_status = serde_json::from_str::<wire::ErrorResponse>(data)
        .ok()
        .and_then(|r| kind_of_type(&r.error.r#type))
        .map_or(500, |(_, s)| s);
    parse_error(type_status, data.as_bytes())
}

// ---------------------------------------------------------------------------
// Token estimate
// ---------------------------------------------------------------------------

/// A local estimate of the prompt size for `/v1/messages/count_tokens` (see
/// [`crate::ir::estimate`] for the rule and [`crate::ir::estimate::ANTHROPIC`] for the costs).
pub fn estimate_input_tokens(req: &ChatRequest) -> u64 {
    crate::ir::estimate::input_tokens(req, &crate::ir::estimate::ANTHROPIC)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn model_names_in_every_spelling_are_recognised() {
        let cases = [
            ("claude-3-haiku-20240307", 4096),
            ("claude-3-5-sonnet-20241022", 8192),
            ("claude-3-5-sonnet-v2@20241022", 8192),
            ("claude-3-7-sonnet-latest", 64_000),
            ("claude-opus-4-20250514", 32_000),
            ("claude-opus-4-1-20250805", 32_000),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", 64_000),
            ("claude-sonnet-4-5@20250929", 64_000),
            ("anthropic/claude-sonnet-4.5", 64_000),
            ("claude-haiku-4-5", 64_000),
            ("claude-opus-4-6", 128_000),
            ("claude-opus-4-7[1m]", 128_000),
            ("claude-mythos-preview", 128_000),
            ("claude-sonnet-5", 128_000),
            ("gpt-4o", UNKNOWN_MODEL_MAX_TOKENS),
        ];
        for (model, max) in cases {
            assert_eq!(default_max_tokens(model), max, "{model}");
        }
        assert_eq!(
            ModelTraits::of("claude-opus-4-7").thinking,
            ThinkingSupport::AdaptiveOnly
        );
        assert_eq!(
            ModelTraits::of("claude-sonnet-4-6").thinking,
            ThinkingSupport::BudgetOrAdaptive
        );
        assert_eq!(
            ModelTraits::of("claude-3-5-haiku-latest").thinking,
            ThinkingSupport::None
        );
        assert!(!ModelTraits::of("claude-opus-4-8").sampling);
    }

    #[test]
    fn effort_and_budget_map_both_ways_monotonically() {
        for effort in ["low", "medium", "high", "xhigh", "max"] {
            let budget = effort_budget(effort).unwrap();
            assert_eq!(budget_effort(budget), effort);
        }
        assert_eq!(budget_effort(1), "low");
        assert_eq!(effort_level("xhigh", EffortLevels::WithMax), Some("high"));
        assert_eq!(effort_level("max", EffortLevels::UpToHigh), Some("high"));
        assert_eq!(effort_level("minimal", EffortLevels::All), Some("low"));
        assert_eq!(effort_level("high", EffortLevels::None), None);
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(decode_base64("a*b").is_none());
    }

    #[test]
    fn fresh_message_ids_are_distinct_and_well_formed() {
        let a = new_message_id();
        let b = new_message_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("msg_01"));
        assert!(a.bytes().skip(4).all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn tool_ids_are_restricted_to_anthropics_alphabet() {
        assert_eq!(
            tool_id("functions.get_weather:0"),
            "functions_get_weather_0"
        );
        assert_eq!(tool_id("call_abc-1"), "call_abc-1");
    }
}
