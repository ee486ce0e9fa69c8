"""The OpenAI SDK chat completions: the original checks (buffered and streamed chat, the
model list, embeddings, a renamed alias, client-key errors) against the OpenAI-format
upstream, then chat with a system prompt, streaming and parallel tool calls through every
upstream format of the matrix."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai

from .env import PARALLEL_PROMPT, TIME_SCHEMA, TOOL_RESULTS, WEATHER_SCHEMA, Env, reply_to
from .upstreams import OPENAI_MODEL, Upstream, check_tool_results, check_upstream_request, exposed_models

CHAT_MODEL = OPENAI_MODEL
EMBED_MODEL = "text-embedding-3-small"
ALIAS = "mini-alias"
PROMPT = "Say hello in one short sentence."


class ChatChecks:
    def __init__(self, base_url: str, client_key: str):
        self.client_key = client_key
        self.base_url = base_url
        # max_retries=0: a failure must surface at once, not be hidden by SDK retries.
        self.client = openai.OpenAI(base_url=base_url, api_key=client_key, max_retries=0, timeout=30)
        self.nonstream_text: str | None = None

    def chat_nonstream(self) -> str:
        r = self.client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
        assert r.object == "chat.completion", f"object={r.object!r}"
        assert r.id, "empty id"
        assert r.model.startswith(CHAT_MODEL), f"model={r.model!r}, expected {CHAT_MODEL!r}"
        assert len(r.choices) >= 1, "no choices"
        msg = r.choices[0].message
        assert msg.role == "assistant", f"role={msg.role!r}"
        assert isinstance(msg.content, str) and msg.content.strip(), f"empty content: {msg.content!r}"
        assert r.choices[0].finish_reason is not None, "finish_reason missing"
        u = r.usage
        assert u is not None, "usage missing"
        assert u.prompt_tokens > 0 and u.completion_tokens > 0, f"usage={u}"
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage={u}"
        self.nonstream_text = msg.content
        return f"{msg.content!r} usage={u.prompt_tokens}+{u.completion_tokens}={u.total_tokens}"

    def chat_stream_usage(self) -> str:
        stream = self.client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)  # the SDK raises on a broken stream or an in-stream error event
        assert chunks, "stream produced no chunks"
        for c in chunks:
            assert c.object == "chat.completion.chunk", f"object={c.object!r}"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish, "no chunk carried a finish_reason"
        last = chunks[-1]
        assert last.usage is not None, "last chunk has no usage although include_usage=true"
        assert last.choices == [], f"usage chunk must have empty choices, got {last.choices}"
        u = last.usage
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage={u}"
        with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
        assert with_usage == [len(chunks) - 1], f"usage appears in chunks {with_usage}, expected only the last"
        assert text.strip(), "stream deltas joined to empty text"
        if self.nonstream_text is None:
            self.chat_nonstream()
        assert text == self.nonstream_text, (
            f"stream text {text!r} != non-stream text {self.nonstream_text!r}"
        )
        return f"{len(chunks)} chunks, text matches non-stream, usage total={u.total_tokens}"

    def chat_stream_plain(self) -> str:
        stream = self.client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        if self.nonstream_text is None:
            self.chat_nonstream()
        assert text == self.nonstream_text, f"stream text {text!r} != non-stream {self.nonstream_text!r}"
        return f"{len(chunks)} chunks"

    def models_list(self) -> str:
        ids = [m.id for m in self.client.models.list()]
        expected = exposed_models()
        assert sorted(ids) == expected, f"models {sorted(ids)} != configured {expected}"
        return ", ".join(ids)

    def embeddings(self) -> str:
        inputs = ["hello", "world", "a slightly longer third input"]
        out = []
        for fmt in (None, "float"):  # the SDK asks for base64 by default and decodes it
            kwargs = {} if fmt is None else {"encoding_format": fmt}
            r = self.client.embeddings.create(model=EMBED_MODEL, input=inputs, **kwargs)
            assert len(r.data) == len(inputs), f"{len(r.data)} embeddings for {len(inputs)} inputs"
            assert sorted(d.index for d in r.data) == list(range(len(inputs))), "bad indexes"
            dims = {len(d.embedding) for d in r.data}
            assert len(dims) == 1, f"inconsistent vector lengths {dims}"
            dim = dims.pop()
            assert dim > 0, "empty vectors"
            for d in r.data:
                assert all(isinstance(x, float) for x in d.embedding), "non-float vector element"
            assert r.model.startswith(EMBED_MODEL), f"model={r.model!r}"
            out.append(f"{fmt or 'default'}: {len(r.data)}x{dim}")
        return "; ".join(out)

    def alias(self) -> str:
        r = self.client.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": PROMPT}])
        content = r.choices[0].message.content
        assert isinstance(content, str) and content.strip(), f"empty content: {content!r}"
        return f"ok, response model={r.model!r}"

    def wrong_key(self) -> str:
        bad = openai.OpenAI(base_url=self.base_url, api_key="sk-wrong-key", max_retries=0, timeout=30)
        try:
            bad.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}])
        except openai.AuthenticationError as e:
            assert e.status_code == 401, f"status {e.status_code}"
            body = e.response.json()
            assert isinstance(body.get("error"), dict) and body["error"].get("message"), f"body={body}"
            return f"401: {body['error']['message']!r}"
        raise AssertionError("a wrong client key did not raise openai.AuthenticationError")

    def missing_key(self) -> str:
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": PROMPT}]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raise AssertionError(f"no Authorization header answered HTTP {r.status}")
        except urllib.error.HTTPError as e:
            assert e.code == 401, f"HTTP {e.code}"
            return "401"

    def unknown_model(self) -> str:
        model = "no-such-model-xyz"
        try:
            self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
        except (openai.NotFoundError, openai.PermissionDeniedError) as e:
            body = e.response.json()
            err = body.get("error") if isinstance(body, dict) else None
            assert isinstance(err, dict), f"no error object in body {body}"
            msg = err.get("message") or ""
            assert model in msg, f"error.message {msg!r} does not name the model {model!r}"
            return f"{e.status_code}: {msg!r}"
        except openai.APIStatusError as e:
            raise AssertionError(f"unknown model answered HTTP {e.status_code}, expected 404 or 403: {e}")
        raise AssertionError("an unknown model did not raise an error")


def plan(c: ChatChecks) -> list:
    return [
        ("openai SDK chat non-stream", c.chat_nonstream),
        ("openai SDK chat stream + include_usage", c.chat_stream_usage),
        ("openai SDK chat stream without usage", c.chat_stream_plain),
        ("openai SDK models list", c.models_list),
        ("openai SDK embeddings", c.embeddings),
        ("openai SDK renamed model alias", c.alias),
        ("openai SDK wrong client key -> 401", c.wrong_key),
        ("missing client key -> 401", c.missing_key),
        ("openai SDK unknown model -> 404/403", c.unknown_model),
    ]


# ----------------------------------------------------------------------------- per upstream

SYSTEM = "You are a terse assistant. Answer in one line."
MATRIX_PROMPT = "Hello from the openai chat SDK"
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a time zone", "parameters": TIME_SCHEMA}},
]


class MatrixChatChecks:
    """Chat completions through each upstream format (an OpenAI client reaching Anthropic or
    Gemini goes through the IR both ways)."""

    def __init__(self, env: Env):
        self.env = env
        self.client = openai.OpenAI(base_url=env.llmux + "/v1", api_key=env.client_key, max_retries=0, timeout=30)

    def create(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        r = self.client.chat.completions.create(
            model=u.alias,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": MATRIX_PROMPT}],
        )
        want = reply_to(MATRIX_PROMPT)
        assert r.object == "chat.completion", r.object
        assert r.choices[0].message.content == want, f"content {r.choices[0].message.content!r} != {want!r}"
        assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
        u_ = r.usage
        assert u_.prompt_tokens > 0 and u_.completion_tokens == len(want.split()), f"usage {u_}"
        assert u_.total_tokens == u_.prompt_tokens + u_.completion_tokens, f"usage {u_}"
        check_upstream_request(u, self.env.recorder.only_since(mark), system=SYSTEM)
        return f"{r.choices[0].message.content!r} usage={u_.prompt_tokens}+{u_.completion_tokens}"

    def stream(self, u: Upstream) -> str:
        chunks = list(
            self.client.chat.completions.create(
                model=u.alias,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": MATRIX_PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        want = reply_to(MATRIX_PROMPT)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == want, f"streamed {text!r} != {want!r}"
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == ["stop"], f"finish reasons {finishes}"
        assert len({c.id for c in chunks}) == 1, "chunks carry different ids"
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None, f"last chunk {last}"
        assert last.usage.completion_tokens == len(want.split()), f"usage {last.usage}"
        assert [i for i, c in enumerate(chunks) if c.usage is not None] == [len(chunks) - 1], "usage before the end"
        return f"{len(chunks)} chunks, usage {last.usage.prompt_tokens}+{last.usage.completion_tokens}"

    def tools(self, u: Upstream) -> str:
        rec = self.env.recorder
        messages: list = [{"role": "user", "content": PARALLEL_PROMPT}]
        r = self.client.chat.completions.create(model=u.alias, messages=messages, tools=CHAT_TOOLS)
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls", f"finish_reason {r.choices[0].finish_reason!r}"
        calls = msg.tool_calls or []
        assert [c.function.name for c in calls] == ["get_weather", "get_time"], f"tool_calls {calls}"
        assert json.loads(calls[0].function.arguments) == {"city": "mock"}, calls[0].function.arguments
        ids = [c.id for c in calls]
        assert all(ids) and len(set(ids)) == 2, f"ids {ids}"
        messages.append(msg.model_dump(exclude_none=True))
        messages += [{"role": "tool", "tool_call_id": c.id, "content": TOOL_RESULTS[c.function.name]} for c in calls]
        mark = rec.mark()
        final = self.client.chat.completions.create(model=u.alias, messages=messages, tools=CHAT_TOOLS)
        body = check_upstream_request(u, rec.only_since(mark), tools=["get_weather", "get_time"])
        matched = check_tool_results(u, body, TOOL_RESULTS)
        assert final.choices[0].message.content == reply_to(PARALLEL_PROMPT), final.choices[0].message.content
        return f"tool_calls {ids} -> {matched}"

    def streamed_tools(self, u: Upstream) -> str:
        chunks = list(
            self.client.chat.completions.create(
                model=u.alias, messages=[{"role": "user", "content": PARALLEL_PROMPT}], tools=CHAT_TOOLS, stream=True
            )
        )
        calls: dict[int, dict] = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                if tc.id:
                    assert slot["id"] in (None, tc.id), f"index {tc.index} changed id"
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
        assert sorted(calls) == [0, 1], f"tool call indexes {sorted(calls)}"
        assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"], calls
        assert all(calls[i]["id"] for i in (0, 1)) and calls[0]["id"] != calls[1]["id"], calls
        assert json.loads(calls[0]["args"]) == {"city": "mock"} and json.loads(calls[1]["args"]) == {"tz": "mock"}, calls
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == ["tool_calls"], f"finish reasons {finishes}"
        return f"indexes 0,1 ids {calls[0]['id']}, {calls[1]['id']}"


def matrix_plan(c: MatrixChatChecks, upstreams: list[Upstream]) -> list:
    out = []
    for u in upstreams:
        tag = f"openai SDK chat -> {u.name} upstream"
        out += [
            (f"{tag}: create + system", lambda u=u: c.create(u), u.skip_reason),
            (f"{tag}: stream + include_usage", lambda u=u: c.stream(u), u.skip_reason),
            (f"{tag}: parallel tool_calls round trip", lambda u=u: c.tools(u), u.skip_reason),
            (f"{tag}: streamed parallel tool_calls", lambda u=u: c.streamed_tools(u), u.skip_reason),
        ]
    return out
