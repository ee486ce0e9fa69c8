"""The official `openai` SDK's Responses API (`client.responses`) against llmux's
`/v1/responses`, once per upstream format."""

from __future__ import annotations

import json

import openai

from .env import (
    PARALLEL_PROMPT,
    SINGLE_TOOL_PROMPT,
    TIME_SCHEMA,
    TOOL_RESULTS,
    WEATHER_SCHEMA,
    Env,
    reply_to,
)
from .upstreams import Upstream, check_tool_results, check_upstream_request

INSTRUCTIONS = "You are a terse assistant. Answer in one line."
PROMPT = "Hello from the openai responses API"
TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_SCHEMA},
    {"type": "function", "name": "get_time", "description": "Local time in a time zone", "parameters": TIME_SCHEMA},
]
TEXT_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL_EVENTS = [
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]


def _collapse(types: list[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


def _check_event_sequence(events: list, item_events: list[str]) -> object:
    """response.created [response.in_progress] <one output item's events> response.completed,
    with sequence_number 0, 1, 2, ... Returns the completed Response."""
    types = [e.type for e in events]
    seq = [e.sequence_number for e in events]
    assert seq == list(range(len(events))), f"sequence_number {seq}"
    collapsed = _collapse(types)
    head = ["response.created", "response.in_progress"] if "response.in_progress" in collapsed else ["response.created"]
    expected = head + item_events + ["response.completed"]
    assert collapsed == expected, f"event sequence {collapsed}, expected {expected}"
    created, completed = events[0].response, events[-1].response
    assert created.status == "in_progress", f"response.created status {created.status!r}"
    assert completed.status == "completed", f"response.completed status {completed.status!r}"
    assert created.id == completed.id and completed.id.startswith("resp_"), f"ids {created.id!r} / {completed.id!r}"
    return completed


class ResponsesChecks:
    def __init__(self, env: Env):
        self.env = env
        self.client = openai.OpenAI(base_url=env.llmux + "/v1", api_key=env.client_key, max_retries=0, timeout=30)

    def create(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        r = self.client.responses.create(model=u.alias, instructions=INSTRUCTIONS, input=PROMPT)
        want = reply_to(PROMPT)
        assert r.object == "response" and r.status == "completed", f"object={r.object!r} status={r.status!r}"
        assert r.id.startswith("resp_"), f"id {r.id!r}"
        assert [o.type for o in r.output] == ["message"], f"output {r.output}"
        msg = r.output[0]
        assert msg.role == "assistant" and msg.status == "completed", f"message {msg}"
        assert [c.type for c in msg.content] == ["output_text"], f"content {msg.content}"
        assert r.output_text == want, f"output_text {r.output_text!r} != {want!r}"
        assert r.usage.input_tokens > 0 and r.usage.output_tokens == len(want.split()), f"usage {r.usage}"
        assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, f"usage {r.usage}"
        check_upstream_request(u, self.env.recorder.only_since(mark), system=INSTRUCTIONS)
        return f"{r.output_text!r} usage={r.usage.input_tokens}+{r.usage.output_tokens}"

    def stream(self, u: Upstream) -> str:
        mark = self.env.recorder.mark()
        events = list(self.client.responses.create(model=u.alias, instructions=INSTRUCTIONS, input=PROMPT, stream=True))
        completed = _check_event_sequence(events, TEXT_EVENTS)
        want = reply_to(PROMPT)
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = next(e for e in events if e.type == "response.output_text.done")
        assert deltas == want and done.text == want, f"deltas {deltas!r}, done {done.text!r}, want {want!r}"
        item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
        assert len(item_ids) == 1, f"events name several items: {item_ids}"
        assert completed.output_text == want, f"response.completed output_text {completed.output_text!r}"
        assert completed.output[0].id in item_ids, "completed message id differs from the streamed item_id"
        assert completed.usage and completed.usage.output_tokens == len(want.split()), f"usage {completed.usage}"
        check_upstream_request(u, self.env.recorder.only_since(mark), system=INSTRUCTIONS)
        return " ".join(_collapse([e.type.removeprefix("response.") for e in events]))

    def function_calls(self, u: Upstream) -> str:
        rec = self.env.recorder
        inputs: list = [{"role": "user", "content": PARALLEL_PROMPT}]
        mark = rec.mark()
        r = self.client.responses.create(model=u.alias, input=inputs, tools=TOOLS)
        check_upstream_request(u, rec.only_since(mark), tools=["get_weather", "get_time"])
        calls = [o for o in r.output if o.type == "function_call"]
        assert [c.name for c in calls] == ["get_weather", "get_time"], f"output {r.output}"
        assert json.loads(calls[0].arguments) == {"city": "mock"}, f"arguments {calls[0].arguments!r}"
        assert json.loads(calls[1].arguments) == {"tz": "mock"}, f"arguments {calls[1].arguments!r}"
        call_ids = [c.call_id for c in calls]
        assert all(call_ids) and len(set(call_ids)) == 2, f"call_ids {call_ids}"
        # The documented idiom: append the whole output, then one output per call.
        inputs += r.output
        inputs += [
            {"type": "function_call_output", "call_id": c.call_id, "output": TOOL_RESULTS[c.name]} for c in calls
        ]
        mark = rec.mark()
        final = self.client.responses.create(model=u.alias, input=inputs, tools=TOOLS)
        body = check_upstream_request(u, rec.only_since(mark), tools=["get_weather", "get_time"])
        matched = check_tool_results(u, body, TOOL_RESULTS)
        assert final.status == "completed", final.status
        assert final.output_text == reply_to(PARALLEL_PROMPT), f"final output_text {final.output_text!r}"
        return f"2 function_call ({', '.join(call_ids)}) -> {matched} -> {final.output_text[:40]!r}..."

    def streamed_function_call(self, u: Upstream) -> str:
        events = list(self.client.responses.create(model=u.alias, input=SINGLE_TOOL_PROMPT, tools=TOOLS, stream=True))
        completed = _check_event_sequence(events, CALL_EVENTS)
        added = next(e for e in events if e.type == "response.output_item.added")
        assert added.item.type == "function_call" and added.item.name == "get_weather", f"added {added.item}"
        args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert json.loads(args) == {"city": "mock"} and done.arguments == args, f"deltas {args!r}, done {done.arguments!r}"
        out = completed.output
        assert [o.type for o in out] == ["function_call"], f"completed output {out}"
        assert out[0].call_id == added.item.call_id and out[0].arguments == args, f"completed {out[0]}"
        return f"function_call {out[0].call_id} {out[0].name}({out[0].arguments})"

    def previous_response_id(self) -> str:
        try:
            self.client.responses.create(model="via-openai", input="x", previous_response_id="resp_e2e_123")
        except openai.BadRequestError as e:
            assert e.status_code == 400, e.status_code
            msg = e.body.get("message", "") if isinstance(e.body, dict) else str(e.body)
            assert "previous_response_id" in msg, f"message {msg!r} does not name previous_response_id"
            return f"400 {msg!r}"
        raise AssertionError("previous_response_id did not raise openai.BadRequestError")


def plan(c: ResponsesChecks, upstreams: list[Upstream]) -> list:
    out = []
    for u in upstreams:
        tag = f"openai SDK responses -> {u.name} upstream"
        out += [
            (f"{tag}: create + instructions", lambda u=u: c.create(u), u.skip_reason),
            (f"{tag}: stream event sequence + response.completed", lambda u=u: c.stream(u), u.skip_reason),
            (f"{tag}: parallel function_call -> function_call_output round trip", lambda u=u: c.function_calls(u), u.skip_reason),
            (f"{tag}: streamed function_call", lambda u=u: c.streamed_function_call(u), u.skip_reason),
        ]
    out.append(("openai SDK responses: previous_response_id -> BadRequestError", c.previous_response_id, None))
    return out
