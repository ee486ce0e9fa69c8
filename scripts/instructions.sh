#!/usr/bin/env bash
# CPU instructions per request, counted by valgrind's callgrind: deterministic where wall-clock
# benchmarks on a shared 2-core VM vary by ±10 %, so a change of a few percent in the work llmux
# does per request shows (not run by CI; needs `apt-get install valgrind`).
#
#   bash scripts/instructions.sh [nonstream|stream] [N]
#
# Starts the mock and llmux (one server worker, SQLite usage store) under callgrind on loopback,
# sends warm-up requests, zeroes the counters, sends N requests (default 2000) one after another
# on one keep-alive connection, and prints instructions per request for each llmux thread:
# the serving thread (the request path, the usage writer task) and SQLite's worker threads.
# With TARGET=limitproxy it counts limitproxy instead (the same requests, for comparison).
# Per-function costs: `callgrind_annotate --inclusive=yes $OUT_DIR/callgrind.out.*`.
#
# Environment: LLMUX_BIN, MOCK_BIN, LIMITPROXY_BIN (default: release builds), WARM=3000,
# VG_EXTRA (more valgrind options, e.g. `--separate-callers=12` to see whose drop frees a page),
# PORT=9651, MOCK_PORT=9650, OUT_DIR=bench-results/callgrind.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-nonstream}"
N="${2:-2000}"
WARM="${WARM:-3000}"
PORT="${PORT:-9651}"
MOCK_PORT="${MOCK_PORT:-9650}"
TARGET="${TARGET:-llmux}"
OUT_DIR="${OUT_DIR:-$ROOT/bench-results/callgrind}"
LLMUX_BIN="${LLMUX_BIN:-$ROOT/target/release/llmux}"
MOCK_BIN="${MOCK_BIN:-$ROOT/target/release/mock-upstream}"
LIMITPROXY_BIN="${LIMITPROXY_BIN:-/tmp/limitproxy-build/target/release/limitproxy}"

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
for b in "$MOCK_BIN" "$([ "$TARGET" = llmux ] && echo "$LLMUX_BIN" || echo "$LIMITPROXY_BIN")"; do
  [ -x "$b" ] || { echo "missing binary $b (cargo build --release, or bash scripts/bench.sh once)" >&2; exit 1; }
done
case "$MODE" in
  nonstream) BODY="$ROOT/scripts/bench/chat.json" ;;
  stream) BODY="$ROOT/scripts/bench/chat-stream.json" ;;
  *) echo "mode: nonstream or stream" >&2; exit 1 ;;
esac

rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$MOCK_BIN" --host 127.0.0.1 --port "$MOCK_PORT" >"$OUT_DIR/mock.log" 2>&1 &
PIDS+=($!)
sed "s/127.0.0.1:9000/127.0.0.1:$MOCK_PORT/" "$ROOT/scripts/bench/api.yaml" >"$OUT_DIR/api.yaml"
VG=(valgrind --tool=callgrind --separate-threads=yes --dump-instr=no ${VG_EXTRA:-}
  "--callgrind-out-file=$OUT_DIR/callgrind.out")
if [ "$TARGET" = llmux ]; then
  DB_PATH="$OUT_DIR/usage.sqlite" LLMUX_STATE_FILE="$OUT_DIR/keypool.json" "${VG[@]}" \
    "$LLMUX_BIN" serve --workers 1 --config "$OUT_DIR/api.yaml" --host 127.0.0.1 --port "$PORT" \
    >"$OUT_DIR/server.log" 2>&1 &
else
  "${VG[@]}" "$LIMITPROXY_BIN" "$PORT" "$MOCK_PORT" >"$OUT_DIR/server.log" 2>&1 &
fi
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 120); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
  # limitproxy forwards /healthz to the mock, which answers 404: any answer means it is up.
  sleep 0.5
done

client() { python3 "$ROOT/scripts/bench/keepalive_client.py" 127.0.0.1 "$PORT" "$1" "$BODY"; }
client "$WARM"
callgrind_control -z "$SERVER" >/dev/null 2>&1
client "$N"
callgrind_control -d "$SERVER" >/dev/null 2>&1
sleep 1

echo "$TARGET $MODE: instructions per request over $N requests (after $WARM warm-up), by thread"
python3 - "$N" "$OUT_DIR" <<'PY'
import glob, sys
n, out = int(sys.argv[1]), sys.argv[2]
total = 0
for f in sorted(glob.glob(out + "/callgrind.out.*")):
    # The dump after zeroing is the one with a part number (`.1-<thread>`).
    if ".1-" not in f:
        continue
    with open(f) as fh:
        cost = next((int(l.split()[1]) for l in fh if l.startswith(("summary:", "totals:"))), 0)
    thread = f.rsplit("-", 1)[-1]
    if cost / n >= 100:
        print(f"  thread {thread}: {cost / n:10,.0f}")
    total += cost
print(f"  all threads: {total / n:10,.0f}")
PY
