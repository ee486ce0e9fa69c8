//! A faithful, scriptable fake of the OpenAI, Anthropic, Gemini, Azure
//! OpenAI, Vertex AI, Amazon Bedrock (Converse), Cohere (v2) and Cloudflare
//! Workers AI REST APIs, for llmux's end-to-end tests and load benchmarks.
//!
//! Each wire format (field names, error bodies, headers, SSE framing,
//! validation messages) follows its provider's API reference and official
//! SDK types, and is implemented here on its own, independently of llmux's
//! converters, so a bug shared with them cannot make a test pass.
//! Everything the mock *invents* (reply text, tool arguments, thinking, token
//! counts, ids, signatures, vectors, audio bytes) is deterministic and
//! documented below, and one set of rules ("the model", see *Deterministic
//! rules*) answers every format, so an end-to-end test can assert the exact
//! same reply and token counts whichever format carried the conversation.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
//!
//! let server = MockServer::start(MockOptions::default()).await?;
//! let base = server.base_url(); // "http://127.0.0.1:PORT/v1"
//! server.push_fault(Fault::new(FaultKind::ServerError).for_model("gpt-4o"));
//! // ... point the gateway at `base`, send traffic ...
//! assert_eq!(server.request_count(), server.requests().len());
//! # Ok(()) }
//! ```
//!
//! Key-pool scenarios: quota scopes shared by several keys, a provider's
//! limit semantics, and a virtual clock for exact assertions.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use mock_upstream::{LimitFlavor, MockOptions, MockServer, ScopeSpec};
//!
//! let server = MockServer::start(MockOptions {
//!     flavor: LimitFlavor::OpenAi,
//!     scopes: vec![ScopeSpec::new("org-alpha", &["sk-a1", "sk-a2"]).rpm(60).tpm(40_000)],
//!     ..MockOptions::default()
//! })
//! .await?;
//! let now = Arc::new(AtomicU64::new(0));
//! let hand = Arc::clone(&now);
//! server.set_clock(Some(Arc::new(move || hand.load(Ordering::SeqCst))));
//! // ... traffic; then move time and look at what each key saw:
//! now.store(60_000, Ordering::SeqCst);
//! server.revoke_key("sk-a2");
//! let stats = server.key_stats();
//! # let _ = stats;
//! # Ok(()) }
//! ```
//!
//! Dropping the [`MockServer`] stops it and closes every open connection.
//! [`MockServer::base_url`] (`…/v1`) is what OpenAI clients take;
//! [`MockServer::root_url`] is what the Anthropic, Gemini and Azure SDKs take.
//!
//! # Endpoints
//!
//! Every route is always on; [`Endpoint`] names them.
//!
//! * **OpenAI**, under `/v1`: `GET /models`, `GET /models/{id}`,
//!   `POST /chat/completions` (buffered and `stream: true`),
//!   `POST /responses` and `GET /responses/{id}` (see *Responses API*),
//!   `POST /embeddings`, `POST /images/generations`,
//!   `POST /audio/transcriptions`, `POST /audio/translations`,
//!   `POST /audio/speech`, `POST /moderations`.
//! * **Anthropic**: `POST /v1/messages` (buffered and streamed) and
//!   `POST /v1/messages/count_tokens` (see *Anthropic Messages API*).
//! * **Gemini**, under `/v1beta` and `/v1` alike:
//!   `POST /models/{model}:generateContent`, `:streamGenerateContent`
//!   (`?alt=sse` for SSE, else a streamed JSON array), `:countTokens`,
//!   `GET /models`, `GET /models/{model}` (on `/v1`, a `GET /models…`
//!   carrying a Google key and no bearer token is Gemini's; otherwise
//!   OpenAI's). See *Gemini API*.
//! * **Azure OpenAI**: `POST /openai/deployments/{deployment}/chat/completions`
//!   and `…/embeddings` (`?api-version=` required), the v1 API's
//!   `POST /openai/v1/chat/completions`, `/openai/v1/responses`,
//!   `/openai/v1/embeddings`, and Azure AI Foundry's
//!   `POST /models/chat/completions` and `/models/embeddings`
//!   (`?api-version=` required). See *Azure*.
//! * **Vertex AI**: `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
//!   and `:streamGenerateContent` (the Gemini handlers), `.../publishers/anthropic/models/{m}:rawPredict`
//!   and `:streamRawPredict` (the Anthropic handlers), the express-mode
//!   `POST /v1/publishers/google/models/{m}:generateContent` / `:streamGenerateContent`
//!   (`/v1beta1/` works too), and the OAuth token endpoint `POST /token`. See *Vertex AI*.
//! * **Amazon Bedrock Runtime**: `POST /model/{modelId}/converse` and
//!   `/converse-stream` (the model id percent-encoded or not). See *Bedrock*.
//! * **Cohere**: `POST /v2/chat`. See *Cohere*.
//! * **Cloudflare Workers AI**: `POST /client/v4/accounts/{account}/ai/run/{model}`
//!   (the model keeps its slashes: `@cf/meta/llama-3.1-8b-instruct`). See *Cloudflare*.
//! * **Databricks Model Serving**: `POST /serving-endpoints/{name}/invocations` and
//!   `POST /serving-endpoints/chat/completions` (the endpoint named in `model`). See
//!   *Databricks*.
//!
//! Anything else gets OpenAI's
//! `404 {"error":{"message":"Invalid URL (POST /v1/xyz)",...}}` (under
//! `/v1beta/`, Google's 404 `NOT_FOUND` "Method not found: PATH"). Image
//! `url` results point back at the mock (`GET /mock-files/...`, no auth) and
//! serve a 1×1 PNG. With [`MockOptions::admin`], control routes live under
//! `/mock/`.
//!
//! **Credentials.** Each provider's routes read the key the way the
//! provider does:
//!
//! * OpenAI routes: `Authorization: Bearer`, else `x-api-key`, `api-key`,
//!   `x-goog-api-key` or `?key=` (so one server can stand in for any
//!   provider's OpenAI-compatible endpoint). Missing: 401 "You didn't
//!   provide an API key...".
//! * Anthropic routes: `x-api-key`, else a bearer token (the SDK's
//!   `auth_token`). Missing: 401 `authentication_error` "x-api-key header is
//!   required". With a key but no `anthropic-version` header: 400
//!   `invalid_request_error` "anthropic-version: header is required".
//! * Gemini routes: `x-goog-api-key` or `?key=` only. A bare bearer token is
//!   taken for an OAuth token and refused: 401 `UNAUTHENTICATED` "Request had
//!   invalid authentication credentials. Expected OAuth 2 access token, ..."
//!   (`ErrorInfo` reason `ACCESS_TOKEN_TYPE_UNSUPPORTED`); nothing at all:
//!   403 `PERMISSION_DENIED` "Method doesn't allow unregistered callers
//!   (callers without established identity). Please use API Key or other
//!   form of API consumer identity to call this API."
//! * Azure routes: `api-key`, else a bearer token (Entra ID). Missing: 401
//!   `{"error":{"code":"401","message":"Access denied due to missing
//!   subscription key. Make sure to include subscription key when making
//!   requests to an API."}}`.
//! * Vertex project routes: `Authorization: Bearer` with a token `POST /token`
//!   issued (API keys do not open them); express routes: `x-goog-api-key` or
//!   `?key=`, as Gemini's. See *Vertex AI*.
//! * Bedrock routes: a SigV4 `Authorization` the mock verifies, or a bearer
//!   Bedrock API key (checked like any key). See *Bedrock*.
//! * Cohere and Cloudflare routes: `Authorization: Bearer`. Missing: Cohere
//!   401 `{"id":…,"message":"no api key supplied"}`; Cloudflare 401
//!   `{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication
//!   error"}],"messages":[]}` (also its answer to an unknown token).
//! * Databricks routes: `Authorization: Bearer <token>`, or Basic credentials
//!   `token:<token>`. Missing: 401 `{"error_code":401,"message":"Credential was not sent
//!   or was of an unsupported type for this API."}`; unknown token: 403
//!   `{"error_code":403,"message":"Invalid access token."}`.
//!
//! # Request pipeline
//!
//! Each request, in order: is counted (and recorded when `record` is on,
//! with the [`Endpoint`] that serves it); waits `latency`; is routed
//! (unknown → 404); Azure routes without `api-version` are refused (see
//! *Azure*); is authenticated (missing key → the route's answer above; a key
//! not in a non-empty `api_keys` (scoped and runtime-flagged keys count as
//! listed), or a revoked key → the dialect's invalid-key answer, for OpenAI
//! 401 `invalid_api_key` with the key masked as first 8 + `*`… + last 4
//! characters); Anthropic routes check `anthropic-version`; is answered "out
//! of credit" if the key is exhausted; is shed if the provider is overloaded;
//! takes the first queued [`Fault`] that matches its model and key; is
//! counted against its quota scope (all dimensions, all or nothing); then the
//! fault (if any), the 429, or the endpoint answers; finally an admitted
//! request's token charge is reconciled with its real `usage`, and the key's
//! counters are updated. Malformed JSON gets OpenAI's 400 "We could not parse
//! the JSON body of your request..." (Anthropic: 400 "There was an issue
//! with the request body: invalid JSON"; Gemini: 400 `INVALID_ARGUMENT`
//! "Invalid JSON payload received. Unexpected token.").
//!
//! **Dialects.** Errors, limits and headers take the shape of the route's
//! provider: the Anthropic routes always speak Anthropic, the Gemini routes
//! Gemini and the Azure routes Azure, whatever the flavour; the OpenAI
//! routes speak the flavour's dialect (the Gemini or Groq flavour models
//! those providers' OpenAI-compatible endpoints). The flavour always picks
//! the limit *semantics* (windows, what is charged).
//!
//! Every OpenAI-dialect response carries `x-request-id` (unique),
//! `openai-organization` (the key's scope, else `org-mock`),
//! `openai-processing-ms`, `openai-version: 2020-10-01` and rate-limit
//! headers (see below). Gemini-dialect responses carry only `x-request-id`;
//! Anthropic routes carry `request-id`, `anthropic-organization-id` and the
//! `anthropic-ratelimit-*` headers.
//!
//! # Rate limits
//!
//! A [`ScopeSpec`] is a quota scope: its keys drain one budget (requests per
//! minute, tokens per minute, requests per day; `None` = not enforced, and
//! reported as 10,000 RPM / 1,000,000 TPM). Keys outside every scope are
//! unlimited (no state, no lock) unless `rpm_per_key` is set, in which case
//! each such key is a scope of its own named `org-mock`. Time comes from the
//! wall clock or from [`MockServer::set_clock`], anchored at
//! [`MockOptions::clock_origin`]; all arithmetic is exact integer
//! milliseconds, so a test can assert every number. Token costs use the same
//! counts the endpoints report in `usage` (chat, Responses, Messages,
//! Gemini: the prompt rule below, with `max_tokens` /
//! `max_completion_tokens` / `max_output_tokens` / `maxOutputTokens` as the
//! output bound; embeddings: per input; token counting routes: nothing;
//! other endpoints: ceil(body bytes / 4)).
//!
//! Every flavour answers a refused request with the provider's own body and
//! headers, and its "retry in" hint is exact: waiting that long (with no
//! other traffic) succeeds, a millisecond less does not.
//!
//! **OpenAI** ([`LimitFlavor::OpenAi`], the default). Continuous token
//! buckets: RPM refills at RPM/60 per second, TPM at TPM/60, RPD at RPD/86400.
//! A request is charged `max(max_completion_tokens or max_tokens, prompt
//! tokens)` at admission (OpenAI: "the maximum of max_tokens and the estimated
//! number of tokens based on the character count"), and the charge is
//! replaced by the real `prompt + completion` once the answer is built.
//! Admitted requests count whatever their outcome (400s, faults); refused
//! ones also do with [`MockOptions::refused_requests_count`]. Headers:
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go
//! durations (`20s`, `1m0s`, `12.36s`, `14m24s`), showing the state after
//! the admission charge. 429: `type` `requests` or `tokens`, `code`
//! `rate_limit_exceeded`, "Rate limit reached for MODEL in organization ORG
//! on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again
//! in 20s. Visit <https://platform.openai.com/account/rate-limits> to learn
//! more." (`tokens per min (TPM)`, `requests per day (RPD)`; MODEL is the
//! request's `model` or `default`), with `retry-after` (seconds, rounded up)
//! and `retry-after-ms`. A request larger than the whole TPM gets "Request
//! too large for MODEL in organization ORG on tokens per min (TPM): Limit L,
//! Requested R. The input or output tokens must be reduced in order to run
//! successfully. Visit ..." and no `retry-after`. Out of credit: 429
//! `insufficient_quota`. Overload: 503 "The engine is currently overloaded,
//! please try again later".
//!
//! **Groq** ([`LimitFlavor::Groq`]). OpenAI's buckets and bodies in Groq's
//! words: "Rate limit reached for model \`MODEL\` in organization \`ORG\`
//! service tier \`on_demand\` on requests per minute (RPM): Limit 2, Used 2,
//! Requested 1. Please try again in 30s. Need more tokens? Upgrade to Dev
//! Tier today at <https://console.groq.com/settings/billing>" (no `param`);
//! too large is a 413 "Request too large for model ..., please reduce your
//! message size and try again. ..."; invalid key is 401 "Invalid API Key".
//! `x-ratelimit-*-requests` report the daily budget (RPD; RPM when no RPD is
//! set), `*-tokens` the TPM; `retry-after` (seconds) only on 429, no
//! `retry-after-ms`.
//!
//! **Azure** ([`LimitFlavor::Azure`]). Requests in fixed 10-second windows
//! of RPM/6 (at least 1), tokens in fixed minute windows charged `prompt +
//! max_tokens` on arrival and never reconciled; windows align to absolute
//! time. Headers `x-ratelimit-{limit,remaining}-{requests,tokens}` (per
//! minute, no resets). 429 `{"error":{"code":"429","message":"Requests to the
//! ChatCompletions_Create Operation under Azure OpenAI API version V have
//! exceeded call rate limit of your current OpenAI S0 pricing tier. Please
//! retry after N seconds. Please go here: https://aka.ms/oai/quotaincrease if
//! you would like to further increase the default rate limit."}}` ("token
//! rate limit" for tokens; V is the `api-version` query parameter, default
//! 2024-10-21; the operation follows the route; a request over the whole TPM
//! is told 86400 seconds), with `retry-after` and `retry-after-ms`. Invalid
//! key: 401 `{"error":{"code":"401","message":"Access denied due to invalid
//! subscription key or wrong API endpoint. ..."}}`.
//!
//! **Gemini** ([`LimitFlavor::Gemini`]). Fixed minute windows starting at
//! second :00 for requests and input tokens, and a daily request window
//! ending at midnight America/Los_Angeles (US DST rules, so the days around
//! the switches last 23 and 25 hours). No rate-limit headers at all. 429
//! (Google's field order, two-space indentation):
//! `{"error":{"code":429,"message":"You exceeded your current quota, please
//! check your plan and billing details. For more information on this error,
//! head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor
//! your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n*
//! Quota exceeded for metric: generativelanguage.googleapis.com/
//! generate_content_free_tier_requests, limit: 15, model: MODEL\nPlease retry
//! in 20.045s.","status":"RESOURCE_EXHAUSTED","details":[QuotaFailure
//! {violations:[{quotaMetric, quotaId, quotaDimensions{location:"global",
//! model}, quotaValue:"15"}]}, Help{links}, RetryInfo{retryDelay:"20s"}]}}`;
//! quotaIds `GenerateRequestsPerMinutePerProjectPerModel-FreeTier`,
//! `GenerateContentInputTokensPerModelPerMinute-FreeTier` and
//! `GenerateRequestsPerDayPerProjectPerModel-FreeTier`; the message has
//! millisecond precision, `retryDelay` whole seconds (truncated). Invalid
//! key: 400 `INVALID_ARGUMENT` with `ErrorInfo.reason` `API_KEY_INVALID`.
//! Out of credit: the 429 with "limit: 0" violations. Overload: 503
//! `UNAVAILABLE` "The model is overloaded. Please try again later.".
//!
//! **Anthropic** ([`LimitFlavor::Anthropic`]). Token buckets for RPM, input
//! tokens (ITPM = `tpm`, charged the prompt) and output tokens (OTPM = `tpm`,
//! charged `max_tokens` at admission and reconciled to the real output).
//! On the Anthropic routes (in every flavour) the headers are
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
//! remaining,reset}` with RFC 3339 resets (`tokens` = the more restrictive of
//! input and output; other flavours report their one token bucket in all
//! three), and errors are Anthropic's: 429 `rate_limit_error` "This request
//! would exceed the rate limit for your organization (ORG) of 20,000 input
//! tokens per minute. ..." with `retry-after`, 401 `authentication_error`
//! "invalid x-api-key", 400 "Your credit balance is too low to access the
//! Anthropic API. ...", 529 `overloaded_error` "Overloaded".
//!
//! # Key health and counters
//!
//! `revoked_keys` / [`MockServer::revoke_key`] and `exhausted_keys` /
//! [`MockServer::exhaust_key`] flip keys at runtime (and back with
//! `restore_key` / `replenish_key`); [`MockServer::set_overloaded`] and
//! [`MockServer::overload_next`] start provider-wide overload storms, which
//! do not count against any limit. [`MockServer::key_stats`] counts, per key,
//! requests received and answered 2xx / 429 / 401 (or Gemini's 400
//! `API_KEY_INVALID`) / other.
//!
//! # Pacing
//!
//! `latency` is slept before every response (time to first token);
//! `token_delay` adds generation time per output token: a buffered chat,
//! Responses, Messages or Gemini answer waits `output tokens of one choice ×
//! token_delay`, a stream waits it before each token-bearing event (a word,
//! a three-word Gemini chunk, an argument piece; on top of `chunk_delay`).
//!
//! # Deterministic rules
//!
//! One "model" answers every format. Each format reduces its request to the
//! same few facts (the last user text, whether the conversation ends on the
//! user, the callable tools, the tool choice, the output limit, thinking)
//! and renders the same answer in its own shape.
//!
//! **User turns.** The *last user text* is the text of the last user
//! message (text parts joined by a space). Tool results are not user turns:
//! chat's `tool` messages, Anthropic user messages holding only
//! `tool_result` blocks, Gemini user contents with `functionResponse` parts,
//! Responses `function_call_output` items. The conversation *ends on the
//! user* when its last message is a user turn in that sense.
//!
//! **Reply text.** The scripted reply ([`MockOptions::reply`], overridden at
//! runtime by [`MockServer::set_reply`]) if set. Otherwise `"You said: "`
//! followed by the first 32 whitespace-separated words of the last user
//! text, re-joined with single spaces — e.g. `"Hi   there"` → `"You said:
//! Hi there"`. With no user text the reply is `"Hello! This is a mock
//! reply."`. Every one of chat's `n` choices carries the same text. The
//! reply is cut before the earliest occurrence of any stop sequence (chat
//! `stop`, Anthropic `stop_sequences`, Gemini `stopSequences`), then to the
//! output limit in words.
//!
//! **Prompt tokens** = ceil(counted characters / 4), at least 1 (Unicode
//! scalar values). Counted: chat message `content` (strings and `text`
//! parts, every role); Anthropic `system` and message text blocks and
//! `tool_result` content (string or text blocks); Gemini `systemInstruction`
//! and content text parts (not `thought` parts) and every string inside a
//! `functionResponse.response`, recursively (so `{"result": "22C"}` counts
//! 3); Responses `instructions`, message text (string content or
//! `input_text`/`output_text` parts) and `function_call_output` output, plus
//! the stored conversation a `previous_response_id` continues; Bedrock
//! `system` texts, message `text` blocks and `toolResult` contents (text,
//! and every string of `json`); Cohere message content (strings, `text`
//! blocks, every string of `document` blocks); Cloudflare message content
//! (or `prompt`). Never counted: tool definitions, tool call arguments,
//! thinking, images.
//!
//! **Output tokens** = words of the reply, or with tool calls ceil(characters
//! of all argument strings / 4) (at least 1), plus thinking tokens (the words
//! of the thinking text). Chat multiplies by `n`. The output limit counts
//! thinking first and the reply gets the rest (finish `length` /
//! `max_tokens` / `MAX_TOKENS` / Responses `incomplete`).
//!
//! **Tool calls.** When the request offers functions and the tool choice is
//! not "none", and either the conversation ends on the user with "weather"
//! (any case) in the last user text, or the choice forces a call (chat
//! `"required"`, Anthropic `{"type":"any"}`, Gemini mode `ANY`, Responses
//! `"required"`), or names a function (chat/Responses
//! `{"type":"function",...}`, Anthropic `{"type":"tool","name"}`, Gemini
//! `ANY` with exactly one `allowedFunctionNames` entry): a named choice calls
//! that function; otherwise, if the user text contains "parallel" and
//! parallel calls are allowed (chat/Responses `parallel_tool_calls` not
//! `false`, Anthropic `disable_parallel_tool_use` not `true`; Gemini always),
//! every function is called in order; otherwise only the first. Gemini `ANY`
//! with several `allowedFunctionNames` restricts the candidates to them.
//! Arguments are a JSON object with one entry per schema property (the
//! schema is chat `function.parameters`, Anthropic `input_schema`, Gemini
//! `parameters` or `parametersJsonSchema`, Responses `parameters`): the
//! first `enum` value if any, else by `type` (case-insensitive, so Gemini's
//! `STRING` works) `"mock"` (string), `1` (integer/number), `true`, `[]`,
//! `{}`, or `null`; serialised compactly with keys sorted, which is the
//! "argument string" tokens are counted on. Bedrock's choice is `toolChoice`
//! `any` (forced) or `tool{name}` (named); Cohere's `tool_choice`
//! `REQUIRED`/`NONE`; Cloudflare has none; all three always allow parallel
//! calls. Ids: chat `call_` + 24 alphanumerics; Anthropic `toolu_01` + 22;
//! Responses item `fc_` + 48 hex and `call_id` `call_` + 24; Bedrock
//! `tooluse_` + 22; Cohere `NAME_` + 12; Cloudflare OpenAI-style
//! `chatcmpl-tool-` + 32; Gemini and classic Cloudflare calls have no id.
//!
//! **Thinking.** On when the request asks for it: Anthropic `thinking`
//! `enabled` or `adaptive`; Gemini `thinkingConfig` with `includeThoughts:
//! true`, a non-zero `thinkingBudget` or a `thinkingLevel`; Responses a
//! `reasoning` object whose `effort` is not `"none"`; Bedrock
//! `additionalModelRequestFields` (see *Bedrock*); Cohere `thinking.type:
//! "enabled"`. The thinking text is always `"Let me think about how to
//! answer this."` (8 tokens). Chat and Cloudflare never think.
//!
//! **Signatures** are verifiable: base64 of `LABEL:` followed by the 16-hex
//! FNV-1a hash of the signed text. Anthropic thinking blocks are signed with
//! `mock-thinking-signature` over the thinking text (the empty text when
//! `display: "omitted"`), and replayed thinking blocks must carry exactly
//! that signature; Bedrock `reasoningText` signatures are the same. Gemini `thoughtSignature`s are `mock-thought-signature`
//! over the function name followed by its argument string. Responses
//! `encrypted_content` is `mock-encrypted-reasoning` over the reasoning
//! item's id.
//!
//! **Chat Completions.** Content is the reply, or `null` with
//! `finish_reason: "tool_calls"` and the calls. Streamed: events are
//! `data: {json}\n\n`: first a chunk whose delta is
//! `{"role":"assistant","content":"","refusal":null}`, then one chunk per word
//! (a word plus the whitespace before it, so the deltas concatenate to exactly
//! the reply), then an empty delta with the `finish_reason`, then — only with
//! `stream_options.include_usage` — a chunk with `"choices":[]` and the usage
//! (every earlier chunk then has `"usage":null`), then `data: [DONE]`. With
//! `n > 1` each step is emitted once per choice index. Tool calls: the first
//! delta of each call carries `index`, `id`, `type`, `function{name,
//! arguments:""}` (the first call's delta also has `role`, `content:null`,
//! `refusal:null`); the arguments follow in 8-character pieces as `{index,
//! function{arguments}}` deltas. Content type `text/event-stream;
//! charset=utf-8`. All usage detail fields are 0.
//!
//! **Stream pacing.** `chunk_delay` is slept between events of every
//! streamed format, each event being its own HTTP chunk (with no delay the
//! whole stream is written as one chunk, which no client can tell apart).
//!
//! # Anthropic Messages API
//!
//! **Validation** (400 `invalid_request_error`, Anthropic's messages), in
//! order: any top-level field the API does not know → "FIELD: Extra inputs
//! are not permitted"; `model` missing → "model: Field required";
//! `max_tokens` missing → "max_tokens: Field required" (0 is allowed and
//! generates nothing); `messages` missing or empty → "messages: Field
//! required" / "messages: at least one message is required"; a role other
//! than user/assistant → "messages.N.role: Input should be 'user' or
//! 'assistant'"; empty content (except a final assistant message) →
//! "messages.N: all messages must have non-empty content except for the
//! optional final assistant message"; an empty text block → "messages: text
//! content blocks must be non-empty"; an unknown block `type` → "Input tag
//! ... does not match any of the expected tags"; `system` not a string or
//! text blocks; `thinking.enabled.budget_tokens` below 1024 → "...: Input
//! should be greater than or equal to 1024", not below `max_tokens` →
//! "`max_tokens` must be greater than `thinking.budget_tokens`. Please
//! consult our documentation at ..."; with thinking on, a `temperature`
//! other than 1 → "`temperature` may only be set to 1 when thinking is
//! enabled. ..." and a forcing `tool_choice` → "Thinking may not be enabled
//! when tool_choice forces tool use."; then tool pairing on *turns*
//! (consecutive messages of one role are merged into one turn, as the API
//! does; there is no first-role or alternation rule): every `tool_use` must
//! be answered by a `tool_result` in the next turn → "messages.N: `tool_use`
//! ids were found without `tool_result` blocks immediately after: ID1, ID2.
//! Each `tool_use` block must have a corresponding `tool_result` block in
//! the next message." (N = the assistant message), every `tool_result` must
//! answer a `tool_use` of the previous turn → "messages.N.content.M:
//! unexpected `tool_use_id` found in `tool_result` blocks: ID. Each
//! `tool_result` block must have a corresponding `tool_use` block in the
//! previous message.", and every replayed `thinking` block must carry the
//! mock's signature for its text → "messages.N.content.M: Invalid
//! `signature` in `thinking` block"; with thinking on and the conversation
//! ending in tool results, the last assistant message must start with a
//! thinking block → "messages.N.content.0.type: Expected `thinking` or
//! `redacted_thinking`, but found `TYPE`. When `thinking` is enabled, a
//! final `assistant` message must start with a thinking block ...".
//! Finally a model that is neither `claude-*` nor in [`MockOptions::models`]
//! → 404 `not_found_error` "model: NAME".
//!
//! **Answer.** `{"id":"msg_01…"(22 more),"type":"message","role":"assistant",
//! "model","content","stop_reason","stop_sequence","usage"}`. Content: a
//! `thinking` block `{thinking, signature}` first when thinking is on, then
//! a `text` block (omitted when the text is empty) or the `tool_use` blocks
//! `{id, name, input}`. `stop_reason`: `end_turn`, `max_tokens`,
//! `stop_sequence` (with `stop_sequence` set to the matching string) or
//! `tool_use`. `usage`: `input_tokens`, `cache_creation_input_tokens`,
//! `cache_read_input_tokens`, `cache_creation{ephemeral_5m_input_tokens,
//! ephemeral_1h_input_tokens}`, `output_tokens`, `service_tier:
//! "standard"`.
//!
//! **Prompt caching.** The prefix up to the last `cache_control` breakpoint
//! (system blocks, then message blocks in order; a top-level
//! `cache_control` marks the last block) is cached: its tokens, ceil(counted
//! characters / 4), are `cache_creation_input_tokens` the first time the
//! server sees that exact prefix for that model and
//! `cache_read_input_tokens` afterwards (the 1-hour bucket when its `ttl` is
//! `"1h"`), and `input_tokens` is the prompt minus them. There is no minimum
//! cacheable length. Without breakpoints both are 0.
//!
//! **Streaming** (`text/event-stream; charset=utf-8`, `event:` lines):
//! `message_start` (the message with empty `content`, null `stop_reason`,
//! `usage.output_tokens: 1`), `ping` (exactly `{"type": "ping"}`), then per
//! block `content_block_start` / deltas / `content_block_stop`: thinking
//! (`{"type":"thinking","thinking":"","signature":""}`, one
//! `thinking_delta` per word, one `signature_delta`), text (`{"type":"text",
//! "text":""}`, one `text_delta` per word), tool_use (`input: {}`, an empty
//! `input_json_delta` then the argument string in 8-character pieces); then
//! `message_delta` (`stop_reason`, `stop_sequence`, cumulative `usage`
//! with `input_tokens`, the cache counts and `output_tokens`) and
//! `message_stop`.
//!
//! `POST /v1/messages/count_tokens` validates the same way (without
//! `max_tokens`, which is an extra input there) and answers
//! `{"input_tokens": N}` by the prompt rule.
//!
//! # Gemini API
//!
//! **Parsing** is as strict as Google's JSON front end: every field name not
//! in the Gemini API's v1beta messages (camelCase or snake_case) → "Invalid
//! JSON payload received. Unknown name \"NAME\" at 'PATH': Cannot find
//! field." (no `at` part at the top level), a list where one value belongs
//! → "... Unknown name \"NAME\" at 'PATH': Proto field is not repeating,
//! cannot start list.", a bad `type` or `mode` enum name → "Invalid value at
//! 'PATH' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type),
//! \"VALUE\"", malformed base64 in `inlineData.data` or `thoughtSignature` →
//! "Invalid value at 'PATH' (TYPE_BYTES), Base64 decoding failed for
//! \"VALUE\"". PATH is in protobuf spelling, map entries by position:
//! `tools[0].function_declarations[1].parameters.properties[2].value`. So
//! JSON-Schema-only keywords (`additionalProperties`, `$schema`, `const`,
//! ...) are refused in `parameters` and `responseSchema` (but not in
//! `parametersJsonSchema` / `responseJsonSchema`). All violations are
//! reported at once: 400 `INVALID_ARGUMENT`, the descriptions joined by
//! newlines, and a `google.rpc.BadRequest` detail with one `fieldViolation`
//! (`field`, `description`) each.
//!
//! **Validation** (400 `INVALID_ARGUMENT`), in order: a model that is not
//! `gemini-*`, `gemma-*` or in [`MockOptions::models`] → 404 `NOT_FOUND`
//! "models/NAME is not found for API version VERSION, or is not supported
//! for generateContent. Call ListModels to see the list of available models
//! and their supported methods."; missing or empty `contents` →
//! `* GenerateContentRequest.contents: contents is not specified\n`; empty
//! `parts` and parts with no data field →
//! `* GenerateContentRequest.contents[N].parts: contents.parts must not be empty.\n`
//! and
//! `* GenerateContentRequest.contents[N].parts[M].data: required oneof field 'data' must have one initialized field\n`
//! (all in one message); a role other than user/model (missing means user) →
//! "Please use a valid role: user, model."; a function response turn not
//! right after a function call turn → "Please ensure that function response
//! turn comes immediately after a function call turn."; a different number
//! of responses than calls → "Please ensure that the number of function
//! response parts is equal to the number of function call parts of the
//! function call turn."; different names (the mock's own wording) → "Please
//! ensure that the function response names match the function call names of
//! the function call turn."; a function call turn not after a user or
//! function response turn → "Please ensure that function call turn comes
//! immediately after a user turn or after a function response turn."; for
//! `gemini-3*` models, the first `functionCall` part of each model turn of
//! the current turn (after the last user content that is not a function
//! response) must carry a non-empty `thoughtSignature` (any valid base64,
//! so Google's documented stand-ins pass) → "Function call is missing a
//! thought_signature in functionCall parts. This is required for tools to
//! work correctly, and missing thought_signature may lead to degraded model
//! performance. Additional data, function call `default_api:NAME` ,
//! position N. Please refer to
//! <https://ai.google.dev/gemini-api/docs/thought-signatures> for more
//! details." (N = the content's 1-based position).
//!
//! **Answer**, pretty-printed with two spaces and `<`, `>`, `&` escaped as
//! `\u003c` & co. (`application/json; charset=UTF-8`):
//! `{"candidates":[{"content":{"parts":[…],"role":"model"},"finishReason",
//! "index":0}],"usageMetadata":{…},"modelVersion":MODEL,"responseId":23
//! alphanumerics}`. Parts: a thought part `{"text":THINKING,"thought":true}`
//! first when `includeThoughts` is true, then `{"text":…}` (possibly empty)
//! or the `{"functionCall":{"name","args"}}` parts; the first call carries
//! `thoughtSignature` for `gemini-3*` models or when thinking is on.
//! `finishReason` `STOP` (also for stop sequences and calls, which add
//! `"finishMessage": "Model generated function call(s)."`) or `MAX_TOKENS`.
//! `usageMetadata`: `promptTokenCount`, `candidatesTokenCount` (the reply's
//! tokens, thinking excluded), `totalTokenCount`, `promptTokensDetails:
//! [{"modality":"TEXT","tokenCount"}]`, and `thoughtsTokenCount` when
//! thinking happened (shown or not).
//!
//! **Streaming.** Chunks are whole `GenerateContentResponse`s: thought text
//! and reply text in chunks of three words, function calls whole in one
//! chunk; every chunk carries `usageMetadata` with the candidate tokens so
//! far (thoughts counted in full from the first), `modelVersion` and the
//! same `responseId`; the last one has `finishReason`. With `?alt=sse` each
//! is `data: ` + one-line JSON in Google's spelling (`{"key": value,"k2":
//! …}`) + `\r\n\r\n` (`text/event-stream`); without it the body is a JSON
//! array written incrementally: `[` + the first pretty chunk, then `\n,\r\n`
//! + each next one, then `\n]` (`application/json; charset=UTF-8`).
//!
//! `:countTokens` takes `contents` or a whole `generateContentRequest` and
//! answers `{"totalTokens": N, "promptTokensDetails": [...]}`. `GET
//! /models` lists `gemini-2.0-flash`, `gemini-2.5-flash`, `gemini-2.5-pro`,
//! `gemini-3-pro-preview` and the `gemini-*`/`gemma-*` entries of
//! [`MockOptions::models`] as `{"name": "models/ID", "version",
//! "displayName", "description", "inputTokenLimit", "outputTokenLimit",
//! "supportedGenerationMethods", "temperature", "topP", "topK",
//! "maxTemperature", "thinking"}`.
//!
//! # Responses API
//!
//! **Validation** (OpenAI-shaped 400s): an unknown top-level field →
//! "Unknown parameter: 'NAME'." (`unknown_parameter`); no `model` →
//! `missing_required_parameter`; `input` items: a role other than
//! assistant/system/developer/user → `invalid_value` on `input[N].role`,
//! missing `call_id`/`name`/`arguments`/`output` → missing parameter;
//! a `function_call_output` whose `call_id` no earlier `function_call`
//! has → "No tool call found for function call output with call_id ID."
//! (param `input`); a `function_call` never answered later → "No tool
//! output found for function call ID." (param `input`); a reasoning item
//! whose `encrypted_content` is not the mock's for its id → "The encrypted
//! content for item ID could not be verified."; a function tool without a
//! top-level `name` (a Chat Completions-style tool) →
//! `Missing required parameter: 'tools[N].name'.`; an unknown `previous_response_id` → "Previous
//! response with id 'ID' not found." (code `previous_response_not_found`);
//! a model not in [`MockOptions::models`] → 400 "The requested model 'NAME'
//! does not exist." (code `model_not_found`).
//!
//! **Answer.** The response object (`id` `resp_` + 48 hex, `object`,
//! `created_at`, `status` `completed` or `incomplete` with
//! `incomplete_details: {"reason": "max_output_tokens"}`, the request's
//! settings echoed, `output`, `usage{input_tokens,
//! input_tokens_details.cached_tokens: 0, output_tokens,
//! output_tokens_details.reasoning_tokens, total_tokens}`). Output items: a
//! `reasoning` item (`rs_…`) first when reasoning is on, whose `summary`
//! holds the thinking text when `reasoning.summary` is set and which has
//! `encrypted_content` when `include` asks for
//! `reasoning.encrypted_content`; then a `message` item (`msg_…`, one
//! `output_text` part with empty `annotations` and `logprobs`) or the
//! `function_call` items.
//!
//! **Storage.** Unless `store: false`, the conversation (input plus output,
//! as input items) is kept for `previous_response_id` and the response for
//! `GET /v1/responses/{id}` (404 "Response with id 'ID' not found."); the
//! 4096 most recent are kept.
//!
//! **Streaming** (`event:` lines, `sequence_number` counting from 0):
//! `response.created` and `response.in_progress` (status `in_progress`, no
//! output, null usage); per reasoning item `response.output_item.added`,
//! (with a summary: `response.reasoning_summary_part.added`, one
//! `response.reasoning_summary_text.delta` per word,
//! `response.reasoning_summary_text.done`,
//! `response.reasoning_summary_part.done`), `response.output_item.done`;
//! per message `response.output_item.added`, `response.content_part.added`,
//! one `response.output_text.delta` per word, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`; per function
//! call `response.output_item.added` (empty `arguments`),
//! `response.function_call_arguments.delta` in 8-character pieces,
//! `response.function_call_arguments.done`, `response.output_item.done`;
//! finally `response.completed` (or `response.incomplete`) with the full
//! response.
//!
//! # Azure
//!
//! Deployment routes without a non-empty `api-version` query parameter get
//! 404 `{"error":{"code":"404","message":"Resource not found"}}`; Foundry
//! routes get 400 `{"error":{"code":"MissingApiVersionParameter","message":
//! "The api-version query parameter (?api-version=) is required for all
//! requests."}}`. On deployment routes the deployment is the model (the
//! body's `model` is ignored); a deployment (or, on the v1 and Foundry
//! routes, a model) not in [`MockOptions::models`] gets 404
//! `{"error":{"code":"DeploymentNotFound","message":"The API deployment for
//! this resource does not exist. ..."}}`. Chat answers carry Azure's
//! content-filter verdicts (`prompt_filter_results` and each choice's
//! `content_filter_results`, all `safe` / not detected); streams open with
//! Azure's choice-less chunk (`"choices":[]`, empty `id`, `model` and
//! `object`, the `prompt_filter_results`). Otherwise the chat, embeddings
//! and Responses rules and validation errors are OpenAI's.
//!
//! **Embeddings.** Each input (string, or token-id array) seeds a SplitMix64
//! generator with its FNV-1a hash; the vector is unit length, 1536 wide
//! (3072 for `*-3-large`), and `dimensions: d` returns the first `d`
//! components renormalised. `prompt_tokens` = ceil(chars / 4) per string
//! (at least 1) or the number of token ids. `encoding_format: "base64"` gives
//! little-endian f32 bytes in standard base64.
//!
//! **Images.** `n` results; `url` (default for DALL·E) or `b64_json` (always
//! for `gpt-image-*`), both the same 1×1 PNG; `revised_prompt` (= the prompt)
//! only for `dall-e-3`.
//!
//! **Transcriptions/translations.** Multipart `file` and `model` are required.
//! `text` is `"mock transcription of FILENAME (N bytes) by MODEL"`
//! (`translation` for `/audio/translations`), where N is the uploaded file's
//! exact byte length. `duration` = N / 16000 seconds (2 decimals).
//! `response_format` `json` (default; `{"text", "usage"}`), `text`, `srt`,
//! `vtt` or `verbose_json` (`task`, `language`, `duration`, `text`, one segment,
//! `usage`, and `words` when `timestamp_granularities[]=word`).
//!
//! **Speech.** Body length = min(1000 × input characters, 1 MiB); byte `i`
//! is `i % 251`; sent as a stream of 4096-byte chunks (with `chunk_delay`
//! between them). Content type by `response_format`: `audio/mpeg` (mp3,
//! default), `audio/opus`, `audio/aac`, `audio/flac`, `audio/wav`, `audio/pcm`.
//!
//! **Moderations.** One result per input string (a multi-modal part array is
//! one input). An input is flagged iff its text contains `"kill"` in any case
//! or `"FLAG_ME"` exactly; flagged inputs have `categories.violence = true`
//! and `category_scores.violence = 0.98`. All 13 OpenAI categories
//! (including slashed ones such as `self-harm/intent`) are always present.
//!
//! **Models.** Unknown models get 404 `model_not_found` ("The model `x` does
//! not exist or you do not have access to it.") on every OpenAI endpoint that
//! takes one; `GET /v1/models` lists [`MockOptions::models`].
//!
//! # Faults
//!
//! [`MockServer::push_fault`] queues a [`Fault`]; each request takes the
//! *first queued fault that matches it* (`only_model` compares with the
//! request's model — the body's `model`, Gemini's path model or Azure's
//! deployment — and `only_key` with its key), so non-matching faults wait for
//! their request. See [`FaultKind`] for what each does. Faults answer in the
//! route's dialect: OpenAI-shaped on the OpenAI and Azure routes; on the
//! Anthropic routes `RateLimited` is a 429 `rate_limit_error` with
//! `retry-after`, `InsufficientQuota` the credit-balance 400, `InvalidKey`
//! 401 "invalid x-api-key", `ServerError` 500 `api_error` "Internal server
//! error", `Overloaded` 529, `BadRequest` a 400 `invalid_request_error`,
//! `ContextLengthExceeded` 400 "prompt is too long: N tokens > 200000
//! maximum"; on the Gemini routes `RateLimited` is a `RESOURCE_EXHAUSTED`
//! quota 429, `InsufficientQuota` the "limit: 0" 429, `InvalidKey` 400
//! `API_KEY_INVALID`, `ServerError` 500 `INTERNAL` "An internal error has
//! occurred. ...", `Overloaded` 503 `UNAVAILABLE`, `BadRequest` 400
//! `INVALID_ARGUMENT`, `ContextLengthExceeded` 400 "The input token count (N)
//! exceeds the maximum number of tokens allowed (1048576).".
//!
//! # Vertex AI
//!
//! **Token endpoint.** `POST /token` takes the JWT-bearer grant
//! (`application/x-www-form-urlencoded`:
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`)
//! and checks, in order: the grant type (else 400
//! `{"error":"unsupported_grant_type","error_description":"Invalid grant_type: X"}`),
//! an `assertion` (else `invalid_request`), three base64url segments, header
//! `alg: RS256` and an RS256 (PKCS#1 v1.5, SHA-256) signature made with the
//! private key of the service account named by `iss`, as registered in
//! [`MockOptions::google_service_accounts`] (unknown `iss`: `invalid_grant`
//! "Invalid grant: account not found"; other alg or bad signature:
//! `invalid_grant` "Invalid JWT Signature."); `aud` equal to Google's
//! `https://oauth2.googleapis.com/token` or to the mock's own `…/token` URL
//! (else `invalid_grant` "Invalid JWT: Failed audience check. The right
//! audience is URL"); `scope` containing
//! `https://www.googleapis.com/auth/cloud-platform` (else 400
//! `invalid_scope` "Invalid OAuth scope or ID token audience provided.");
//! integer `iat`/`exp` with `exp > iat`, `exp - iat ≤ 3600`, `iat` at most 5
//! minutes ahead and `exp` not past (else `invalid_grant` "Invalid JWT: Token
//! must be a short-lived token (60 minutes) and in a reasonable timeframe.
//! Check your iat and exp values in the JWT claim."). All refusals are 400
//! `{"error","error_description"}`. Success: `{"access_token":
//! "ya29.mock-"+48 hex, "expires_in": 3599, "token_type": "Bearer"}`; the
//! token lives 3599 s of the mock's clock. [`MockServer::google_token_requests`]
//! counts every `POST /token`; [`MockServer::expire_google_tokens`] expires
//! all tokens issued so far. Time is the mock's clock (see
//! [`MockServer::set_clock`]).
//!
//! **Bearer checks** (project routes): no bearer token → 401
//! `UNAUTHENTICATED` "Request is missing required authentication
//! credential. …" (`ErrorInfo` reason `CREDENTIALS_MISSING`); a token the
//! mock never issued → 401 "Request had invalid authentication credentials.
//! …" (`ACCESS_TOKEN_TYPE_UNSUPPORTED`); an expired one → the same with
//! `ACCESS_TOKEN_EXPIRED`. These are Google-shaped on the Claude routes
//! too. The bearer token is the request's key for faults and counters.
//!
//! **Gemini routes** answer exactly as the Gemini API (parsing, validation,
//! answers, streams) with the model from the path; an unknown model is 404
//! "Publisher Model `projects/P/locations/L/publishers/google/models/M` was
//! not found or your project does not have access to it. …".
//!
//! **Claude routes** answer as the Messages API, except: the model comes
//! from the path (and is echoed in `model`); the body must carry
//! `anthropic_version: "vertex-2023-10-16"` (missing → 400
//! "anthropic_version: Field required", other → "anthropic_version: Input
//! should be 'vertex-2023-10-16'") and must not carry `model` ("model: Extra
//! inputs are not permitted"); no `anthropic-version` header is needed;
//! `:streamRawPredict` streams whatever the body's `stream` says.
//!
//! # Bedrock
//!
//! **SigV4.** With `Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
//! SignedHeaders=…, Signature=…` the mock rebuilds the canonical request
//! from what it received — method; the path with each segment decoded then
//! URI-encoded twice (`%3A` → `%253A`, as every service but S3); the query
//! decoded, re-encoded and sorted; the headers `SignedHeaders` names, values
//! trimmed and inner spaces folded (HTTP/2's `:authority` stands for
//! `host`); the hex SHA-256 of the body actually received — and checks,
//! in order: a SigV4 header with `Credential`, `SignedHeaders` and
//! `Signature` (else 403 `IncompleteSignatureException`); an access key in
//! [`MockOptions::aws_credentials`] (else 403
//! `UnrecognizedClientException` "The security token included in the
//! request is invalid."); an `x-amz-date` header (else
//! `IncompleteSignatureException`); `host` signed, scope terminator
//! `aws4_request`, service `bedrock`, region [`MockOptions::aws_region`],
//! scope date equal to the `x-amz-date` day, and `x-amz-date` within 5
//! minutes of the mock's clock (else 403 `InvalidSignatureException` in
//! AWS's words, e.g. "Signature expired: X is now earlier than Y (Z - 5
//! min.)"); finally the HMAC-SHA256 signature with the key derived from the
//! secret (else 403 `InvalidSignatureException` "The request signature we
//! calculated does not match the signature you provided. Check your AWS
//! Secret Access Key and signing method. Consult the service documentation
//! for details."). No `Authorization` at all: 403
//! `MissingAuthenticationTokenException` "Missing Authentication Token". The
//! access key id is the request's key (faults, counters). `Authorization:
//! Bearer` is a Bedrock API key, checked like any key.
//!
//! **Errors** are AWS REST-JSON: the status, `x-amzn-ErrorType:
//! NAME:http://internal.amazon.com/coral/com.amazon.bedrock/` (auth errors:
//! `…/com.amazon.coral.service/`) and `{"message": …}`. Every answer
//! carries `x-amzn-RequestId`. Malformed JSON: 400 `SerializationException`.
//!
//! **Validation** (400 `ValidationException`), in order: a model id that is
//! neither `provider.model` (optionally behind a cross-region prefix such as
//! `us.`), an ARN, nor in [`MockOptions::models`] → "The provided model
//! identifier is invalid."; `messages` empty or not starting with `user` →
//! "A conversation must start with a user message. Try again with a
//! conversation that starts with a user message."; a role other than
//! user/assistant → "1 validation error detected: Value 'R' at
//! 'messages.N.member.role' failed to satisfy constraint: Member must
//! satisfy enum value set: [user, assistant]"; empty content → "The content
//! field in the Message object at messages.N is empty. Add a ContentBlock
//! object to the content field and try again."; a content block that does
//! not set exactly one member; blank text → "The text field in the
//! ContentBlock object at messages.N.content.M is blank. Add text to the
//! text field, and try again."; images only in user messages, `format` one
//! of png/jpeg/gif/webp (else the enum constraint message), and the
//! base64 `source.bytes` really starting like an image of that format (else
//! "The model returned the following errors: Could not process image");
//! two consecutive messages of one role → "A conversation must alternate
//! between user and assistant roles. Make sure the conversation alternates
//! between user and assistant roles and try again."; `toolUse`/`toolResult`
//! without `toolConfig` → "The toolConfig field must be defined when using
//! toolUse and toolResult content blocks."; an assistant `toolUse` not
//! answered in the next message → "Expected toolResult blocks at
//! messages.N.content for the following Ids: ID1, ID2"; a `toolResult` for
//! an id the previous message did not use → "The number of toolResult
//! blocks at messages.N.content exceeds the number of toolUse blocks of
//! previous turn."; for `anthropic.` models, replayed `reasoningContent`
//! must carry the mock's signature for its text ("The model returned the
//! following errors: messages.N.content.M: Invalid `signature` in
//! `thinking` block"); blank `system` text; `inferenceConfig.maxTokens ≥ 1`,
//! `temperature` and `topP` in [0, 1], non-empty `stopSequences` (AWS's
//! "1 validation error detected: Value 'V' at 'inferenceConfig.F' failed to
//! satisfy constraint: …"); `toolConfig.tools` non-empty, each `toolSpec`
//! named `[a-zA-Z0-9_-]+` (≤ 64) with `inputSchema.json`; `toolChoice` one of
//! `auto`/`any`/`tool{name}`. With Claude's thinking on, `budget_tokens ≥
//! 1024` and `< maxTokens`, and a tool loop in progress must replay the
//! reasoning first (Anthropic's rule and words, prefixed "The model returned
//! the following errors: "). Unknown top-level fields are ignored, as AWS
//! does.
//!
//! **Answer.** `{"metrics":{"latencyMs"},"output":{"message":{"content",
//! "role":"assistant"}},"stopReason","usage":{"inputTokens","outputTokens",
//! "totalTokens"}}`; `latencyMs` = `latency` + `token_delay` × output
//! tokens. Content: `{"reasoningContent":{"reasoningText":{"text",
//! "signature"}}}` first when reasoning is on (`additionalModelRequestFields`
//! `thinking.type` `enabled`/`adaptive`, or `reasoningConfig` /
//! `reasoning_config` with `type: "enabled"`; signed like Anthropic
//! thinking), then `{"text"}` (possibly empty) or the `{"toolUse":
//! {"toolUseId": "tooluse_"+22 alphanumerics, "name", "input"}}` blocks.
//! `stopReason`: `end_turn`, `max_tokens`, `stop_sequence` (with
//! `additionalModelResponseFields: {"stop_sequence": S}`) or `tool_use`.
//! Input tokens follow the prompt rule over system texts, message texts and
//! tool results (text and every string of `json`). **Prompt caching:** the
//! prefix before the last `cachePoint` block (system, then message blocks)
//! is written the first time its exact content is seen for the model and
//! read afterwards; `usage` then also has `cacheReadInputTokens` and
//! `cacheWriteInputTokens` (ceil(prefix characters / 4)), `inputTokens`
//! excludes them and `totalTokens` includes them.
//!
//! **ConverseStream** answers `application/vnd.amazon.eventstream`: each
//! message is a prelude (total length, headers length, CRC32 of those 8
//! bytes), string headers `:event-type`, `:content-type: application/json`,
//! `:message-type: event`, a JSON payload, and a CRC32 of everything before
//! it. Events: `messageStart {"role"}`; with reasoning, one
//! `contentBlockDelta` `{"reasoningContent":{"text"}}` per word then one
//! `{"reasoningContent":{"signature"}}` and a `contentBlockStop` (block 0);
//! the text as one `{"text"}` delta per word (no `contentBlockStart`) and a
//! `contentBlockStop`; per tool call a `contentBlockStart`
//! `{"start":{"toolUse":{"toolUseId","name"}}}`, `{"toolUse":{"input"}}`
//! deltas in 8-character pieces and a `contentBlockStop`; `messageStop
//! {"stopReason"}`; `metadata {"usage","metrics":{"latencyMs"}}`. Every
//! payload ends with Bedrock's `"p"` padding field (a prefix of
//! `abc…XYZ0…9`). `ErrorMidStream` ends with an exception message
//! (`:message-type: exception`, `:exception-type: internalServerException`,
//! `{"message"}`).
//!
//! **Faults**: `RateLimited` → 429 `ThrottlingException` "Too many requests,
//! please wait before trying again."; `InsufficientQuota` → 403
//! `AccessDeniedException`; `InvalidKey` → 403
//! `UnrecognizedClientException`; `Overloaded` → 503
//! `ServiceUnavailableException`; `BadRequest` → 400 `ValidationException`
//! with the message; `ContextLengthExceeded` → 400 "Input is too long for
//! requested model."; `ServerError` → 500 `InternalServerException`. The same
//! answers serve limits, exhausted keys and overload.
//!
//! # Cohere
//!
//! **Validation** (400 `{"id","message"}`, messages the mock's own, prefixed
//! "invalid request: "): `model` required; `messages` required and
//! non-empty; roles user/assistant/system/tool; user and system content a
//! string or `text`/`image_url`/`document` blocks; assistant messages with
//! content or `tool_calls` whose `id` is set and `function.arguments` is a
//! JSON string; every tool call answered by a `tool` message with its
//! `tool_call_id` before the next non-tool message (`messages[N]: tool call
//! 'ID' has no tool result message`), and every `tool` message answering
//! one ("… does not match any tool call of the preceding assistant
//! message"); tools `{"type":"function","function":{"name","parameters"}}`;
//! `tool_choice` `REQUIRED` or `NONE`; `thinking.type` `enabled` or
//! `disabled`; `max_tokens` positive. A model that is not `command*`,
//! `c4ai-*`, `north-*` or in [`MockOptions::models`] → 404 "model 'M' not
//! found, make sure the correct model ID was used and that you have access
//! to the model.". Malformed JSON: 400 "invalid request: failed to decode
//! JSON body".
//!
//! **Answer.** `{"id": UUID, "message": {"role":"assistant", "content":
//! [{"type":"thinking","thinking"}?, {"type":"text","text"}]}, "finish_reason",
//! "usage"}`; with tool calls the message has `tool_plan` ("I will call A
//! and B.", not counted as output) and `tool_calls: [{"id": NAME_+12
//! lowercase alphanumerics, "type":"function", "function":{"name",
//! "arguments"}}]` (thinking, if any, stays in `content`). Calls are
//! parallel whenever the rules pick several. `finish_reason`: `COMPLETE`,
//! `MAX_TOKENS`, `STOP_SEQUENCE`, `TOOL_CALL`. `usage`: `billed_units
//! {input_tokens, output_tokens}` by the shared rules and `tokens` with
//! `input_tokens` 10 higher (Cohere's unbilled preamble). Thinking is on
//! with `thinking.type: "enabled"`.
//!
//! **Streaming** (`text/event-stream`, `event: NAME` + `data: {"type":
//! NAME, …}`, no `[DONE]`): `message-start` (`id`, `delta.message` with
//! role and empty content/tool_plan/tool_calls/citations); per content block
//! `content-start` (`delta.message.content {"type":"thinking"|"text", …:
//! ""}`), one `content-delta` per word, `content-end`, with `index`
//! counting blocks; for tools, one `tool-plan-delta` per word of the plan,
//! then per call `tool-call-start` (`index`, `delta.message.tool_calls`
//! with id, type, name and empty arguments), `tool-call-delta` argument
//! pieces of 8 characters, `tool-call-end`; finally `message-end` with
//! `delta.finish_reason` and `delta.usage`. `ErrorMidStream` ends with a
//! `message-end` whose delta has `error` and `finish_reason: "ERROR"`.
//!
//! **Errors and faults** (`{"id","message"}`): invalid key 401 "invalid api
//! token"; `RateLimited` 429; `InsufficientQuota` 429 (the trial-key
//! message); `Overloaded` 503; `BadRequest` 400 "invalid request: MESSAGE";
//! `ContextLengthExceeded` 400 "invalid request: too many tokens: total
//! number of tokens in the prompt cannot exceed 256000 - received N. …";
//! `ServerError` 500.
//!
//! # Cloudflare
//!
//! **Request**: `messages` (roles system/user/assistant/tool; content a
//! string or `text`/`image_url` parts; an assistant message with
//! `tool_calls` may omit it) or `prompt`, `stream`, `max_tokens` (positive),
//! `tools` in the classic shape (`{"name","description","parameters"}`) or
//! OpenAI's (`{"type":"function","function":{…}}`). Violations: 400 code
//! 5006 "AiError: Bad input: Error: …" (the mock's wording). A model that
//! is not `@cf/…`, `@hf/…` or in [`MockOptions::models`]: 400 code 5007 "No
//! such model M or task". The model never thinks; there is no tool choice
//! and no stop sequences.
//!
//! **Answer**: `{"result": {"response": TEXT, "usage": {"prompt_tokens",
//! "completion_tokens", "total_tokens"}}, "success": true, "errors": [],
//! "messages": []}`; with tool calls `response` is `null` and `tool_calls`
//! are classic `{"name","arguments":{…}}` when the tools were classic, or
//! OpenAI-style `{"id","type":"function","function":{"name","arguments":
//! "…"}}` when they were OpenAI-style. **Streaming** (`text/event-stream`):
//! `data: {"response": WORD, "p": PADDING}` per word, one `data:
//! {"response":"","tool_calls":[…]}` event with all calls, `data:
//! {"response":"","usage":{…}}`, `data: [DONE]`. `ErrorMidStream` ends with
//! `data: {"errors":[{"code":3043,"message":"Internal server error"}]}`.
//!
//! **Errors** use the envelope `{"result":null,"success":false,"errors":
//! [{"code","message"}],"messages":[]}`: invalid token 401 code 10000
//! "Authentication error"; `RateLimited` 429 code 971 "Please wait and
//! consider throttling your request speed"; `InsufficientQuota` 429 code
//! 3036 (daily neurons); `Overloaded` 429 code 3040 "No more data centers to
//! forward the request to"; `BadRequest` 400 code 5006 "AiError: Bad input:
//! MESSAGE"; `ContextLengthExceeded` 413 code 5021 "The estimated number of input and
//! maximum output tokens (N) exceeded this model context window limit (M)."; `ServerError`
//! 500 code 3043.
//!
//! # Databricks
//!
//! Databricks Model Serving's chat endpoints (see the `databricks` module for the full
//! contract): OpenAI chat bodies, the endpoint named by the path (`invocations`) or by
//! `model` (`chat/completions`); `databricks-*` endpoints and [`MockOptions::models`] exist,
//! others are 404 `RESOURCE_DOES_NOT_EXIST`. Claude endpoints think with Anthropic's
//! `thinking` object (`budget_tokens` ≥ 1024 and below `max_tokens`, else 400) and refuse
//! `reasoning_effort`; the thinking comes back as a signed `{"type":"reasoning","summary":
//! [{"type":"summary_text","text","signature"}]}` content block before the text (streamed:
//! one block per word, then one carrying the signature), and must come back in history with
//! that signature. Answers: `chat.completion` with `usage` `{prompt_tokens,
//! completion_tokens, total_tokens}`; streams are `chat.completion.chunk` events, a usage
//! chunk with `stream_options.include_usage`, and `data: [DONE]`; `ErrorMidStream` ends with
//! an OpenAI-style `data: {"error":{...}}` event.
//!
//! **Errors** use `{"error_code","message"}`: `RateLimited` 429 `REQUEST_LIMIT_EXCEEDED`;
//! `InsufficientQuota` 403 `PERMISSION_DENIED` "... Databricks-set rate limit of 0";
//! `Overloaded` 503 `TEMPORARILY_UNAVAILABLE`; `BadRequest` 400 `BAD_REQUEST` with the
//! message; `ContextLengthExceeded` 400 `BAD_REQUEST` "Bad request: prompt is too long: N
//! tokens > 200000 maximum"; `ServerError` 500 `INTERNAL_ERROR`.
//!
//! # Recording
//!
//! With `record` on, [`MockServer::requests`] returns every request as
//! received: method, path, query, headers, raw body, and the [`Endpoint`]
//! that served it; [`RecordedRequest::model`] and
//! [`RecordedRequest::is_stream`] read the model and streaming flag the way
//! the endpoint's format carries them (Bedrock's model id percent-decoded;
//! Vertex's and Cloudflare's from the path; Bedrock's `converse-stream` and
//! Vertex's stream methods are streams).

