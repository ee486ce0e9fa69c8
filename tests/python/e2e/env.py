"""What every check module needs: where llmux listens, the client key, the recorder."""

from __future__ import annotations

from dataclasses import dataclass

from .recorder import Recorder

CLIENT_KEY = "sk-e2e-client-key"
WRONG_KEY = "sk-e2e-wrong-key"
UNKNOWN_MODEL = "no-such-model-xyz"

# Shared tools: the mock calls a tool when the last user text says "weather", and every
# offered tool when it also says "parallel"; arguments are placeholders per JSON type
# ("mock" for strings).
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"tz": {"type": "string", "description": "IANA time zone"}},
    "required": ["tz"],
}
PARALLEL_PROMPT = "What is the weather and the local time in Paris? Call both tools in parallel."
SINGLE_TOOL_PROMPT = "What is the weather in Paris?"
TOOL_RESULTS = {"get_weather": "sunny, 21 C", "get_time": "14:05 CEST"}


def reply_to(prompt: str) -> str:
    """The mock's deterministic answer: "You said: " + the first 32 words of the last user text."""
    return "You said: " + " ".join(prompt.split()[:32])


@dataclass
class Env:
    llmux: str
    """http://127.0.0.1:PORT (no path)."""
    recorder: Recorder
    client_key: str = CLIENT_KEY
