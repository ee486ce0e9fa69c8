#!/usr/bin/env bash
# Wall-clock key-pool benchmark (not run by CI): the scenarios of the simulation
# (`keypool-sim`), end to end over HTTP.
#
#   bash scripts/bench-keypool.sh
#
# For each scenario it starts, on loopback only,
#   mock-upstream  127.0.0.1:$MOCK_PORT (default 9300)  OpenAI flavour, one quota scope per key
#                  (continuous buckets, real x-ratelimit-* headers and 429 bodies), --admin
#   llmux          127.0.0.1:$LLMUX_PORT (default 8300) one provider with all the keys, default
#                  key pool (smart selection), usage store off
# then drives it open loop (scripts/bench/keypool_load.py: Poisson arrivals) with a warm-up at
# 3x capacity (drains the buckets' initial burst of a minute's worth, so the measured runs see
# the steady rate), then $SECONDS_PER_RUN s at 1.5x and at 0.9x the aggregate capacity (in that
# order: the overload run starts from drained buckets; the 0.9x run leaves slack behind, which
# would count as goodput above capacity in a later overload run), and prints per run:
# client answers (200 / 429 with Retry-After / other), upstream attempts and their 429s and
# 401s (from the mock's /mock/key-stats), and goodput against capacity (200s per second from
# the first request to the last answer: requests still waiting for a key when the arrivals stop
# are served up to key_wait_timeout later).
#
# Scenarios (10 keys, RPM-bound; TPM not limited):
#   homogeneous   10 scopes of $RPM RPM                         capacity 10 x RPM
#   revoked       as homogeneous, key 3 revoked from the start  capacity  9 x RPM
#   shared-scope  keys 7-10 share one scope, named only by the
#                 openai-organization header                    capacity  7 x RPM
#
# Environment (all optional):
#   SCENARIOS="homogeneous revoked shared-scope"   RPM=60   SECONDS_PER_RUN=60   WARMUP_S=60
#   LATENCY_MS=300 (mock time to answer)   MOCK_PORT=9300 LLMUX_PORT=8300
#   SKIP_BUILD=1, LLMUX_BIN, MOCK_BIN      use existing binaries
#   OUT_DIR=bench-results                  (table saved to $OUT_DIR/keypool.md)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_DIR="$ROOT/scripts/bench"

SCENARIOS="${SCENARIOS:-homogeneous revoked shared-scope}"
RPM="${RPM:-60}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-60}"
WARMUP_S="${WARMUP_S:-60}"
LATENCY_MS="${LATENCY_MS:-300}"
MOCK_PORT="${MOCK_PORT:-9300}"
LLMUX_PORT="${LLMUX_PORT:-8300}"
OUT_DIR="${OUT_DIR:-$ROOT/bench-results}"
CLIENT_KEY="sk-bench-client-key"
KEYS=10

log() { printf '[bench-keypool] %s\n' "$*" >&2; }
die() { printf '[bench-keypool] ERROR: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 is required"
command -v curl >/dev/null 2>&1 || die "curl is required"

PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$OUT_DIR/logs"
LOG_DIR="$OUT_DIR/logs"

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
[ -n "$TARGET_DIR" ] || TARGET_DIR="$ROOT/target"
if [ "${SKIP_BUILD:-0}" != 1 ] && { [ -z "${LLMUX_BIN:-}" ] || [ -z "${MOCK_BIN:-}" ]; }; then
  log "cargo build --release -p llmux -p mock-upstream"
  cargo build --release --locked -p llmux -p mock-upstream
fi
LLMUX_BIN="${LLMUX_BIN:-$TARGET_DIR/release/llmux}"
MOCK_BIN="${MOCK_BIN:-$TARGET_DIR/release/mock-upstream}"
[ -x "$LLMUX_BIN" ] || die "llmux not found at $LLMUX_BIN"
[ -x "$MOCK_BIN" ] || die "mock-upstream not found at $MOCK_BIN"

key() { printf 'sk-bench-upstream-key-%02d' "$1"; }

# Sums of the mock's per-key counters: "received rate_limited unauthorized".
mock_counts() {
  curl -fsS --max-time 5 "http://127.0.0.1:$MOCK_PORT/mock/key-stats" | python3 -c '
import json, sys
keys = json.load(sys.stdin)["keys"]
print(sum(k["received"] for k in keys), sum(k["rate_limited"] for k in keys),
      sum(k["unauthorized"] for k in keys))'
}

start_scenario() { # scenario -> sets CAPACITY_RPS
  local scenario="$1" args=() i scopes
  case "$scenario" in
    homogeneous | revoked)
      for i in $(seq 1 $KEYS); do args+=(--scope "org-bench-$i:$(key "$i"):rpm=$RPM"); done
      CAPACITY_RPS=$(python3 -c "print($KEYS * $RPM / 60)")
      if [ "$scenario" = revoked ]; then
        args+=(--revoked "$(key 3)")
        CAPACITY_RPS=$(python3 -c "print(($KEYS - 1) * $RPM / 60)")
      fi
      ;;
    shared-scope)
      for i in $(seq 1 6); do args+=(--scope "org-bench-$i:$(key "$i"):rpm=$RPM"); done
      scopes="$(key 7),$(key 8),$(key 9),$(key 10)"
      args+=(--scope "org-bench-shared:$scopes:rpm=$RPM")
      CAPACITY_RPS=$(python3 -c "print(7 * $RPM / 60)")
      ;;
    *) die "unknown scenario $scenario" ;;
  esac
  port_open "$MOCK_PORT" && die "port $MOCK_PORT is in use (set MOCK_PORT)"
  port_open "$LLMUX_PORT" && die "port $LLMUX_PORT is in use (set LLMUX_PORT)"
  "$MOCK_BIN" --host 127.0.0.1 --port "$MOCK_PORT" --latency-ms "$LATENCY_MS" --admin "${args[@]}" \
    >"$LOG_DIR/keypool-mock-$scenario.log" 2>&1 &
  PIDS+=("$!")
  local config="$OUT_DIR/keypool-$scenario.yaml"
  {
    echo "providers:"
    echo "  - provider: mock"
    echo "    base_url: http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
    echo "    api:"
    for i in $(seq 1 $KEYS); do echo "      - $(key "$i")"; done
    echo "    model:"
    echo "      - gpt-4o-mini"
    echo "api_keys:"
    echo "  - api: $CLIENT_KEY"
  } >"$config"
  rm -f "$OUT_DIR/keypool-state-$scenario.json"
  DISABLE_DATABASE=true LLMUX_STATE_FILE="$OUT_DIR/keypool-state-$scenario.json" \
    "$LLMUX_BIN" serve --config "$config" --host 127.0.0.1 --port "$LLMUX_PORT" \
    >"$LOG_DIR/keypool-llmux-$scenario.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 200); do
    if port_open "$MOCK_PORT" && curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$LLMUX_PORT/healthz" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  die "services of $scenario did not start; see $LOG_DIR/keypool-*-$scenario.log"
}