mod admin;
mod anthropic;
mod audio;
mod azure;
mod bedrock;
mod body;
mod chat;
mod clock;
mod cloudflare;
mod cohere;
mod convo;
mod databricks;
mod embeddings;
mod errors;
mod eventstream;
mod flavor;
mod gemini;
mod gemini_fields;
mod google_auth;
mod images;
mod keystate;
mod models;
mod moderations;
mod multipart;
mod ordered_json;
mod ratelimit;
mod responses;
mod route;
mod server;
mod sigv4;
mod stream;
mod util;

pub use route::Endpoint;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::Shared;

/// A group of keys draining one budget (an OpenAI organization, an Anthropic
/// organization, a Gemini project, an Azure deployment).
///
/// `None` limits are not enforced (headers then report 10,000 RPM and
/// 1,000,000 TPM). A key listed in several scopes belongs to the first.
#[derive(Clone, Debug)]
pub struct ScopeSpec {
    /// E.g. `"org-alpha"`; sent as `openai-organization` (OpenAI, Groq and
    /// Azure flavours) or `anthropic-organization-id` (Anthropic routes), and
    /// quoted in 429 messages.
    pub name: String,
    pub keys: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute (Gemini: input tokens; Anthropic flavour: both the
    /// input and the output token limit).
    pub tpm: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u32>,
}

impl ScopeSpec {
    /// A scope with no limits yet; see [`ScopeSpec::rpm`] and friends.
    pub fn new(name: &str, keys: &[&str]) -> ScopeSpec {
        ScopeSpec {
            name: name.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            rpm: None,
            tpm: None,
            rpd: None,
        }
    }

