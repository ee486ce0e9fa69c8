"""Child processes on free loopback ports: start, wait until ready, dump logs, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
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


def free_port(taken: set[int] | None = None) -> int:
    taken = taken or set()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


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
        if not self._log.closed:
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
