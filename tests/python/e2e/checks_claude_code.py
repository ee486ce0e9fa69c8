"""A Claude Code shaped turn (fixtures/claude_code_request.json), sent as raw bytes so
nothing is normalised by an SDK: `POST /v1/messages?beta=true`, Bearer auth, system as
cache_control'd blocks, 16 tools with draft-07 input_schemas, extended thinking,
metadata.user_id, the anthropic-beta flags, `stream: true`. The event stream is checked
against the documented grammar (ping included) and the upstream request for the system
prompt and every tool with its schema."""

from __future__ import annotations

import copy
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

from .env import Env, reply_to
from .sse import check_anthropic_stream, parse
from .upstreams import Upstream, check_upstream_request

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text())
TOOL_PROMPT = "Check the weather forecast script in ./tools and run it."


def _send(env: Env, body: dict) -> tuple[int, str, bytes]:
    url = urlsplit(env.llmux)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        headers = dict(FIXTURE["headers"])
        headers["authorization"] = f"Bearer {env.client_key}"
        conn.request(FIXTURE["method"], FIXTURE["path"], body=json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        conn.close()


def _user_text(body: dict) -> str:
    return " ".join(b["text"] for b in body["messages"][-1]["content"] if b["type"] == "text")


class ClaudeCodeChecks:
    def __init__(self, env: Env):
        self.env = env

    def _turn(self, u: Upstream, body: dict):
        mark = self.env.recorder.mark()
        status, ctype, raw = _send(self.env, body)
        assert status == 200, f"HTTP {status}: {raw[:400]!r}"
        assert ctype.startswith("text/event-stream"), f"content-type {ctype!r}"
        msg = check_anthropic_stream(parse(raw))
        return msg, self.env.recorder.only_since(mark)

    def _check_upstream(self, u: Upstream, rec, body: dict) -> None:
        system = [b["text"] for b in body["system"]]
        names = [t["name"] for t in body["tools"]]
        up = check_upstream_request(u, rec, system=system[0], tools=names)
        assert system[1] in u.system(up), "the second system block did not reach the upstream"
        schemas = u.schemas(up)
        for t in body["tools"]:
            got, want = schemas.get(t["name"]) or {}, t["input_schema"]
            assert set(got.get("properties", {})) == set(want["properties"]), (
                f"{t['name']}: upstream properties {sorted(got.get('properties', {}))} != {sorted(want['properties'])}"
            )
            assert got.get("required") == want["required"], f"{t['name']}: required {got.get('required')}"
        if u.name == "anthropic":
            # Same format: what Claude Code relies on must arrive untouched.
            assert rec.headers.get("anthropic-beta") == FIXTURE["headers"]["anthropic-beta"], (
                f"anthropic-beta upstream: {rec.headers.get('anthropic-beta')!r}"
            )
            assert up.get("metadata") == body["metadata"], f"metadata {up.get('metadata')}"
            assert up.get("thinking") == body["thinking"], f"thinking {up.get('thinking')}"
            assert up.get("system") == body["system"], "system blocks (with cache_control) changed"
            assert up.get("tools") == body["tools"], "tools changed"
        elif u.name == "openai":
            assert up.get("stream") is True, f"upstream stream={up.get('stream')!r}"

    def run(self, u: Upstream) -> str:
        body = copy.deepcopy(FIXTURE["body"])
        body["model"] = u.alias
        msg, rec = self._turn(u, body)
        self._check_upstream(u, rec, body)
        kinds = [b["type"] for b in msg["content"]]
        texts = [b for b in msg["content"] if b["type"] == "text"]
        assert kinds in (["text"], ["thinking", "text"]), f"content blocks {kinds}"
        want = reply_to(_user_text(body))
        assert texts[0]["text"] == want, f"text {texts[0]['text']!r} != {want!r}"
        assert msg["stop_reason"] == "end_turn", msg["stop_reason"]
        for b in msg["content"]:
            if b["type"] == "thinking":
                assert b["thinking"], f"thinking block without text: {b}"
                # Only Anthropic signs its thinking; another upstream's reasoning has no
                # signature to give (and an unsigned block is never sent to Anthropic).
                if u.name == "anthropic":
                    assert b.get("signature"), f"Anthropic thinking block without signature: {b}"

        # Next turn asks for something that makes the mock call the first tool (Task).
        body2 = copy.deepcopy(body)
        body2["messages"][-1]["content"][-1]["text"] = TOOL_PROMPT
        msg2, rec2 = self._turn(u, body2)
        self._check_upstream(u, rec2, body2)
        uses = [b for b in msg2["content"] if b["type"] == "tool_use"]
        assert msg2["stop_reason"] == "tool_use", f"stop_reason {msg2['stop_reason']!r}: {msg2['content']}"
        assert len(uses) == 1 and uses[0]["name"] == "Task", f"tool_use blocks {uses}"
        want_input = {"description": "mock", "prompt": "mock", "subagent_type": "mock"}
        assert uses[0]["input"] == want_input, f"streamed tool input {uses[0]['input']!r}"

        # Claude Code then sends the assistant turn back as received (thinking block with its
        # signature included) followed by the tool result.
        body3 = copy.deepcopy(body2)
        body3["messages"] += [
            {"role": "assistant", "content": msg2["content"]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0]["id"], "content": "forecast.sh: sunny"}],
            },
        ]
        msg3, rec3 = self._turn(u, body3)
        up3 = rec3.json()
        results = u.results(up3)
        assert len(results) == 1 and "forecast.sh: sunny" in results[0][2], f"upstream tool results {results}"
        if u.name == "anthropic":
            sent = [m for m in up3["messages"] if m["role"] == "assistant"][-1]["content"]
            assert sent == msg2["content"], "the assistant turn (thinking + signature) changed on its way upstream"
        assert msg3["stop_reason"] == "end_turn", f"after the tool result: {msg3['stop_reason']!r}"
        return (
            f"text turn {kinds}, tool turn {[b['type'] for b in msg2['content']]}, result turn "
            f"{[b['type'] for b in msg3['content']]}; upstream got {len(body['tools'])} tools with schemas "
            "and the 2 system blocks"
        )


def plan(c: ClaudeCodeChecks, upstreams: list[Upstream]) -> list:
    return [
        (f"Claude Code request -> {u.name} upstream: stream grammar, tools, system", lambda u=u: c.run(u), u.skip_reason)
        for u in upstreams
    ]