    pub fn rpm(mut self, n: u32) -> ScopeSpec {
        self.rpm = Some(n);
        self
    }

    pub fn tpm(mut self, n: u64) -> ScopeSpec {
        self.tpm = Some(n);
        self
    }

    pub fn rpd(mut self, n: u32) -> ScopeSpec {
        self.rpd = Some(n);
        self
    }
}

/// Whose rate-limit semantics, headers and error bodies the mock reproduces.
/// See the crate docs ("Rate limits") for each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitFlavor {
    /// Continuous token buckets (RPM/60 per second), TPM charged at admission
    /// and reconciled, failed requests count, `x-ratelimit-*` headers.
    #[default]
    OpenAi,
    /// Like OpenAI, but `x-ratelimit-*-requests` report the daily budget and
    /// `retry-after` comes only with a 429.
    Groq,
    /// 10-second RPM sub-windows, minute token windows, Azure bodies.
    Azure,
    /// Minute windows starting at :00, daily window ending at midnight
    /// America/Los_Angeles, no rate-limit headers, `RESOURCE_EXHAUSTED`.
    Gemini,
    /// Token buckets for RPM, input and output tokens per minute.
    Anthropic,
}

impl std::str::FromStr for LimitFlavor {
    type Err = String;

    fn from_str(s: &str) -> Result<LimitFlavor, String> {
        match s.to_ascii_lowercase().as_str() {
            "openai" => Ok(LimitFlavor::OpenAi),
            "groq" => Ok(LimitFlavor::Groq),
            "azure" => Ok(LimitFlavor::Azure),
            "gemini" => Ok(LimitFlavor::Gemini),
            "anthropic" => Ok(LimitFlavor::Anthropic),
            other => Err(format!(
                "unknown flavor {other:?} (expected openai, groq, azure, gemini or anthropic)"
            )),
        }
    }
}

