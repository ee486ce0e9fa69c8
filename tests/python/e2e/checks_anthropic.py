"""The official `anthropic` SDK against llmux's `/v1/messages`, once per upstream format."""

from __future__ import annotations

import anthropic

from .env import (
    PARALLEL_PROMPT,
    SINGLE_TOOL_PROMPT,
    TIME_SCHEMA,
    TOOL_RESULTS,
    UNKNOWN_MODEL,
    WEATHER_SCHEMA,
    WRONG_KEY,
    Env,
    reply_to,
)
from .sse import check_anthropic_stream
from .upstreams import Upstream, check_tool_results, check_upstream_request

SYSTEM = "You are a terse assistant. Answer in one line."
PROMPT = "Hello from the anthropic SDK"
TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city", "input_schema": WEATHER_SCHEMA},
    {"name": "get_time", "description": "Local time in a time zone", "input_schema": TIME_SCHEMA},
]


class AnthropicChecks:
    def __init__(self, env: Env):
        self.env = env
        # max_retries=0: a failure must surface at once, not be hidden by SDK retries.
        self.client = anthropic.Anthropic(base_url=env.llmux, api_key=env.client_key, max_retries=0, timeout=30)
        self.input_tokens: dict[str, int] = {}  # per upstream, from the buffered answer

    # ------------------------------------------------------------------ per upstream

    def create(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        m = self.client.messages.create(
            model=u.alias, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
        )
        want = reply_to(PROMPT)
        assert m.type == "message" and m.role == "assistant", f"type={m.type!r} role={m.role!r}"
        assert m.id.startswith("msg_"), f"id {m.id!r}"
        assert [b.type for b in m.content] == ["text"], f"content {m.content}"
        assert m.content[0].text == want, f"text {m.content[0].text!r} != {want!r}"
        assert m.stop_reason == "end_turn", f"stop_reason {m.stop_reason!r}"
        assert m.usage.input_tokens > 0, f"usage {m.usage}"
        assert m.usage.output_tokens == len(want.split()), f"output_tokens {m.usage.output_tokens}, reply has {len(want.split())} words"
        check_upstream_request(u, self.env.recorder.only_since(mark), system=SYSTEM)
        self.input_tokens[u.name] = m.usage.input_tokens
        return f"{m.content[0].text!r} model={m.model!r} usage={m.usage.input_tokens}+{m.usage.output_tokens}"

    def create_stream(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        events = list(
            self.client.messages.create(
                model=u.alias,
                max_tokens=256,
                system=SYSTEM,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
        )
        msg = check_anthropic_stream([(e.type, e.model_dump(mode="json")) for e in events])
        want = reply_to(PROMPT)
        assert [b["type"] for b in msg["content"]] == ["text"], f"blocks {msg['content']}"
        assert msg["content"][0]["text"] == want, f"text {msg['content'][0]['text']!r} != {want!r}"
        assert msg["stop_reason"] == "end_turn", msg["stop_reason"]
        assert msg["usage"]["output_tokens"] == len(want.split()), f"usage {msg['usage']}"
        # An OpenAI upstream reports prompt tokens only at the end, so message_start may say 0;
        # the final (message_delta) count must be the real one, as in the buffered answer.
        assert msg["usage"]["input_tokens"] > 0, f"no input_tokens in message_start or message_delta: {msg['usage']}"
        if self.input_tokens.get(u.name) is not None:
            assert msg["usage"]["input_tokens"] == self.input_tokens[u.name], (
                f"streamed input_tokens {msg['usage']['input_tokens']} != buffered {self.input_tokens[u.name]}"
            )
        check_upstream_request(u, self.env.recorder.only_since(mark), system=SYSTEM)
        kinds = []
        for e in events:
            if not kinds or kinds[-1] != e.type:
                kinds.append(e.type)
        return " ".join(kinds)

    def stream_helper(self, u: Upstream) -> str:
        with self.client.messages.stream(
            model=u.alias, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
        ) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        want = reply_to(PROMPT)
        assert text == want, f"text_stream {text!r} != {want!r}"
        assert [b.type for b in final.content] == ["text"] and final.content[0].text == want, f"final {final.content}"
        assert final.stop_reason == "end_turn", final.stop_reason
        assert final.usage.output_tokens == len(want.split()), f"usage {final.usage}"
        assert final.usage.input_tokens > 0, f"usage {final.usage}"
        return f"final message {final.id} {final.stop_reason}"

    def parallel_tools(self, u: Upstream) -> str:
        rec = self.env.recorder
        messages: list = [{"role": "user", "content": PARALLEL_PROMPT}]
        mark = rec.mark()
        m = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        check_upstream_request(u, rec.only_since(mark), tools=["get_weather", "get_time"])
        assert m.stop_reason == "tool_use", f"stop_reason {m.stop_reason!r}, content {m.content}"
        uses = [b for b in m.content if b.type == "tool_use"]
        assert [b.name for b in uses] == ["get_weather", "get_time"], f"tool_use blocks {uses}"
        assert uses[0].input == {"city": "mock"} and uses[1].input == {"tz": "mock"}, f"inputs {[b.input for b in uses]}"
        ids = [b.id for b in uses]
        assert all(ids) and len(set(ids)) == 2, f"tool_use ids {ids}"
        # Second turn: the documented idiom, the assistant's content sent back as is.
        messages += [
            {"role": "assistant", "content": m.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": TOOL_RESULTS[b.name]} for b in reversed(uses)
                ],
            },
        ]
        mark = rec.mark()
        final = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        body = check_upstream_request(u, rec.only_since(mark), tools=["get_weather", "get_time"])
        matched = check_tool_results(u, body, TOOL_RESULTS)
        assert final.stop_reason == "end_turn", f"final stop_reason {final.stop_reason!r}: {final.content}"
        text = "".join(b.text for b in final.content if b.type == "text")
        assert text == reply_to(PARALLEL_PROMPT), f"final text {text!r}"
        return f"2 tool_use ({', '.join(ids)}) -> {matched} -> {text[:40]!r}..."

    def streamed_tool(self, u: Upstream) -> str:
        rec = self.env.recorder
        messages: list = [{"role": "user", "content": SINGLE_TOOL_PROMPT}]
        seen: list[str] = []
        with self.client.messages.stream(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages) as s:
            for event in s:
                seen.append(event.type)
            first = s.get_final_message()
        assert first.stop_reason == "tool_use", f"stop_reason {first.stop_reason!r}: {first.content}"
        uses = [b for b in first.content if b.type == "tool_use"]
        assert len(uses) == 1 and uses[0].name == "get_weather", f"tool_use blocks {uses}"
        assert uses[0].input == {"city": "mock"}, f"streamed input {uses[0].input!r}"
        assert "input_json" in seen, f"no input_json_delta was streamed: {sorted(set(seen))}"
        messages += [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 21 C"}]},
        ]
        mark = rec.mark()
        with self.client.messages.stream(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        body = check_upstream_request(u, rec.only_since(mark))
        check_tool_results(u, body, {"get_weather": "sunny, 21 C"})
        assert final.stop_reason == "end_turn", final.stop_reason
        assert text == reply_to(SINGLE_TOOL_PROMPT), f"final text {text!r}"
        return f"streamed tool_use {uses[0].id} input={uses[0].input} -> {text!r}"

    def ids_across_turns(self, u: Upstream) -> str:
        """Two tool rounds in one conversation. Anthropic rejects a conversation whose tool_use ids
        repeat ("messages.N.content.M: `tool_use` ids must be unique"), so ids handed to the
        client must stay unique across responses, not just within one; and each result must
        still reach the upstream attached to the right call."""
        rec = self.env.recorder
        messages: list = [{"role": "user", "content": SINGLE_TOOL_PROMPT}]
        t1 = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        first = [b for b in t1.content if b.type == "tool_use"]
        assert [b.name for b in first] == ["get_weather"], f"turn 1 tool_use {first}"
        messages += [
            {"role": "assistant", "content": t1.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first[0].id, "content": "Paris: sunny"}]},
        ]
        answer = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        assert answer.stop_reason == "end_turn", f"answer after the first result: {answer.stop_reason!r}"
        messages += [
            {"role": "assistant", "content": answer.content},
            {"role": "user", "content": "Thanks. Now the weather and the time in Rome, in parallel please."},
        ]
        t2 = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        second = [b for b in t2.content if b.type == "tool_use"]
        assert [b.name for b in second] == ["get_weather", "get_time"], f"turn 2 tool_use {second}"
        ids = [b.id for b in first + second]
        assert len(set(ids)) == len(ids), (
            f"tool_use ids repeat across turns: turn 1 {ids[:1]}, turn 2 {ids[1:]} "
            "(Anthropic answers 400 '`tool_use` ids must be unique' to such a conversation)"
        )
        texts = {"get_weather": "Rome: rain", "get_time": "Rome: 14:05"}
        messages += [
            {"role": "assistant", "content": t2.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": b.id, "content": texts[b.name]} for b in second],
            },
        ]
        mark = rec.mark()
        t3 = self.client.messages.create(model=u.alias, max_tokens=512, tools=TOOLS, messages=messages)
        body = check_upstream_request(u, rec.only_since(mark))
        calls, results = u.calls(body), u.results(body)
        up_ids = [i for i, _ in calls if i]
        assert len(set(up_ids)) == len(up_ids), f"upstream call ids repeat: {calls}"
        by_id = dict(calls)
        resolved = [(rname or by_id.get(rid), text) for rid, rname, text in results]
        want = [("get_weather", "Paris: sunny"), ("get_weather", "Rome: rain"), ("get_time", "Rome: 14:05")]
        assert len(resolved) == 3 and all(n == wn and wt in t for (n, t), (wn, wt) in zip(resolved, want)), (
            f"upstream tool results {results} (calls {calls}) do not match {want}"
        )
        assert t3.stop_reason == "end_turn", f"turn 3 stop_reason {t3.stop_reason!r}"
        return f"ids {ids} unique; 3 results reached the upstream on the right calls"

    # ------------------------------------------------------------------ upstream-independent

    def count_tokens(self, u: Upstream) -> str:
        short = self.client.messages.count_tokens(
            model=u.alias, system=SYSTEM, messages=[{"role": "user", "content": "hi"}]
        )
        long = self.client.messages.count_tokens(
            model=u.alias, system=SYSTEM, messages=[{"role": "user", "content": "hi " * 400}]
        )
        tools = self.client.messages.count_tokens(
            model=u.alias, system=SYSTEM, tools=TOOLS, messages=[{"role": "user", "content": "hi"}]
        )
        assert short.input_tokens > 0, f"input_tokens {short.input_tokens}"
        # 1,198 more characters: about 300 more tokens at ~4 characters per token.
        assert long.input_tokens - short.input_tokens >= 250, f"{long.input_tokens} for 400 words vs {short.input_tokens}"
        assert tools.input_tokens > short.input_tokens, f"tools add nothing: {tools.input_tokens} vs {short.input_tokens}"
        return f"input_tokens short={short.input_tokens} long={long.input_tokens} with tools={tools.input_tokens}"

    def wrong_key(self) -> str:
        bad = anthropic.Anthropic(base_url=self.env.llmux, api_key=WRONG_KEY, max_retries=0, timeout=30)
        try:
            bad.messages.create(model="via-openai", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        except anthropic.AuthenticationError as e:
            assert e.status_code == 401, e.status_code
            assert isinstance(e.body, dict) and e.body.get("type") == "error", f"body {e.body}"
            assert e.body["error"]["type"] == "authentication_error", f"body {e.body}"
            assert WRONG_KEY not in str(e.body), "the error echoes the key"
            return f"401 {e.body['error']['message']!r}"
        raise AssertionError("a wrong key did not raise anthropic.AuthenticationError")

    def unknown_model(self) -> str:
        try:
            self.client.messages.create(model=UNKNOWN_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
        except anthropic.NotFoundError as e:
            assert e.status_code == 404, e.status_code
            assert isinstance(e.body, dict) and e.body.get("type") == "error", f"body {e.body}"
            err = e.body["error"]
            assert err["type"] == "not_found_error", f"error {err}"
            assert UNKNOWN_MODEL in err["message"], f"message {err['message']!r} does not name the model"
            return f"404 {err['message']!r}"
        raise AssertionError("an unknown model did not raise anthropic.NotFoundError")


def plan(c: AnthropicChecks, upstreams: list[Upstream]) -> list:
    out = []
    for u in upstreams:
        tag = f"anthropic SDK -> {u.name} upstream"
        out += [
            (f"{tag}: messages.create + system", lambda u=u: c.create(u), u.skip_reason),
            (f"{tag}: create(stream=True) event sequence", lambda u=u: c.create_stream(u), u.skip_reason),
            (f"{tag}: messages.stream() final message", lambda u=u: c.stream_helper(u), u.skip_reason),
            (f"{tag}: parallel tool_use -> tool_result round trip", lambda u=u: c.parallel_tools(u), u.skip_reason),
            (f"{tag}: streamed tool_use round trip", lambda u=u: c.streamed_tool(u), u.skip_reason),
            (f"{tag}: tool_use ids unique across turns", lambda u=u: c.ids_across_turns(u), u.skip_reason),
        ]
    first = upstreams[0]
    out += [
        ("anthropic SDK: messages.count_tokens", lambda: c.count_tokens(first), None),
        ("anthropic SDK: wrong key -> AuthenticationError", c.wrong_key, None),
        ("anthropic SDK: unknown model -> NotFoundError naming it", c.unknown_model, None),
    ]
    return out
