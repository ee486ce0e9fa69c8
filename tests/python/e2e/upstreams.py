"""The upstream matrix: every client-side check runs once per upstream wire format.

Each `Upstream` is one llmux provider in the generated config, pointing (through the
recorder) at mock-upstream in one wire format, and exposing one client-facing model
alias. To add an upstream format, add an entry to `MATRIX` with its provider YAML, the
readers of its request body, and a probe.

Readers take the JSON body the upstream received and return what the checks compare:
the system prompt, the tools offered, the assistant's tool calls and the tool results
sent back (id and/or name, and the result text).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

UPSTREAM_KEY = "sk-e2e-upstream-key"


def _text_of(content: Any) -> str:
    """Text of a string or a list of text-bearing parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(p.get("text", p.get("content", ""))) for p in content if isinstance(p, dict))
    return ""


# ----------------------------------------------------------------------- OpenAI chat


def _oai_system(body: dict) -> str:
    return "\n".join(
        _text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") in ("system", "developer")
    )


def _oai_tools(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]


def _oai_schemas(body: dict) -> dict[str, Any]:
    return {t["function"]["name"]: t["function"].get("parameters") for t in body.get("tools") or [] if t.get("type") == "function"}


def _oai_calls(body: dict) -> list[tuple[Optional[str], str]]:
    return [
        (tc.get("id"), tc["function"]["name"])
        for m in body.get("messages", [])
        if m.get("role") == "assistant"
        for tc in m.get("tool_calls") or []
    ]


def _oai_results(body: dict) -> list[tuple[Optional[str], Optional[str], str]]:
    return [
        (m.get("tool_call_id"), None, _text_of(m.get("content")))
        for m in body.get("messages", [])
        if m.get("role") == "tool"
    ]


# ----------------------------------------------------------------------- Anthropic


def _anth_system(body: dict) -> str:
    s = body.get("system")
    return s if isinstance(s, str) else "\n".join(b.get("text", "") for b in s or [])


def _anth_tools(body: dict) -> list[str]:
    return [t["name"] for t in body.get("tools") or []]


def _anth_schemas(body: dict) -> dict[str, Any]:
    return {t["name"]: t.get("input_schema") for t in body.get("tools") or []}


def _anth_blocks(body: dict, role: str, kind: str) -> list[dict]:
    return [
        b
        for m in body.get("messages", [])
        if m.get("role") == role and isinstance(m.get("content"), list)
        for b in m["content"]
        if b.get("type") == kind
    ]


def _anth_calls(body: dict) -> list[tuple[Optional[str], str]]:
    return [(b.get("id"), b["name"]) for b in _anth_blocks(body, "assistant", "tool_use")]


def _anth_results(body: dict) -> list[tuple[Optional[str], Optional[str], str]]:
    return [(b.get("tool_use_id"), None, _text_of(b.get("content"))) for b in _anth_blocks(body, "user", "tool_result")]


# ----------------------------------------------------------------------- Gemini