/// Per-key counters, by the status the mock answered (see
/// [`MockServer::key_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Requests that carried this key.
    pub received: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 429 (rate limits, but also `insufficient_quota`).
    pub rate_limited: u64,
    /// Answered 401, or Gemini's 400 `API_KEY_INVALID`.
    pub unauthorized: u64,
    /// Anything else, including connection resets.
    pub other_errors: u64,
}

/// How a [`MockServer`] behaves.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Served by `GET /v1/models`; requests naming any other model get 404.
    pub models: Vec<String>,
    /// Accepted keys; empty accepts any non-empty key. Keys of `scopes`,
    /// `revoked_keys` and `exhausted_keys` (and runtime-flagged keys) are
    /// known to the provider too.
    pub api_keys: Vec<String>,
    /// Per-key requests-per-minute limit, enforced with real 429s.
    pub rpm_per_key: Option<u32>,
    /// Delay before every response's headers.
    pub latency: Duration,
    /// Delay between streamed chunks (SSE events, speech chunks).
    pub chunk_delay: Duration,
    /// Fixed assistant reply; `None` derives it from the last user message.
    pub reply: Option<String>,
    /// Keep every request for [`MockServer::requests`].
    pub record: bool,
    /// Quota scopes; keys outside every scope follow `rpm_per_key`.
    pub scopes: Vec<ScopeSpec>,
    /// Whose limit semantics, headers and bodies to reproduce.
    pub flavor: LimitFlavor,
    /// Keys answered 401 `invalid_api_key` (Gemini flavour: 400
    /// `INVALID_ARGUMENT`, reason `API_KEY_INVALID`).
    pub revoked_keys: Vec<String>,
    /// Keys out of credit: 429 `insufficient_quota` (Gemini: 429 with
    /// "limit: 0"; Anthropic routes: 400 "Your credit balance is too low").
    pub exhausted_keys: Vec<String>,
    /// Generation time per output token: buffered chat answers wait
    /// `completion tokens × token_delay` (per choice) before their headers;
    /// streams wait it before each token-bearing event (on top of
    /// `chunk_delay`). `latency` is the time to first token.
    pub token_delay: Duration,
    /// OpenAI: "unsuccessful requests contribute to your per-minute limit".
    /// Requests the limiter admitted always count, whatever their outcome;
    /// with this on, refused ones (429) also spend one request of their
    /// scope's RPM bucket (OpenAI and Groq flavours), so a retry storm keeps
    /// a scope locked. The retry hint then includes that spend. Off by
    /// default, which matches the observed hints ("Limit 3, Used 3,
    /// Requested 1. Please try again in 20s").
    pub refused_requests_count: bool,
    /// Serve control routes under `/mock/` (not counted, recorded or
    /// limited), so a running binary can be driven like the methods of
    /// [`MockServer`]: `POST /mock/keys/{key}/revoke` (also `restore`,
    /// `exhaust`, `replenish`), `POST /mock/overload?on=true|false`,
    /// `POST /mock/overload?next=N`, `GET /mock/key-stats` (`{"keys":[{"key",
    /// "received","ok","rate_limited","unauthorized","other_errors"}]}`).
    pub admin: bool,
    /// The wall-clock instant that clock value 0 stands for (see
    /// [`MockServer::set_clock`]); it places Gemini's minute and Pacific-day
    /// windows and Anthropic's RFC 3339 resets. Default: when the server
    /// started.
    pub clock_origin: Option<SystemTime>,
    /// Bedrock: the access keys whose SigV4 signatures the mock verifies
    /// (any other access key is unrecognized).
    pub aws_credentials: Vec<AwsCredentials>,
    /// Bedrock: the region signatures must be scoped to.
    pub aws_region: String,
    /// Vertex AI: service accounts whose JWT assertions `POST /token`
    /// accepts.
    pub google_service_accounts: Vec<GoogleServiceAccount>,
}

