"""Drives the mock with the official `openai` Python SDK.

Run by tests/python_sdk.rs with MOCK_BASE_URL set; the Rust side queues
key-scoped faults beforehand (see that file). Prints OK on success.
"""

import base64
import json
import os

import openai
from openai import OpenAI

BASE = os.environ["MOCK_BASE_URL"]


def client(key="sk-test", retries=0):
    return OpenAI(base_url=BASE, api_key=key, max_retries=retries)


c = client()

# Models
ids = [m.id for m in c.models.list()]
assert "gpt-4o-mini" in ids and "whisper-1" in ids, ids
assert c.models.retrieve("gpt-4o").id == "gpt-4o"

# Chat, buffered
r = c.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello world"}]
)
assert r.object == "chat.completion"
assert r.choices[0].message.content == "You said: Hello world", r
assert r.choices[0].finish_reason == "stop"
assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 4, 7), r.usage
assert r.usage.completion_tokens_details.reasoning_tokens == 0
assert r.usage.prompt_tokens_details.cached_tokens == 0
assert r.service_tier == "default"

raw = c.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
)
assert raw.headers["x-request-id"].startswith("req_")
assert raw.headers["openai-version"] == "2020-10-01"
assert raw.headers["x-ratelimit-limit-requests"] == "10000"
assert raw.parse().choices[0].message.content == "You said: x"

# Chat, streamed with usage
text, usage, chunks = "", None, 0
for chunk in c.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Hi there"}],
    stream=True,
    stream_options={"include_usage": True},
):
    chunks += 1
    assert chunk.object == "chat.completion.chunk"
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        text += choice.delta.content or ""
assert text == "You said: Hi there", text
assert usage is not None and usage.total_tokens == 6, usage
assert chunks == 7, chunks

# Tool calls through the SDK's stream accumulator
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
with c.chat.completions.stream(
    model="gpt-4o",
    messages=[{"role": "user", "content": "weather and time in parallel"}],
    tools=tools,
) as stream:
    final = stream.get_final_completion()
calls = final.choices[0].message.tool_calls
assert [t.function.name for t in calls] == ["get_weather", "get_time"], calls
assert json.loads(calls[0].function.arguments) == {"location": "mock"}
assert all(t.id.startswith("call_") for t in calls)
assert final.choices[0].finish_reason == "tool_calls"

# Embeddings: the SDK asks for base64 by default and decodes it itself
e_b64 = c.embeddings.create(model="text-embedding-3-small", input="abc")
e_flt = c.embeddings.create(model="text-embedding-3-small", input="abc", encoding_format="float")
assert len(e_b64.data[0].embedding) == 1536
assert all(abs(a - b) < 1e-6 for a, b in zip(e_b64.data[0].embedding, e_flt.data[0].embedding))
assert e_flt.usage.prompt_tokens == 1

# Images
img = c.images.generate(model="dall-e-3", prompt="cat", response_format="b64_json")
assert base64.b64decode(img.data[0].b64_json)[:4] == b"\x89PNG"
assert img.data[0].revised_prompt == "cat"

# Audio
t = c.audio.transcriptions.create(model="whisper-1", file=("audio.mp3", bytes(range(256)) * 48 + b"\r\n--"))
assert t.text == "mock transcription of audio.mp3 (12292 bytes) by whisper-1", t.text
tv = c.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"x" * 100), response_format="verbose_json")
assert tv.language == "english" and tv.segments[0].text == tv.text
tt = c.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"x" * 3), response_format="text")
assert tt.strip() == "mock transcription of a.mp3 (3 bytes) by whisper-1", repr(tt)
speech = c.audio.speech.create(model="tts-1", voice="alloy", input="hello")
audio = speech.read()
assert len(audio) == 5000 and audio[:3] == bytes([0, 1, 2])

# Moderations
m = c.moderations.create(input=["I will kill", "fine"])
assert m.results[0].flagged and m.results[0].categories.violence
assert m.results[0].categories.self_harm_intent is False
assert not m.results[1].flagged

# Errors map onto the SDK's exception classes
try:
    c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err.body

try:
    c.chat.completions.create(model="gpt-4o", messages=[])
    raise AssertionError("expected BadRequestError")
except openai.BadRequestError as err:
    assert err.code == "empty_array" and err.param == "messages", err.body

try:
    client("sk-bad").models.list()
    raise AssertionError("expected AuthenticationError")
except openai.AuthenticationError as err:
    assert err.code == "invalid_api_key", err.body

try:
    client("sk-limited").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected RateLimitError")
except openai.RateLimitError as err:
    assert err.code == "rate_limit_exceeded" and err.type == "requests", err.body
    assert err.response.headers["retry-after"] == "1"
    assert err.request_id.startswith("req_")

# The SDK retries the scripted 500 and then succeeds.
ok = client("sk-flaky", retries=2).chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "again"}]
)
assert ok.choices[0].message.content == "You said: again"

print("OK")
