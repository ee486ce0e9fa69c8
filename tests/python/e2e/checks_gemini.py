"""The official `google-genai` SDK against llmux's `/v1beta/models/...`, once per upstream."""

from __future__ import annotations

from google import genai
from google.genai import errors, types

from .env import (
    PARALLEL_PROMPT,
    SINGLE_TOOL_PROMPT,
    TIME_SCHEMA,
    TOOL_RESULTS,
    UNKNOWN_MODEL,
    WRONG_KEY,
    Env,
    reply_to,
)
from .upstreams import Upstream, check_tool_results, check_upstream_request

SYSTEM = "You are a terse assistant. Answer in one line."
PROMPT = "Hello from the google genai SDK"
TOOL_NAMES = ["get_weather", "get_time"]


def _tools() -> list[types.Tool]:
    # One declaration in Gemini's own OpenAPI-subset Schema (upper-case types), one as plain
    # JSON Schema (`parametersJsonSchema`): both spellings clients really send.
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Current weather for a city",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={"city": types.Schema(type=types.Type.STRING, description="City name")},
            required=["city"],
        ),
    )
    time = types.FunctionDeclaration(
        name="get_time", description="Local time in a time zone", parameters_json_schema=TIME_SCHEMA
    )
    return [types.Tool(function_declarations=[weather, time])]


def _client(env: Env, key: str) -> genai.Client:
    # HttpOptions.timeout is in milliseconds; no retry_options: failures surface at once.
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=env.llmux + "/", timeout=30_000))