/// An AWS access key pair Bedrock accepts (see [`MockOptions::aws_credentials`]).
#[derive(Clone, Debug)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl AwsCredentials {
    pub fn new(access_key_id: &str, secret_access_key: &str) -> AwsCredentials {
        AwsCredentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
        }
    }
}

/// A Google service account the token endpoint knows: its email (the JWT
/// `iss`) and RSA public key (SubjectPublicKeyInfo or PKCS#1, PEM or DER).
/// A key that does not parse makes [`MockServer::start`] fail.
#[derive(Clone, Debug)]
pub struct GoogleServiceAccount {
    pub email: String,
    key: google_auth::KeyData,
}

impl GoogleServiceAccount {
    pub fn from_pem(email: &str, public_key_pem: &str) -> GoogleServiceAccount {
        GoogleServiceAccount {
            email: email.to_owned(),
            key: google_auth::KeyData::Pem(public_key_pem.to_owned()),
        }
    }

    pub fn from_der(email: &str, public_key_der: &[u8]) -> GoogleServiceAccount {
        GoogleServiceAccount {
            email: email.to_owned(),
            key: google_auth::KeyData::Der(public_key_der.to_vec()),
        }
    }
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            models: [
                "gpt-4o-mini",
                "gpt-4o",
                "text-embedding-3-small",
                "whisper-1",
                "tts-1",
                "dall-e-3",
                "omni-moderation-latest",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            api_keys: Vec::new(),
            rpm_per_key: None,
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            reply: None,
            record: true,
            scopes: Vec::new(),
            flavor: LimitFlavor::OpenAi,
            revoked_keys: Vec::new(),
            exhausted_keys: Vec::new(),
            token_delay: Duration::ZERO,
            refused_requests_count: false,
            admin: false,
            clock_origin: None,
            aws_credentials: Vec::new(),
            aws_region: "us-east-1".to_owned(),
            google_service_accounts: Vec::new(),
        }
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// In arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The endpoint (and so the wire format) that served the request.
    pub endpoint: Endpoint,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The key from `Authorization: Bearer <key>`.
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, key) = self.header("authorization")?.split_once(' ')?;
        let key = key.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
    }

    /// The model the request names: Gemini's path model, Azure's deployment,
    /// else the body's `model`.
    pub fn model(&self) -> Option<String> {
        if matches!(
            self.endpoint,
            Endpoint::BedrockConverse | Endpoint::BedrockConverseStream
        ) {
            return bedrock::model_in_path(&self.path);
        }
        route::model_in_path(self.endpoint, &self.path)
            .map(str::to_owned)
            .or_else(|| {
                self.json()?
                    .get("model")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
    }

    /// Whether the request asked for a streamed answer (`"stream": true`, or
    /// Gemini's `:streamGenerateContent`).
    pub fn is_stream(&self) -> bool {
        self.endpoint.streams()
            || self
                .json()
                .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
                .unwrap_or(false)
    }
}

/// A scripted misbehaviour for one upcoming request.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only a request whose `model` is this.
    pub only_model: Option<String>,
    /// Only a request authenticated with this bearer key.
    pub only_key: Option<String>,
}

