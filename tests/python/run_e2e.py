#!/usr/bin/env python3
"""End-to-end tests of llmux with the official SDKs: `openai` (chat completions and the
Responses API), `anthropic` (Messages) and `google-genai` (Gemini).

Starts `mock-upstream` and `llmux serve` on free loopback ports with a recording proxy in
between (so checks can assert what the upstream received), and runs every client API
against every upstream wire format in `e2e/upstreams.py:MATRIX` (OpenAI chat, Anthropic
Messages, Gemini). Upstream formats the mock cannot serve yet are probed at startup and
their checks skipped with the reason printed. See `e2e/__init__.py` for the layout.

Usage (normally via `bash scripts/test.sh`):

    python tests/python/run_e2e.py

Environment:
    LLMUX_BIN   path of the llmux binary        (default: <target>/debug/llmux)
    MOCK_BIN    path of the mock-upstream binary (default: <target>/debug/mock-upstream)
    E2E_STARTUP_TIMEOUT  seconds to wait for each process to come up (default 60)
    E2E_ONLY    run only the checks whose name contains this substring

Exit status: 0 when no check failed, 1 otherwise (2: an SDK is not installed). The last
line printed is `e2e: N passed, N failed, N skipped`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import anthropic  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401
except ImportError as e:  # pragma: no cover - environment problem, not a test failure
    print(f"e2e: an SDK is missing ({e}); pip install -r tests/python/requirements.txt")
    sys.exit(2)

from e2e.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
