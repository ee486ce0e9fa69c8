"""Raw SSE reading and the Anthropic Messages streaming grammar, for requests sent without
an SDK (an SDK would hide `ping`, event names and framing mistakes)."""

from __future__ import annotations

import json
from typing import Any


def parse(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) per SSE event; accepts LF or CRLF line ends."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n"), f"SSE body does not end with a blank line: {text[-80:]!r}"
    out: list[tuple[str | None, Any]] = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split("\n"):
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise AssertionError(f"unknown SSE field in line {line!r}")
        if not data:
            continue
        joined = "\n".join(data)
        out.append((name, joined if joined == "[DONE]" else json.loads(joined)))
    return out


def check_anthropic_stream(events: list[tuple[str | None, Any]]) -> dict:
    """Assert the documented Messages event sequence:
    message_start (content_block_start content_block_delta* content_block_stop)*
    message_delta message_stop, with `ping` allowed anywhere after message_start; every
    event's `event:` name equals its data `type`; blocks are indexed 0, 1, ... in order
    and their deltas fit their type. Returns the reassembled message."""
    assert events, "empty stream"
    for name, data in events:
        assert isinstance(data, dict), f"non-JSON data {data!r}"
        assert name == data.get("type"), f"event name {name!r} != data.type {data.get('type')!r}"
        assert name != "error", f"error event in stream: {data}"
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start", f"first event {names[0]!r}: {names}"
    assert names[-2:] == ["message_delta", "message_stop"], f"stream ends with {names[-2:]}: {names}"
    assert names.count("message_delta") == 1 and names.count("message_stop") == 1, names
    start = events[0][1]["message"]
    assert start["type"] == "message" and start["role"] == "assistant", start
    assert start["id"].startswith("msg_"), f"message id {start['id']!r}"
    assert start["content"] == [], f"message_start content {start['content']}"
    blocks: list[dict] = []
    open_block: dict | None = None
    tool_json: dict[int, str] = {}
    delta_kind = {"text": "text_delta", "tool_use": "input_json_delta", "thinking": ("thinking_delta", "signature_delta")}
    message_delta = None
    for name, data in events[1:]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_block is None, f"block {data['index']} started before block {len(blocks) - 1} stopped"
            assert data["index"] == len(blocks), f"block index {data['index']}, expected {len(blocks)}"
            open_block = dict(data["content_block"])
            assert open_block["type"] in delta_kind or open_block["type"] == "redacted_thinking", open_block
            if open_block["type"] == "tool_use":
                assert open_block["id"] and open_block["name"], open_block
                assert open_block.get("input") == {}, f"tool_use start input {open_block.get('input')!r}"
                tool_json[data["index"]] = ""
            blocks.append(open_block)
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == len(blocks) - 1, f"delta outside its block: {data}"
            d = data["delta"]
            allowed = delta_kind[open_block["type"]]
            assert d["type"] in (allowed if isinstance(allowed, tuple) else (allowed,)), (
                f"{d['type']} inside a {open_block['type']} block"
            )
            if d["type"] == "text_delta":
                open_block["text"] += d["text"]
            elif d["type"] == "input_json_delta":
                tool_json[data["index"]] += d["partial_json"]
            elif d["type"] == "thinking_delta":
                open_block["thinking"] += d["thinking"]
            elif d["type"] == "signature_delta":
                open_block["signature"] = d["signature"]
        elif name == "content_block_stop":
            assert open_block is not None and data["index"] == len(blocks) - 1, f"stray stop: {data}"
            if open_block["type"] == "tool_use":
                raw = tool_json[data["index"]]
                open_block["input"] = json.loads(raw) if raw else {}
            open_block = None
        elif name == "message_delta":
            assert open_block is None, "message_delta while a block is open"
            message_delta = data
        elif name == "message_stop":
            pass
        else:
            raise AssertionError(f"unexpected event {name!r}")
    assert message_delta is not None
    stop = message_delta["delta"].get("stop_reason")
    assert stop in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"), stop
    delta_usage = message_delta.get("usage") or {}
    assert isinstance(delta_usage.get("output_tokens"), int), f"message_delta usage {delta_usage}"
    # message_delta's counts are cumulative and win; fields it leaves out (or null) keep
    # message_start's values, as the SDKs accumulate them.
    usage = dict(start.get("usage") or {})
    usage.update({k: v for k, v in delta_usage.items() if v is not None})
    return {"id": start["id"], "content": blocks, "stop_reason": stop, "usage": usage, "start": start}