/// What a [`Fault`] does to the request that takes it.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// 429 `rate_limit_exceeded` (type `requests`), `retry-after` /
    /// `retry-after-ms`, `x-ratelimit-remaining-requests: 0`.
    RateLimited { retry_after_secs: u64 },
    /// 429 with type and code `insufficient_quota`.
    InsufficientQuota,
    /// 401 `invalid_api_key` for the key that was sent.
    InvalidKey,
    /// 500 "The server had an error while processing your request. Sorry about that!"
    ServerError,
    /// 503 "The engine is currently overloaded, please try again later".
    Overloaded,
    /// 400 `invalid_request_error` with this message.
    BadRequest { message: String },
    /// 400 `context_length_exceeded` (param `messages`).
    ContextLengthExceeded,
    /// Any raw response.
    Status {
        status: u16,
        body: String,
        content_type: String,
    },
    /// Answer normally, but only after this extra delay.
    Delay(Duration),
    /// Close the connection without any response.
    ResetConnection,
    /// Streams (chat SSE, speech): send this many chunks, then drop the
    /// connection. Buffered responses: send the headers and the first half
    /// of the body, then drop the connection.
    DropMidStream { after_chunks: usize },
    /// Chat, Responses, Messages, Gemini: 200 with empty reply text, no
    /// tool calls, no thinking, 0 output tokens. Other endpoints answer
    /// normally.
    EmptyReply,
    /// Streams: send this many events, then the format's own in-stream
    /// error (chat: a `data: {"error":{...server_error}}` event and no
    /// `[DONE]`; Responses: `event: error`; Anthropic: `event: error` with
    /// `overloaded_error`; Gemini: an `INTERNAL` error object) and end the
    /// stream cleanly. Buffered requests fail as with `ServerError`.
    ErrorMidStream { after_events: usize },
}

