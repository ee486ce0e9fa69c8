#!/usr/bin/env python3
"""End-to-end test of llmux with the official `openai` Python SDK.

Starts `mock-upstream` and `llmux serve` on free loopback ports, points llmux at the
mock through a temporary uni-api style config, and checks real behaviour through
`openai.OpenAI(base_url=..., api_key=...)`:

  chat (non-stream), chat (stream + include_usage), model list, embeddings,
  a renamed model alias, a wrong client key (401) and an unknown model (404/403).

Usage (normally via `bash scripts/test.sh`):

    python tests/python/run_e2e.py

Environment:
    LLMUX_BIN   path of the llmux binary        (default: <target>/debug/llmux)
    MOCK_BIN    path of the mock-upstream binary (default: <target>/debug/mock-upstream)
    E2E_STARTUP_TIMEOUT  seconds to wait for each process to come up (default 60)

Exit status: 0 when every check passed, 1 otherwise. The last line printed is
`e2e: N passed, N failed`.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

try:
    import openai
except ImportError:  # pragma: no cover - environment problem, not a test failure
    print("e2e: the `openai` package is not installed (pip install -r tests/python/requirements.txt)")
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_KEY = "sk-e2e-client-key"
UPSTREAM_KEY = "sk-e2e-upstream-key"
CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
ALIAS = "mini-alias"
EXPECTED_MODELS = sorted([CHAT_MODEL, EMBED_MODEL, ALIAS])
PROMPT = "Say hello in one short sentence."
STARTUP_TIMEOUT = float(os.environ.get("E2E_STARTUP_TIMEOUT", "60"))


def default_target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        p = Path(env)
        return p if p.is_absolute() else ROOT / p
    return ROOT / "target"


def binary(env_name: str, name: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    return str(default_target_dir() / "debug" / name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process whose stdout+stderr go to a temp file (no pipe to fill up)."""

    def __init__(self, name: str, argv: list[str], workdir: Path):
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        print(f"[e2e] starting {name}: {' '.join(argv)}", flush=True)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(workdir)
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def dump(self) -> None:
        status = "running" if self.alive() else f"exited with {self.proc.returncode}"
        text = self.output()
        tail = text[-8000:] if len(text) > 8000 else text
        print(f"----- {self.name} ({status}) output -----")
        print(tail.rstrip() or "(no output)")
        print(f"----- end of {self.name} output -----", flush=True)