load() { # rate seconds seed -> JSON line
  python3 "$BENCH_DIR/keypool_load.py" --port "$LLMUX_PORT" --key "$CLIENT_KEY" \
    --body "$BENCH_DIR/chat.json" --rate "$1" --seconds "$2" --seed "$3"
}

ROWS=()
NOTES=()
for scenario in $SCENARIOS; do
  start_scenario "$scenario"
  log "$scenario: capacity $CAPACITY_RPS req/s; warm-up ${WARMUP_S}s at 3x"
  load "$(python3 -c "print(3 * $CAPACITY_RPS)")" "$WARMUP_S" 7 >/dev/null
  seed=1
  for rho in 1.5 0.9; do
    rate="$(python3 -c "print($rho * $CAPACITY_RPS)")"
    read -r rx0 rl0 un0 < <(mock_counts)
    t0="$(date +%s.%N)"
    result="$(load "$rate" "$SECONDS_PER_RUN" "$seed")"
    t1="$(date +%s.%N)"
    read -r rx1 rl1 un1 < <(mock_counts)
    seed=$((seed + 1))
    row="$(python3 - "$result" "$scenario" "$rho" "$CAPACITY_RPS" "$(python3 -c "print($t1 - $t0)")" \
      "$((rx1 - rx0))" "$((rl1 - rl0))" "$((un1 - un0))" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
# secs: from the first request to the last answer (waiting requests are served after the
# arrivals stop, up to key_wait_timeout later).
scenario, rho, cap, secs = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
attempts, up429, up401 = (int(x) for x in sys.argv[6:9])
st = r["status"]
ok, t429 = st.get("200", 0), st.get("429", 0)
other = r["sent"] - ok - t429
pct = lambda n, d: 100.0 * n / d if d else 0.0
goodput = ok / secs
print(f"| {scenario} | {rho} | {cap:.2f} | {r['sent']} | {ok} ({pct(ok, r['sent']):.1f} %) "
      f"| {t429} ({r['429_with_retry_after']} with Retry-After) | {other} "
      f"| {attempts} | {up429} ({pct(up429, attempts):.2f} %) | {up401} "
      f"| {goodput:.2f} ({pct(goodput, cap):.1f} %) | {r['p50_s']:.2f} / {r['p99_s']:.2f} |")
EOF
)"
    log "$row"
    ROWS+=("$row")
  done
  read -r _ _ un_total < <(mock_counts)
  NOTES+=("- $scenario: $un_total upstream 401s over the whole scenario, warm-up included")
  stop_all
done

HEADER="| scenario | load (x capacity) | capacity req/s | sent | client 200 | client 429 | client other | upstream attempts | upstream 429 (% of attempts) | upstream 401 | goodput req/s (% of capacity) | p50 / p99 s (200s) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
{
  echo "Key-pool wall-clock benchmark: $KEYS keys x $RPM RPM, ${SECONDS_PER_RUN} s per run after a ${WARMUP_S} s warm-up, mock latency ${LATENCY_MS} ms, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "$HEADER"
  printf '%s\n' "${ROWS[@]}"
  echo
  printf '%s\n' "${NOTES[@]}"
} | tee "$OUT_DIR/keypool.md"