impl Fault {
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            only_model: None,
            only_key: None,
        }
    }

    /// Restrict to requests for model `m`.
    pub fn for_model(mut self, m: &str) -> Fault {
        self.only_model = Some(m.to_owned());
        self
    }

    /// Restrict to requests authenticated with key `k`.
    pub fn for_key(mut self, k: &str) -> Fault {
        self.only_key = Some(k.to_owned());
        self
    }
}

impl From<FaultKind> for Fault {
    fn from(kind: FaultKind) -> Fault {
        Fault::new(kind)
    }
}

/// A running mock; dropping it shuts the server and its connections down.
pub struct MockServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(opts: MockOptions) -> std::io::Result<MockServer> {
        MockServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts).await
    }

    /// Starts on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts, addr)?);
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared)));
        Ok(MockServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: the OpenAI base URL (and Anthropic's
    /// routes live under it too).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// `http://127.0.0.1:PORT`: the base URL SDKs take for Anthropic,
    /// Gemini (`/v1beta/...`) and Azure (`/openai/...`).
    pub fn root_url(&self) -> String {
        let ip = self.addr.ip();
        if ip.is_unspecified() {
            format!("http://127.0.0.1:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Recorded requests in arrival order (empty when `record` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Requests received so far, recorded or not.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Queues a fault for the next request that matches it.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Replaces the reply text (`None` = derive from the last user message).
    pub fn set_reply(&self, text: Option<String>) {
        self.shared.set_reply(text);
    }

    /// From now on `key` is answered as revoked (401; Gemini: 400).
    pub fn revoke_key(&self, key: &str) {
        self.shared.keys.set_revoked(key, true);
    }

    /// Undoes [`MockServer::revoke_key`] (and `revoked_keys`).
    pub fn restore_key(&self, key: &str) {
        self.shared.keys.set_revoked(key, false);
    }

    /// From now on `key` is out of credit (429 `insufficient_quota`).
    pub fn exhaust_key(&self, key: &str) {
        self.shared.keys.set_exhausted(key, true);
    }

    /// Undoes [`MockServer::exhaust_key`] (and `exhausted_keys`).
    pub fn replenish_key(&self, key: &str) {
        self.shared.keys.set_exhausted(key, false);
    }

    /// Provider-wide overload storm: while on, every authenticated request is
    /// answered 503 "The engine is currently overloaded, please try again
    /// later" (Gemini: 503 `UNAVAILABLE`; Anthropic routes: 529
    /// `overloaded_error`), without counting against any limit. Turning it
    /// off also cancels [`MockServer::overload_next`].
    pub fn set_overloaded(&self, on: bool) {
        self.shared.keys.set_overloaded(on);
    }

    /// Overloads only the next `count` authenticated requests.
    pub fn overload_next(&self, count: u64) {
        self.shared.keys.overload_next(count);
    }

    /// Per-key counters: requests received, answered 2xx, 429, 401, other.
    ///
    /// Counting is on when `record` is, when anything key-related is
    /// configured (scopes, `rpm_per_key`, revoked or exhausted keys), or after
    /// the first runtime key change; a bare load-test server (`record: false`,
    /// nothing configured) counts nothing and takes no lock.
    pub fn key_stats(&self) -> BTreeMap<String, KeyStats> {
        self.shared.keys.snapshot()
    }

    /// `POST /token` requests received so far (successful or not).
    pub fn google_token_requests(&self) -> usize {
        self.shared.google.requests.load(Ordering::SeqCst)
    }

    /// Expires every access token issued so far: Vertex calls carrying one
    /// get 401 `UNAUTHENTICATED` (`ACCESS_TOKEN_EXPIRED`) from now on.
    pub fn expire_google_tokens(&self) {
        self.shared.google.expire_all();
    }

    /// Virtual time for deterministic limit tests: when set, the limiter reads
    /// this clock (milliseconds since [`MockOptions::clock_origin`]) instead of
    /// the wall clock. Set it before traffic: switching clocks mid-run moves
    /// time by the difference. `None` goes back to the wall clock.
    pub fn set_clock(&self, clock: Option<Arc<dyn Fn() -> u64 + Send + Sync>>) {
        self.shared.clock.set(clock);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