def wait_for_port(child: Child, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during startup with code {child.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not listen on port {port} within {STARTUP_TIMEOUT:.0f}s")


def wait_for_healthz(child: Child, port: int) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during startup with code {child.proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"GET {url} did not answer 200 within {STARTUP_TIMEOUT:.0f}s (last: {last})")


def write_config(path: Path, mock_port: int) -> None:
    # uni-api config format: a provider with a chat-completions base_url, its upstream key,
    # models (a plain name is exposed as itself; `upstream: alias` renames), client keys.
    path.write_text(
        f"""providers:
  - provider: mock
    base_url: http://127.0.0.1:{mock_port}/v1/chat/completions
    api: {UPSTREAM_KEY}
    model:
      - {CHAT_MODEL}
      - {EMBED_MODEL}
      - {CHAT_MODEL}: {ALIAS}
api_keys:
  - api: {CLIENT_KEY}
"""
    )


# ----------------------------------------------------------------------------- checks


class Checks:
    def __init__(self, base_url: str):
        self.base_url = base_url
        # max_retries=0: a failure must surface at once, not be hidden by SDK retries.
        self.client = openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
        self.nonstream_text: str | None = None

    def chat_nonstream(self) -> str:
        r = self.client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
        assert r.object == "chat.completion", f"object={r.object!r}"
        assert r.id, "empty id"
        assert r.model.startswith(CHAT_MODEL), f"model={r.model!r}, expected {CHAT_MODEL!r}"
        assert len(r.choices) >= 1, "no choices"
        msg = r.choices[0].message
        assert msg.role == "assistant", f"role={msg.role!r}"
        assert isinstance(msg.content, str) and msg.content.strip(), f"empty content: {msg.content!r}"
        assert r.choices[0].finish_reason is not None, "finish_reason missing"
        u = r.usage
        assert u is not None, "usage missing"
        assert u.prompt_tokens > 0 and u.completion_tokens > 0, f"usage={u}"
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage={u}"
        self.nonstream_text = msg.content
        return f"{msg.content!r} usage={u.prompt_tokens}+{u.completion_tokens}={u.total_tokens}"

    def chat_stream_usage(self) -> str:
        stream = self.client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)  # the SDK raises on a broken stream or an in-stream error event
        assert chunks, "stream produced no chunks"
        for c in chunks:
            assert c.object == "chat.completion.chunk", f"object={c.object!r}"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish, "no chunk carried a finish_reason"
        last = chunks[-1]
        assert last.usage is not None, "last chunk has no usage although include_usage=true"
        assert last.choices == [], f"usage chunk must have empty choices, got {last.choices}"
        u = last.usage
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage={u}"
        with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
        assert with_usage == [len(chunks) - 1], f"usage appears in chunks {with_usage}, expected only the last"
        assert text.strip(), "stream deltas joined to empty text"
        if self.nonstream_text is None:
            self.chat_nonstream()
        assert text == self.nonstream_text, (
            f"stream text {text!r} != non-stream text {self.nonstream_text!r}"
        )
        return f"{len(chunks)} chunks, text matches non-stream, usage total={u.total_tokens}"

    def chat_stream_plain(self) -> str:
        stream = self.client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        if self.nonstream_text is None:
            self.chat_nonstream()
        assert text == self.nonstream_text, f"stream text {text!r} != non-stream {self.nonstream_text!r}"
        return f"{len(chunks)} chunks"

    def models_list(self) -> str:
        ids = [m.id for m in self.client.models.list()]
        assert sorted(ids) == EXPECTED_MODELS, f"models {sorted(ids)} != configured {EXPECTED_MODELS}"
        return ", ".join(ids)

    def embeddings(self) -> str:
        inputs = ["hello", "world", "a slightly longer third input"]
        out = []
        for fmt in (None, "float"):  # the SDK asks for base64 by default and decodes it
            kwargs = {} if fmt is None else {"encoding_format": fmt}
            r = self.client.embeddings.create(model=EMBED_MODEL, input=inputs, **kwargs)
            assert len(r.data) == len(inputs), f"{len(r.data)} embeddings for {len(inputs)} inputs"
            assert sorted(d.index for d in r.data) == list(range(len(inputs))), "bad indexes"
            dims = {len(d.embedding) for d in r.data}
            assert len(dims) == 1, f"inconsistent vector lengths {dims}"
            dim = dims.pop()
            assert dim > 0, "empty vectors"
            for d in r.data:
                assert all(isinstance(x, float) for x in d.embedding), "non-float vector element"
            assert r.model.startswith(EMBED_MODEL), f"model={r.model!r}"
            out.append(f"{fmt or 'default'}: {len(r.data)}x{dim}")
        return "; ".join(out)

    def alias(self) -> str:
        r = self.client.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": PROMPT}])
        content = r.choices[0].message.content
        assert isinstance(content, str) and content.strip(), f"empty content: {content!r}"
        return f"ok, response model={r.model!r}"

    def wrong_key(self) -> str:
        bad = openai.OpenAI(base_url=self.base_url, api_key="sk-wrong-key", max_retries=0, timeout=30)
        try:
            bad.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}])
        except openai.AuthenticationError as e:
            assert e.status_code == 401, f"status {e.status_code}"
            body = e.response.json()
            assert isinstance(body.get("error"), dict) and body["error"].get("message"), f"body={body}"
            return f"401: {body['error']['message']!r}"
        raise AssertionError("a wrong client key did not raise openai.AuthenticationError")

    def missing_key(self) -> str:
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": PROMPT}]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raise AssertionError(f"no Authorization header answered HTTP {r.status}")
        except urllib.error.HTTPError as e:
            assert e.code == 401, f"HTTP {e.code}"
            return "401"

    def unknown_model(self) -> str:
        model = "no-such-model-xyz"
        try:
            self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
        except (openai.NotFoundError, openai.PermissionDeniedError) as e:
            body = e.response.json()
            err = body.get("error") if isinstance(body, dict) else None
            assert isinstance(err, dict), f"no error object in body {body}"
            msg = err.get("message") or ""
            assert model in msg, f"error.message {msg!r} does not name the model {model!r}"
            return f"{e.status_code}: {msg!r}"
        except openai.APIStatusError as e:
            raise AssertionError(f"unknown model answered HTTP {e.status_code}, expected 404 or 403: {e}")
        raise AssertionError("an unknown model did not raise an error")