class GeminiChecks:
    def __init__(self, env: Env):
        self.env = env
        self.client = _client(env, env.client_key)

    def _config(self, **kw) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=256, **kw)

    def generate(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        r = self.client.models.generate_content(model=u.alias, contents=PROMPT, config=self._config())
        want = reply_to(PROMPT)
        assert r.text == want, f"text {r.text!r} != {want!r}"
        cand = r.candidates[0]
        assert cand.content.role == "model", f"role {cand.content.role!r}"
        assert cand.finish_reason == types.FinishReason.STOP, f"finish_reason {cand.finish_reason!r}"
        um = r.usage_metadata
        assert um and um.prompt_token_count and um.prompt_token_count > 0, f"usage {um}"
        assert um.candidates_token_count == len(want.split()), f"candidates_token_count {um.candidates_token_count}"
        assert um.total_token_count == um.prompt_token_count + um.candidates_token_count, f"usage {um}"
        check_upstream_request(u, self.env.recorder.only_since(mark), system=SYSTEM)
        return f"{r.text!r} usage={um.prompt_token_count}+{um.candidates_token_count}"

    def stream(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        chunks = list(self.client.models.generate_content_stream(model=u.alias, contents=PROMPT, config=self._config()))
        want = reply_to(PROMPT)
        assert len(chunks) >= 2, f"{len(chunks)} chunks: the answer was not streamed"
        text = "".join(c.text or "" for c in chunks)
        assert text == want, f"streamed text {text!r} != {want!r}"
        last = chunks[-1]
        assert last.candidates[0].finish_reason == types.FinishReason.STOP, f"last chunk {last}"
        for c in chunks[:-1]:
            assert not c.candidates or c.candidates[0].finish_reason is None, f"finish_reason before the end: {c}"
        um = last.usage_metadata
        assert um and um.candidates_token_count == len(want.split()), f"last usage {um}"
        up = self.env.recorder.only_since(mark)
        check_upstream_request(u, up, system=SYSTEM)
        return f"{len(chunks)} chunks, finish STOP, usage total={um.total_token_count}"

    def function_calls(self, u: Upstream) -> str:
        rec = self.env.recorder
        config = self._config(
            tools=_tools(), automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
        )
        contents: list = [types.Content(role="user", parts=[types.Part.from_text(text=PARALLEL_PROMPT)])]
        mark = rec.mark()
        r = self.client.models.generate_content(model=u.alias, contents=contents, config=config)
        check_upstream_request(u, rec.only_since(mark), tools=TOOL_NAMES)
        calls = r.function_calls or []
        assert [c.name for c in calls] == TOOL_NAMES, f"function calls {calls}"
        assert calls[0].args == {"city": "mock"}, f"get_weather args {calls[0].args!r}"
        assert calls[1].args == {"tz": "mock"}, f"get_time args {calls[1].args!r}"
        assert r.candidates[0].finish_reason == types.FinishReason.STOP, f"finish {r.candidates[0].finish_reason!r}"
        ids = [c.id for c in calls]
        given = [i for i in ids if i]  # Gemini's `id` is optional; the API itself omits it
        assert len(set(given)) == len(given), f"function call ids not distinct: {ids}"
        contents.append(r.candidates[0].content)
        contents.append(
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=c.id, name=c.name, response={"result": TOOL_RESULTS[c.name]}
                        )
                    )
                    for c in calls
                ],
            )
        )
        mark = rec.mark()
        final = self.client.models.generate_content(model=u.alias, contents=contents, config=config)
        body = check_upstream_request(u, rec.only_since(mark), tools=TOOL_NAMES)
        matched = check_tool_results(u, body, TOOL_RESULTS)
        assert final.text == reply_to(PARALLEL_PROMPT), f"final text {final.text!r}"
        assert final.candidates[0].finish_reason == types.FinishReason.STOP
        return f"2 function_call parts (ids {ids}) -> {matched} -> {final.text[:40]!r}..."

    def streamed_function_call(self, u: Upstream) -> str:
        config = self._config(
            tools=_tools(), automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
        )
        chunks = list(self.client.models.generate_content_stream(model=u.alias, contents=SINGLE_TOOL_PROMPT, config=config))
        calls = [c for ch in chunks for c in (ch.function_calls or [])]
        assert [c.name for c in calls] == ["get_weather"], f"streamed function calls {calls}"
        assert calls[0].args == {"city": "mock"}, f"args {calls[0].args!r}"
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP, f"last chunk {chunks[-1]}"
        return f"{len(chunks)} chunks, functionCall get_weather({calls[0].args})"

    # ------------------------------------------------------------------ upstream-independent

    def count_tokens(self, u: Upstream) -> str:
        short = self.client.models.count_tokens(model=u.alias, contents="hi")
        long = self.client.models.count_tokens(model=u.alias, contents="hi " * 400)
        assert short.total_tokens and short.total_tokens > 0, f"total_tokens {short.total_tokens}"
        assert long.total_tokens - short.total_tokens >= 250, f"{long.total_tokens} for 400 words vs {short.total_tokens}"
        return f"total_tokens short={short.total_tokens} long={long.total_tokens}"

    def unknown_model(self) -> str:
        try:
            self.client.models.generate_content(model=UNKNOWN_MODEL, contents="x")
        except errors.ClientError as e:
            assert e.code == 404, f"code {e.code}: {e}"
            assert e.status == "NOT_FOUND", f"status {e.status!r}"
            assert UNKNOWN_MODEL in (e.message or ""), f"message {e.message!r} does not name the model"
            return f"404 NOT_FOUND {e.message!r}"
        raise AssertionError("an unknown model did not raise google.genai.errors.ClientError")

    def wrong_key(self) -> str:
        # Keep the client referenced: a google-genai Client closes its HTTP client when collected.
        bad = _client(self.env, WRONG_KEY)
        try:
            bad.models.generate_content(model="via-openai", contents="x")
        except errors.ClientError as e:
            assert e.code == 401, f"code {e.code}: {e}"
            assert e.status == "UNAUTHENTICATED", f"status {e.status!r}"
            assert WRONG_KEY not in str(e.details), "the error echoes the key"
            return f"401 UNAUTHENTICATED {e.message!r}"
        raise AssertionError("a wrong key did not raise google.genai.errors.ClientError")


def plan(c: GeminiChecks, upstreams: list[Upstream]) -> list:
    out = []
    for u in upstreams:
        tag = f"google-genai SDK -> {u.name} upstream"
        out += [
            (f"{tag}: generate_content + system_instruction", lambda u=u: c.generate(u), u.skip_reason),
            (f"{tag}: generate_content_stream", lambda u=u: c.stream(u), u.skip_reason),
            (f"{tag}: parallel function_call -> function_response round trip", lambda u=u: c.function_calls(u), u.skip_reason),
            (f"{tag}: streamed function_call", lambda u=u: c.streamed_function_call(u), u.skip_reason),
        ]
    first = upstreams[0]
    out += [
        ("google-genai SDK: models.count_tokens", lambda: c.count_tokens(first), None),
        ("google-genai SDK: unknown model -> ClientError 404", c.unknown_model, None),
        ("google-genai SDK: wrong key -> ClientError 401", c.wrong_key, None),
    ]
    return out