def _gem(obj: dict, camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def _gem_system(body: dict) -> str:
    si = _gem(body, "systemInstruction", "system_instruction") or {}
    return "\n".join(p.get("text", "") for p in si.get("parts", []))


def _gem_tools(body: dict) -> list[str]:
    return [
        d["name"]
        for t in body.get("tools") or []
        for d in _gem(t, "functionDeclarations", "function_declarations") or []
    ]


def _gem_schemas(body: dict) -> dict[str, Any]:
    return {
        d["name"]: _gem(d, "parametersJsonSchema", "parameters_json_schema") or d.get("parameters")
        for t in body.get("tools") or []
        for d in _gem(t, "functionDeclarations", "function_declarations") or []
    }


def _gem_parts(body: dict, key_camel: str, key_snake: str) -> list[dict]:
    return [
        _gem(p, key_camel, key_snake)
        for c in body.get("contents", [])
        for p in c.get("parts", [])
        if _gem(p, key_camel, key_snake) is not None
    ]


def _gem_calls(body: dict) -> list[tuple[Optional[str], str]]:
    return [(fc.get("id"), fc["name"]) for fc in _gem_parts(body, "functionCall", "function_call")]


def _gem_results(body: dict) -> list[tuple[Optional[str], Optional[str], str]]:
    return [
        (fr.get("id"), fr.get("name"), json.dumps(fr.get("response")))
        for fr in _gem_parts(body, "functionResponse", "function_response")
    ]


# ----------------------------------------------------------------------- probes


def _post(port: int, path: str, headers: dict[str, str], body: dict) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode(errors="replace")
    finally:
        conn.close()


def _probe_reason(what: str, status: int, ctype: str, text: str, needle: str) -> Optional[str]:
    if status == 200 and ctype.startswith("text/event-stream") and needle in text:
        return None
    print(f"[e2e] probe: mock-upstream answered {what} with HTTP {status} {ctype}: {text.strip()[:300]!r}")
    return f"requires mock Anthropic/Gemini routes (mock-upstream answered {what} with HTTP {status})"


def _probe_openai(_port: int) -> Optional[str]:
    return None


def _probe_anthropic(port: int) -> Optional[str]:
    # A streamed tool call: the least an Anthropic upstream must do for these checks.
    status, ctype, text = _post(
        port,
        "/v1/messages",
        {"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"},
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 50,
            "stream": True,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
            "messages": [{"role": "user", "content": "weather?"}],
        },
    )
    return _probe_reason("a streamed tool_use request on /v1/messages", status, ctype, text, '"tool_use"')


def _probe_gemini(port: int) -> Optional[str]:
    status, ctype, text = _post(
        port,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"x-goog-api-key": UPSTREAM_KEY},
        {
            "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}],
            "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        },
    )
    return _probe_reason(
        "a streamed functionCall request on /v1beta/...:streamGenerateContent",
        status,
        ctype,
        text,
        '"functionCall"',
    )


# ----------------------------------------------------------------------- the matrix


@dataclass
class Upstream:
    name: str
    """Short name used in check names: `anthropic SDK -> <name> upstream`."""
    alias: str
    """The model name clients use to reach this upstream through llmux."""
    upstream_model: str
    path_marker: str
    """A substring of the path llmux must call on this upstream."""
    provider_yaml: Callable[[str], str]
    """The provider entry for api.yaml, given the recorder's base URL (http://host:port)."""
    system: Callable[[dict], str]
    tools: Callable[[dict], list[str]]
    schemas: Callable[[dict], dict[str, Any]]
    """Tool name -> the JSON schema of its arguments as sent upstream."""
    calls: Callable[[dict], list[tuple[Optional[str], str]]]
    results: Callable[[dict], list[tuple[Optional[str], Optional[str], str]]]
    probe: Callable[[int], Optional[str]]
    """None when the mock serves this format well enough, else the reason to skip."""
    skip_reason: Optional[str] = None


def _provider(name: str, base_url: str, lines: list[str]) -> str:
    out = [f"  - provider: {name}", f"    base_url: {base_url}", f"    api: {UPSTREAM_KEY}", "    model:"]
    out += [f"      - {line}" for line in lines]
    return "\n".join(out) + "\n"


OPENAI_MODEL = "gpt-4o-mini"