def main() -> int:
    llmux_bin = binary("LLMUX_BIN", "llmux")
    mock_bin = binary("MOCK_BIN", "mock-upstream")
    for b in (llmux_bin, mock_bin):
        if not os.access(b, os.X_OK):
            print(f"[e2e] binary not found or not executable: {b} (build with `cargo build --bins`)")
            print("e2e: 0 passed, 1 failed")
            return 1
    print(f"[e2e] openai SDK {openai.__version__}, python {sys.version.split()[0]}")

    # Turn SIGTERM/SIGHUP into SystemExit so the `finally` below always stops the children.
    def _terminate(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    children: list[Child] = []

    def stop_all() -> None:
        for c in children:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass

    atexit.register(stop_all)

    passed: list[str] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llmux-e2e-") as tmp:
        workdir = Path(tmp)
        try:
            mock_port, llmux_port = free_port(), free_port()
            while llmux_port == mock_port:
                llmux_port = free_port()
            mock = Child("mock-upstream", [mock_bin, "--host", "127.0.0.1", "--port", str(mock_port)], workdir)
            children.append(mock)
            wait_for_port(mock, mock_port)

            config = workdir / "api.yaml"
            write_config(config, mock_port)
            llmux = Child(
                "llmux",
                [llmux_bin, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(llmux_port)],
                workdir,
            )
            children.append(llmux)
            wait_for_healthz(llmux, llmux_port)
            print(f"[e2e] mock-upstream on :{mock_port}, llmux on :{llmux_port}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"[e2e] SETUP FAILED: {e}")
            for c in children:
                c.dump()
            stop_all()
            print("e2e: 0 passed, 1 failed")
            return 1

        checks = Checks(f"http://127.0.0.1:{llmux_port}/v1")
        plan: list[tuple[str, Callable[[], str]]] = [
            ("chat non-stream", checks.chat_nonstream),
            ("chat stream + include_usage", checks.chat_stream_usage),
            ("chat stream without usage", checks.chat_stream_plain),
            ("models list", checks.models_list),
            ("embeddings", checks.embeddings),
            ("renamed model alias", checks.alias),
            ("wrong client key -> 401", checks.wrong_key),
            ("missing client key -> 401", checks.missing_key),
            ("unknown model -> 404/403", checks.unknown_model),
        ]
        try:
            for name, fn in plan:
                t0 = time.monotonic()
                try:
                    detail = fn()
                    passed.append(name)
                    print(f"PASS  {name} ({(time.monotonic() - t0) * 1000:.0f} ms): {detail}", flush=True)
                except Exception as e:  # noqa: BLE001 - report every failure and go on
                    failed.append(name)
                    print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
                    if not isinstance(e, AssertionError):
                        traceback.print_exc(limit=3, file=sys.stdout)
            for c in children:
                if not c.alive():
                    failed.append(f"{c.name} still running")
                    print(f"FAIL  {c.name} exited with {c.proc.returncode} during the tests")
            if failed:
                for c in children:
                    c.dump()
        finally:
            stop_all()

    print()
    print("e2e summary:")
    for n in passed:
        print(f"  ok    {n}")
    for n in failed:
        print(f"  FAIL  {n}")
    print(f"e2e: {len(passed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
