"""Start mock-upstream, the recorder and `llmux serve`, probe which upstream formats the mock
serves, and run every check. Exit status 0 when nothing failed (skips are not failures)."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import tempfile
from pathlib import Path

from . import checks_anthropic, checks_claude_code, checks_gemini, checks_openai_chat, checks_responses
from .env import CLIENT_KEY, Env
from .procs import Child, binary, free_port, wait_for_healthz, wait_for_port
from .recorder import Recorder
from .runner import Runner
from .upstreams import MATRIX, write_config


def _versions() -> str:
    import anthropic
    import openai
    from google import genai

    return f"openai {openai.__version__}, anthropic {anthropic.__version__}, google-genai {genai.__version__}"


def main() -> int:
    llmux_bin = binary("LLMUX_BIN", "llmux")
    mock_bin = binary("MOCK_BIN", "mock-upstream")
    for b in (llmux_bin, mock_bin):
        if not os.access(b, os.X_OK):
            print(f"[e2e] binary not found or not executable: {b} (build with `cargo build --bins`)")
            print("e2e: 0 passed, 1 failed")
            return 1
    print(f"[e2e] {_versions()}, python {sys.version.split()[0]}")

    # Turn SIGTERM/SIGHUP into SystemExit so the `finally` below always stops the children.
    def _terminate(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    children: list[Child] = []
    recorder: Recorder | None = None

    def stop_all() -> None:
        for c in children:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        if recorder is not None:
            try:
                recorder.stop()
            except Exception:  # noqa: BLE001
                pass

    atexit.register(stop_all)
    runner = Runner()
    with tempfile.TemporaryDirectory(prefix="llmux-e2e-") as tmp:
        workdir = Path(tmp)
        try:
            mock_port = free_port()
            mock = Child("mock-upstream", [mock_bin, "--host", "127.0.0.1", "--port", str(mock_port)], workdir)
            children.append(mock)
            wait_for_port(mock, mock_port)
            recorder = Recorder(mock_port)
            llmux_port = free_port({mock_port, recorder.port})
            config = workdir / "api.yaml"
            write_config(config, f"http://127.0.0.1:{recorder.port}", CLIENT_KEY)
            llmux = Child(
                "llmux",
                [llmux_bin, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(llmux_port)],
                workdir,
            )
            children.append(llmux)
            wait_for_healthz(llmux, llmux_port)
            print(
                f"[e2e] mock-upstream on :{mock_port}, recorder on :{recorder.port}, llmux on :{llmux_port}",
                flush=True,
            )
            for u in MATRIX:
                u.skip_reason = u.probe(mock_port)
                state = "ready" if u.skip_reason is None else f"SKIPPED ({u.skip_reason})"
                print(f"[e2e] upstream {u.name}: {state}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"[e2e] SETUP FAILED: {e}")
            for c in children:
                c.dump()
            stop_all()
            print("e2e: 0 passed, 1 failed")
            return 1

        env = Env(llmux=f"http://127.0.0.1:{llmux_port}", recorder=recorder)
        plan: list = [
            (name, fn, None)
            for name, fn in checks_openai_chat.plan(checks_openai_chat.ChatChecks(f"{env.llmux}/v1", CLIENT_KEY))
        ]
        plan += checks_openai_chat.matrix_plan(checks_openai_chat.MatrixChatChecks(env), MATRIX)
        plan += checks_anthropic.plan(checks_anthropic.AnthropicChecks(env), MATRIX)
        plan += checks_gemini.plan(checks_gemini.GeminiChecks(env), MATRIX)
        plan += checks_responses.plan(checks_responses.ResponsesChecks(env), MATRIX)
        plan += checks_claude_code.plan(checks_claude_code.ClaudeCodeChecks(env), MATRIX)
        only = os.environ.get("E2E_ONLY")  # substring filter, for debugging one check
        try:
            for name, fn, skip in plan:
                if only and only not in name:
                    continue
                runner.check(name, fn, skip)
            for c in children:
                if not c.alive():
                    runner.fail(f"{c.name} still running", f"exited with {c.proc.returncode} during the tests")
            if runner.failed:
                for c in children:
                    c.dump()
        finally:
            stop_all()
    return runner.summary()
