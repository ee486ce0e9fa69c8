"""llmux end-to-end tests with the official OpenAI, Anthropic and Google GenAI SDKs.

Entry point: `python tests/python/run_e2e.py` (see `main.py`). Modules:

- `procs`      child processes (mock-upstream, llmux), free ports, readiness waits
- `recorder`   a recording HTTP proxy between llmux and the mock, so checks can assert
               what the upstream really received
- `upstreams`  the upstream matrix (OpenAI chat, Anthropic Messages, Gemini), how to
               read each format's request, and the probes that skip an upstream the
               mock cannot serve yet
- `runner`     PASS / FAIL / SKIP bookkeeping
- `sse`        raw SSE parsing and the Anthropic event-sequence grammar
- `checks_*`   one module per client API
"""