MATRIX: list[Upstream] = [
    Upstream(
        name="openai",
        alias="via-openai",
        upstream_model=OPENAI_MODEL,
        path_marker="/v1/chat/completions",
        provider_yaml=lambda base: _provider(
            "mock-openai",
            f"{base}/v1/chat/completions",
            # The plain OpenAI-SDK checks use these three too (see checks_openai_chat).
            [OPENAI_MODEL, "text-embedding-3-small", f"{OPENAI_MODEL}: mini-alias", f"{OPENAI_MODEL}: via-openai"],
        ),
        system=_oai_system,
        tools=_oai_tools,
        schemas=_oai_schemas,
        calls=_oai_calls,
        results=_oai_results,
        probe=_probe_openai,
    ),
    # requires mock Anthropic/Gemini routes: skipped (with the reason printed) until
    # mock-upstream streams tool calls on /v1/messages.
    Upstream(
        name="anthropic",
        alias="via-anthropic",
        upstream_model="claude-sonnet-4-5",
        path_marker="/v1/messages",
        provider_yaml=lambda base: _provider("mock-anthropic", f"{base}/v1/messages", ["claude-sonnet-4-5: via-anthropic"]),
        system=_anth_system,
        tools=_anth_tools,
        schemas=_anth_schemas,
        calls=_anth_calls,
        results=_anth_results,
        probe=_probe_anthropic,
    ),
    # requires mock Anthropic/Gemini routes: skipped (with the reason printed) until
    # mock-upstream serves /v1beta/models/{model}:generateContent and friends.
    Upstream(
        name="gemini",
        alias="via-gemini",
        upstream_model="gemini-2.5-flash",
        path_marker="/v1beta/models/gemini-2.5-flash:",
        provider_yaml=lambda base: _provider("mock-gemini", f"{base}/v1beta", ["gemini-2.5-flash: via-gemini"]),
        system=_gem_system,
        tools=_gem_tools,
        schemas=_gem_schemas,
        calls=_gem_calls,
        results=_gem_results,
        probe=_probe_gemini,
    ),
]


def write_config(path, base_url: str, client_key: str) -> None:
    """api.yaml with one provider per matrix entry, all behind the recorder."""
    providers = "".join(u.provider_yaml(base_url) for u in MATRIX)
    path.write_text(f"providers:\n{providers}api_keys:\n  - api: {client_key}\n")


def exposed_models() -> list[str]:
    """Every model name the client key can list (aliases and plain names)."""
    names = []
    for u in MATRIX:
        for line in u.provider_yaml("http://x").splitlines():
            if line.startswith("      - "):  # an entry of `model:`
                entry = line.strip()[2:]
                names.append(entry.split(": ", 1)[1] if ": " in entry else entry)
    return sorted(names)


def check_upstream_request(u: Upstream, rec, *, system: Optional[str] = None, tools: Optional[list[str]] = None) -> dict:
    """Common assertions on the one request llmux sent upstream; returns its JSON body."""
    assert u.path_marker in rec.path, f"{u.name} upstream was called at {rec.path!r}, expected {u.path_marker!r}"
    body = rec.json()
    if system is not None:
        got = u.system(body)
        assert system in got, f"upstream system prompt {got!r} does not contain {system!r}"
    if tools is not None:
        got_tools = u.tools(body)
        assert got_tools == tools, f"upstream tools {got_tools} != {tools}"
    return body


def check_tool_results(u: Upstream, body: dict, expected: dict[str, str]) -> str:
    """The second turn carries the assistant's calls and one result per call, each matched
    to its call by id (or by name where the format has no id), with the client's text.
    `expected` maps tool name -> a substring of its result."""
    calls = u.calls(body)
    results = u.results(body)
    assert sorted(n for _, n in calls) == sorted(expected), f"upstream assistant calls {calls}, expected {sorted(expected)}"
    assert len(results) == len(expected), f"upstream got {len(results)} tool results, expected {len(expected)}: {results}"
    by_id = {i: n for i, n in calls if i}
    seen = set()
    for rid, rname, text in results:
        name = rname if rname else by_id.get(rid)
        if rid and by_id:
            assert rid in by_id, f"tool result id {rid!r} matches no call id in {sorted(by_id)}"
            assert rname is None or by_id[rid] == rname, f"result {rid!r} named {rname!r}, call named {by_id[rid]!r}"
        assert name in expected, f"tool result {(rid, rname)} matched no call (calls {calls})"
        assert expected[name] in text, f"result for {name} is {text!r}, expected it to contain {expected[name]!r}"
        seen.add(name)
    assert seen == set(expected), f"results for {sorted(seen)}, expected {sorted(expected)}"
    ids = [i for i, _ in calls if i]
    assert len(ids) == len(set(ids)), f"duplicate call ids upstream: {ids}"
    return f"{len(results)} results matched by {'id' if by_id else 'name'}"
