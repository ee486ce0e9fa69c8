"""PASS / FAIL / SKIP bookkeeping: one line per check, a summary, an exit status."""

from __future__ import annotations

import sys
import time
import traceback
from typing import Callable, Optional


class Skip(Exception):
    """Raised by a check that cannot run here (the reason is printed)."""


class Runner:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def check(self, name: str, fn: Callable[[], str], skip: Optional[str] = None) -> None:
        if skip:
            self.skipped.append((name, skip))
            print(f"SKIP  {name}: {skip}", flush=True)
            return
        t0 = time.monotonic()
        try:
            detail = fn()
        except Skip as e:
            self.skipped.append((name, str(e)))
            print(f"SKIP  {name}: {e}", flush=True)
            return
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed.append(name)
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc(limit=4, file=sys.stdout)
            return
        self.passed.append(name)
        print(f"PASS  {name} ({(time.monotonic() - t0) * 1000:.0f} ms): {detail}", flush=True)

    def fail(self, name: str, why: str) -> None:
        self.failed.append(name)
        print(f"FAIL  {name}: {why}", flush=True)

    def summary(self) -> int:
        print()
        print("e2e summary:")
        for n in self.passed:
            print(f"  ok    {n}")
        for n, why in self.skipped:
            print(f"  skip  {n} ({why})")
        for n in self.failed:
            print(f"  FAIL  {n}")
        print(f"e2e: {len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped", flush=True)
        return 1 if self.failed else 0
