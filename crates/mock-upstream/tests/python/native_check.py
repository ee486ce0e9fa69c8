"""Drives the mock's native routes with the official SDKs: `anthropic`
(Messages), `google-genai` (Gemini) and `openai` (Responses, Azure).

Run by tests/python_sdk_native.rs with MOCK_ROOT (http://127.0.0.1:PORT)
set. Every SDK parses, streams and accumulates the mock's answers with its
own types, so a wire-format slip fails here. Prints OK on success.
"""

import json
import os

import anthropic
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

ROOT = os.environ["MOCK_ROOT"]

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

# ---------------------------------------------------------------- Anthropic
a = anthropic.Anthropic(base_url=ROOT, api_key="sk-ant", max_retries=0)

m = a.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=64,
    system="be brief",
    messages=[{"role": "user", "content": "Hello there"}],
)
assert m.content[0].type == "text" and m.content[0].text == "You said: Hello there", m
assert m.stop_reason == "end_turn"
assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 4), m.usage

with a.messages.stream(
    model="claude-sonnet-4-5",
    max_tokens=4096,
    thinking={"type": "enabled", "budget_tokens": 1024},
    tools=[WEATHER],
    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
) as s:
    event_types = {e.type for e in s}
    final = s.get_final_message()
# The SDK's accumulator saw every delta kind.
assert {"thinking", "signature", "input_json", "content_block_stop", "message_stop"} <= event_types, event_types
assert [b.type for b in final.content] == ["thinking", "tool_use"], final.content
thinking, call = final.content
assert thinking.thinking == "Let me think about how to answer this." and thinking.signature
assert call.name == "get_weather" and call.input == {"city": "mock"}, call
assert call.id.startswith("toolu_01") and len(call.id) == len("toolu_") + 24
assert final.stop_reason == "tool_use"
assert final.usage.output_tokens == 8 + 4, final.usage

# Replaying the turn with the tool result (thinking block first, as required).
m2 = a.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=4096,
    thinking={"type": "enabled", "budget_tokens": 1024},
    tools=[WEATHER],
    messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ],
)
assert [b.type for b in m2.content] == ["thinking", "text"], m2.content
assert m2.content[1].text == "You said: What is the weather in Paris?"

try:
    a.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": "never mind"},
        ],
    )
    raise AssertionError("expected a 400")
except anthropic.BadRequestError as e:
    assert "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_x." in e.message, e.message

try:
    a.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected a 404")
except anthropic.NotFoundError as e:
    assert e.body["error"]["message"] == "model: no-such-model", e.body

n = a.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "abcdefgh"}])
assert n.input_tokens == 2, n

# ---------------------------------------------------------------- Gemini
g = genai.Client(api_key="AIza-test", http_options=types.HttpOptions(base_url=ROOT))

r = g.models.generate_content(model="gemini-2.5-flash", contents="Hello from Gemini")
assert r.text == "You said: Hello from Gemini", r
assert r.candidates[0].finish_reason == types.FinishReason.STOP
u = r.usage_metadata
assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (5, 5, 10), u

chunks = list(
    g.models.generate_content_stream(
        model="gemini-2.5-flash", contents="one two three four five six seven"
    )
)
assert "".join(c.text or "" for c in chunks) == "You said: one two three four five six seven"
assert len(chunks) == 3, len(chunks)
assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
assert chunks[-1].usage_metadata.candidates_token_count == 9

decl = types.FunctionDeclaration(
    name="get_weather",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}),
)
r = g.models.generate_content(
    model="gemini-3-pro-preview",
    contents="What is the weather in Rome?",
    config=types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        thinking_config=types.ThinkingConfig(include_thoughts=True),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    ),
)
parts = r.candidates[0].content.parts
assert parts[0].thought is True and parts[0].text == "Let me think about how to answer this."
assert parts[1].function_call.name == "get_weather" and parts[1].function_call.args == {"city": "mock"}
assert parts[1].thought_signature, parts[1]
assert r.usage_metadata.thoughts_token_count == 8

# The SDK echoes the model turn back verbatim, signature included.
history = [
    types.Content(role="user", parts=[types.Part(text="What is the weather in Rome?")]),
    r.candidates[0].content,
    types.Content(
        role="user",
        parts=[types.Part(function_response=types.FunctionResponse(name="get_weather", response={"result": "sunny"}))],
    ),
]
r2 = g.models.generate_content(
    model="gemini-3-pro-preview",
    contents=history,
    config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])]),
)
assert r2.text == "You said: What is the weather in Rome?", r2

stripped = history[1].model_copy(deep=True)
for p in stripped.parts:
    p.thought_signature = None
try:
    g.models.generate_content(model="gemini-3-pro-preview", contents=[history[0], stripped, history[2]])
    raise AssertionError("expected a 400")
except genai_errors.ClientError as e:
    assert e.code == 400 and "missing a thought_signature" in e.message, e.message

try:
    g.models.generate_content(model="no-such-model", contents="x")
    raise AssertionError("expected a 404")
except genai_errors.ClientError as e:
    assert e.code == 404 and e.status == "NOT_FOUND", (e.code, e.status)

assert g.models.count_tokens(model="gemini-2.5-flash", contents="abcdefgh").total_tokens == 2
names = [m.name for m in g.models.list()]
assert "models/gemini-2.5-flash" in names, names

# ---------------------------------------------------------------- Responses
o = openai.OpenAI(base_url=ROOT + "/v1", api_key="sk-test", max_retries=0)
resp = o.responses.create(model="gpt-4o", input="Hello responses", reasoning={"effort": "low", "summary": "auto"})
assert resp.output_text == "You said: Hello responses", resp
assert resp.output[0].type == "reasoning" and resp.output[0].summary[0].text.startswith("Let me think")
assert resp.usage.output_tokens_details.reasoning_tokens == 8
assert resp.usage.output_tokens == 8 + 4

tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
with o.responses.stream(model="gpt-4o", input="weather in Oslo?", tools=tools) as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed", kinds
fc = final.output[0]
assert fc.type == "function_call" and fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "mock"}

follow = o.responses.create(
    model="gpt-4o",
    previous_response_id=final.id,
    input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "cold"}],
    tools=tools,
)
assert follow.output_text == "You said: weather in Oslo?", follow
assert o.responses.retrieve(follow.id).id == follow.id

try:
    o.responses.create(model="gpt-4o", input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}])
    raise AssertionError("expected a 400")
except openai.BadRequestError as e:
    assert e.message.endswith("No tool call found for function call output with call_id call_nope."), e.message

# ---------------------------------------------------------------- Azure
az = openai.AzureOpenAI(azure_endpoint=ROOT, api_key="az-key", api_version="2024-10-21", max_retries=0)
c = az.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi Azure"}])
assert c.choices[0].message.content == "You said: Hi Azure" and c.model == "gpt-4o"
streamed = ""
for chunk in az.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi Azure"}], stream=True):
    for ch in chunk.choices:
        streamed += ch.delta.content or ""
assert streamed == "You said: Hi Azure", streamed
try:
    az.chat.completions.create(model="no-such-deployment", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected a 404")
except openai.NotFoundError as e:
    assert e.code == "DeploymentNotFound", e.body

print("OK")
