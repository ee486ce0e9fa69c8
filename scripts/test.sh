#!/usr/bin/env bash
# The project's test command:
#
#   bash scripts/test.sh
#
# 1. cargo test --workspace (--locked when Cargo.lock is present), with a throw-away
#    PostgreSQL server for the usage-store tests (scripts/pg-throwaway.sh)
# 2. Python end-to-end tests with the official SDKs (openai, anthropic, google-genai)
#    against the real binaries:
#    creates/reuses the venv .venv, installs tests/python/requirements.txt, builds the
#    debug binaries (cargo build --bins --tests) and runs tests/python/run_e2e.py, which starts
#    mock-upstream and `llmux serve` on free loopback ports and runs every client API
#    (chat completions, Responses, Anthropic Messages, Gemini) against every upstream
#    format the mock serves.
#
# Environment:
#   SKIP_PYTHON=1   run only the cargo tests
#   PYTHON=python3  interpreter used to create the venv
#   VENV=.venv      venv location (relative to the repo root)
#   LLMUX_TEST_PG_URL=postgres://...  use this PostgreSQL server instead of a throw-away one
# Fails fast: the first failing step stops the script with a non-zero exit code.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n==== %s ====\n' "$*"; }
die() { printf 'test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

LOCKED=()
[ -f Cargo.lock ] && LOCKED=(--locked)

# PostgreSQL for the usage-store contract tests: a throw-away server (data dir in /tmp,
# spare port, stopped and removed at exit) unless LLMUX_TEST_PG_URL names one already.
# Without the server binaries the PostgreSQL tests print SKIP, except under CI, where
# .ci/run installs them and a missing server is an error.
PG_DIR=""
stop_pg() {
  if [ -n "$PG_DIR" ]; then
    bash scripts/pg-throwaway.sh stop "$PG_DIR" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
if [ -z "${LLMUX_TEST_PG_URL:-}" ]; then
  if bash scripts/pg-throwaway.sh available; then
    section "PostgreSQL (throw-away server for the usage-store tests)"
    PG_DIR="$(mktemp -d /tmp/llmux-pg.XXXXXX)"
    trap stop_pg EXIT
    LLMUX_TEST_PG_URL="$(bash scripts/pg-throwaway.sh start "$PG_DIR")"
    export LLMUX_TEST_PG_URL
    echo "LLMUX_TEST_PG_URL=$LLMUX_TEST_PG_URL"
  elif [ "${CI:-}" = true ]; then
    die "PostgreSQL server binaries not found (.ci/run installs the postgresql package)"
  else
    echo "PostgreSQL server not installed: the usage-store tests against it will print SKIP"
  fi
fi

section "cargo test --workspace ${LOCKED[*]}"
cargo test --workspace "${LOCKED[@]}"

if [ "${SKIP_PYTHON:-0}" = 1 ]; then
  section "Python end-to-end tests skipped (SKIP_PYTHON=1)"
  exit 0
fi

section "Python venv"
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
VPY="$VENV/bin/python"

venv_ok() { [ -x "$VPY" ] && "$VPY" -m pip --version >/dev/null 2>&1; }

make_venv() {
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
}

if venv_ok; then
  echo "reusing $VENV ($("$VPY" --version 2>&1))"
else
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
  if ! make_venv; then
    # Debian's python3 ships venv/ensurepip in a separate package.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "python3 -m venv failed; installing python3-venv with apt-get"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt-get install -y -qq python3-venv >/dev/null ||
        apt-get install -y -qq "python${pyver}-venv" >/dev/null
      make_venv
    else
      die "'$PYTHON -m venv' failed; install python3-venv (apt-get install -y python3-venv)"
    fi
  fi
  venv_ok || die "the venv at $VENV has no working pip"
  echo "created $VENV ($("$VPY" --version 2>&1))"
fi

section "pip install -r tests/python/requirements.txt"
"$VPY" -m pip install -q -r tests/python/requirements.txt
"$VPY" -c 'import openai, anthropic; from google import genai; print("openai", openai.__version__, "| anthropic", anthropic.__version__, "| google-genai", genai.__version__)'

# `--tests` keeps dev-dependencies in the feature resolution, exactly as `cargo test`
# had them, so this reuses the artifacts of the step above (a plain `--bins` build
# would recompile tokio and everything above it without dev-only features).
section "cargo build --workspace --bins --tests (debug)"
cargo build --workspace --bins --tests "${LOCKED[@]}"

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps "${LOCKED[@]}" 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
[ -n "$TARGET_DIR" ] || TARGET_DIR="$ROOT/target"
export LLMUX_BIN="${LLMUX_BIN:-$TARGET_DIR/debug/llmux}"
export MOCK_BIN="${MOCK_BIN:-$TARGET_DIR/debug/mock-upstream}"

section "Python end-to-end tests (openai, anthropic, google-genai SDKs): tests/python/run_e2e.py"
"$VPY" tests/python/run_e2e.py
