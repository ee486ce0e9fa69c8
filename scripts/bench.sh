#!/usr/bin/env bash
# Load benchmark for llmux (not run by CI).
#
#   bash scripts/bench.sh
#   bash scripts/bench.sh store    # usage store cost: SQLite logging vs DISABLE_DATABASE, c=50
#   bash scripts/bench.sh translate  # OpenAI client -> Anthropic / Gemini upstream vs same-format, c=50
#
# Starts, on loopback only:
#   mock-upstream  127.0.0.1:$MOCK_PORT  (default 9000)  the fake OpenAI API
#   limitproxy     127.0.0.1:$PROXY_PORT (default 9100)  featureless hyper proxy -> mock: the ceiling
#   llmux          127.0.0.1:$LLMUX_PORT (default 8000)  with scripts/bench/api.yaml -> mock, usage
#                  logged to SQLite ($OUT_DIR/bench-stats.db, removed at exit unless KEEP_DB=1)
#   llmux-nodb     127.0.0.1:$LLMUX_NODB_PORT (default 8001)  the same with DISABLE_DATABASE=true
#                  (only when the target is selected)
#   llmux-to-anthropic, llmux-to-gemini: the `llmux` instance, called by an OpenAI client for a
#                  model whose channel is the mock's Anthropic Messages / Gemini API, so every
#                  request and answer is converted (the translation lane)
# and drives POST /v1/chat/completions with wrk for every
#   target {direct, limitproxy, llmux} x mode {nonstream, stream} x concurrency {1, 50}
# (one warm-up run each, then ROUNDS measured runs, the targets of one mode and concurrency
# back to back), prints a Markdown table of medians and the
# llmux/limitproxy ratios (and llmux/llmux-nodb, the usage store's cost, when both run), and
# saves it to bench-results/latest.md.
#
# Environment (all optional):
#   DURATION=10s        measured run length (wrk -d)
#   ROUNDS=1            measure every cell this many times (targets interleaved); medians are
#                       reported. Use ROUNDS=5 or more when the machine is not quiet.
#   WARMUP=3s           warm-up run length; WARMUP=0 skips warm-ups
#   TARGETS="direct limitproxy llmux"   subset of targets to run (also: llmux-nodb;
#                       `store` sets TARGETS="llmux llmux-nodb" CONCS=50 unless given)
#   MODES="nonstream stream"            subset of modes
#   CONCS="1 1p 50"                     concurrency levels (threads: 1 for c=1, else 2). `1p` is
#                       c=1 with the load generator pinned to CPU 0 and every server (mock,
#                       limitproxy, llmux, with all their threads) to CPU 1, for those runs only:
#                       unpinned, where the scheduler happens to place the three processes (and
#                       so which wake-ups cross CPUs) moves a c=1 p50 by tens of microseconds
#                       from one run to the next, more than a proxy adds; pinned the same way
#                       for every target, the rows compare what each proxy costs on the path.
#   MOCK_PORT=9000 PROXY_PORT=9100 LLMUX_PORT=8000 LLMUX_NODB_PORT=8001
#   MOCK_ARGS=""        extra mock-upstream args, e.g. "--latency-ms 20 --chunk-delay-ms 5"
#   LLMUX_ARGS=""       extra `llmux serve` args
#   SKIP_BUILD=1        do not run cargo build (use existing binaries)
#   LLMUX_BIN, MOCK_BIN, LIMITPROXY_BIN   use these binaries instead of building
#   LIMITPROXY_DIR      limitproxy source (default: ../shared/limitproxy, then /work/shared/limitproxy)
#   LIMITPROXY_WORK=/tmp/limitproxy-build   where limitproxy is copied and built
#   OUT_DIR=bench-results
#
# The machine has 2 cores shared by wrk, the mock, and the proxy under test; nothing is
# pinned, so compare rows of one run with each other rather than across machines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_DIR="$ROOT/scripts/bench"

if [ "${1:-}" = store ]; then
  TARGETS="${TARGETS:-llmux llmux-nodb}"
  CONCS="${CONCS:-50}"
fi
if [ "${1:-}" = translate ]; then
  TARGETS="${TARGETS:-llmux llmux-to-anthropic llmux-to-gemini}"
  CONCS="${CONCS:-50}"
fi

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-1}"
WARMUP="${WARMUP:-3s}"
TARGETS="${TARGETS:-direct limitproxy llmux}"
MODES="${MODES:-nonstream stream}"
CONCS="${CONCS:-1 1p 50}"
MOCK_PORT="${MOCK_PORT:-9000}"
PROXY_PORT="${PROXY_PORT:-9100}"
LLMUX_PORT="${LLMUX_PORT:-8000}"
LLMUX_NODB_PORT="${LLMUX_NODB_PORT:-8001}"
MOCK_ARGS="${MOCK_ARGS:-}"
LLMUX_ARGS="${LLMUX_ARGS:-}"
CLIENT_KEY="sk-bench-client-key"
OUT_DIR="${OUT_DIR:-$ROOT/bench-results}"
LIMITPROXY_WORK="${LIMITPROXY_WORK:-/tmp/limitproxy-build}"
LUA="$BENCH_DIR/post.lua"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
# The translation targets are served by the `llmux` instance.
needs_llmux() { has_target llmux || has_target llmux-to-anthropic || has_target llmux-to-gemini; }

# ---------------------------------------------------------------- children & cleanup
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "${BENCH_DB:-}" ] && [ "${KEEP_DB:-0}" != 1 ]; then
    rm -f "$BENCH_DB" "$BENCH_DB-wal" "$BENCH_DB-shm"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "wrk not found: installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null 2>&1 || die "wrk is required (apt-get install -y wrk)"
fi
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install -y curl)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$OUT_DIR"
LOG_DIR="$OUT_DIR/logs"
mkdir -p "$LOG_DIR"
RAW="$OUT_DIR/latest-raw.log"
: >"$RAW"

# ---------------------------------------------------------------- binaries
LOCKED=()
[ -f "$ROOT/Cargo.lock" ] && LOCKED=(--locked)

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
[ -n "$TARGET_DIR" ] || TARGET_DIR="$ROOT/target"

BUILD_PKGS=()
[ -z "${MOCK_BIN:-}" ] && BUILD_PKGS+=(-p mock-upstream)
if { needs_llmux || has_target llmux-nodb; } && [ -z "${LLMUX_BIN:-}" ]; then BUILD_PKGS+=(-p llmux); fi
if [ "${SKIP_BUILD:-0}" != 1 ] && [ ${#BUILD_PKGS[@]} -gt 0 ]; then
  log "cargo build --release ${BUILD_PKGS[*]}"
  cargo build --release "${LOCKED[@]}" "${BUILD_PKGS[@]}"
fi
MOCK_BIN="${MOCK_BIN:-$TARGET_DIR/release/mock-upstream}"
LLMUX_BIN="${LLMUX_BIN:-$TARGET_DIR/release/llmux}"
[ -x "$MOCK_BIN" ] || die "mock-upstream binary not found at $MOCK_BIN"
if needs_llmux || has_target llmux-nodb; then [ -x "$LLMUX_BIN" ] || die "llmux binary not found at $LLMUX_BIN"; fi

LIMITPROXY_NOTE=""
if has_target limitproxy && [ -z "${LIMITPROXY_BIN:-}" ]; then
  LP_SRC=""
  if [ -n "${LIMITPROXY_DIR:-}" ]; then CANDIDATES=("$LIMITPROXY_DIR"); else
    CANDIDATES=("$ROOT/../shared/limitproxy" /work/shared/limitproxy); fi
  for d in "${CANDIDATES[@]}"; do
    if [ -f "$d/Cargo.toml" ]; then LP_SRC="$(cd "$d" && pwd)"; break; fi
  done
  if [ -z "$LP_SRC" ]; then
    LIMITPROXY_NOTE="limitproxy source not found in ${CANDIDATES[*]} (set LIMITPROXY_DIR); limitproxy rows and ratios skipped."
  else
    # Build from a private copy: shared/ may be read-only and has no Cargo.lock to write.
    # -p keeps mtimes so cargo sees an unchanged source and skips the rebuild.
    mkdir -p "$LIMITPROXY_WORK/src"
    chmod -R u+w "$LIMITPROXY_WORK/src"
    cp -Rp "$LP_SRC/." "$LIMITPROXY_WORK/src/"
    chmod -R u+w "$LIMITPROXY_WORK/src"
    rm -rf "$LIMITPROXY_WORK/src/target"
    if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$LIMITPROXY_WORK/target/release/limitproxy" ]; then
      log "building limitproxy from $LP_SRC (target dir $LIMITPROXY_WORK/target)"
      cargo build --release --manifest-path "$LIMITPROXY_WORK/src/Cargo.toml" \
        --target-dir "$LIMITPROXY_WORK/target"
    fi
    LIMITPROXY_BIN="$LIMITPROXY_WORK/target/release/limitproxy"
  fi
fi
if [ -n "$LIMITPROXY_NOTE" ]; then
  log "NOTE: $LIMITPROXY_NOTE"
  TARGETS="$(tr -s ' ' '\n' <<<"$TARGETS" | grep -vx limitproxy | tr '\n' ' ' || true)"
fi

# ---------------------------------------------------------------- start services
for p in "$MOCK_PORT" $(has_target limitproxy && echo "$PROXY_PORT") $(needs_llmux && echo "$LLMUX_PORT") \
  $(has_target llmux-nodb && echo "$LLMUX_NODB_PORT"); do
  port_open "$p" && die "port $p is already in use on 127.0.0.1; stop that process or set *_PORT"
done

wait_port() { # name pid port
  for _ in $(seq 1 200); do
    port_open "$3" && return 0
    kill -0 "$2" 2>/dev/null || die "$1 exited during startup; see $LOG_DIR/$1.log"
    sleep 0.05
  done
  die "$1 did not open port $3 within 10s; see $LOG_DIR/$1.log"
}

# shellcheck disable=SC2086  # *_ARGS are word-split on purpose
"$MOCK_BIN" --host 127.0.0.1 --port "$MOCK_PORT" $MOCK_ARGS >"$LOG_DIR/mock-upstream.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_port mock-upstream "$MOCK_PID" "$MOCK_PORT"
log "mock-upstream pid $MOCK_PID on :$MOCK_PORT"

if has_target limitproxy; then
  "$LIMITPROXY_BIN" "$PROXY_PORT" "$MOCK_PORT" >"$LOG_DIR/limitproxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port limitproxy "$PROXY_PID" "$PROXY_PORT"
  log "limitproxy pid $PROXY_PID on :$PROXY_PORT -> :$MOCK_PORT"
fi

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

CONFIG="$BENCH_DIR/api.yaml"
if [ "$MOCK_PORT" != 9000 ]; then
  CONFIG="$OUT_DIR/api.yaml"
  sed "s#127.0.0.1:9000#127.0.0.1:$MOCK_PORT#" "$BENCH_DIR/api.yaml" >"$CONFIG"
fi
# The usage store of the `llmux` target: a fresh SQLite file (unless the environment names
# another store, e.g. DATABASE_URL or DISABLE_DATABASE).
BENCH_DB="$OUT_DIR/bench-stats.db"
rm -f "$BENCH_DB" "$BENCH_DB-wal" "$BENCH_DB-shm"

start_llmux() { # name port [env assignments...]
  local name="$1" port="$2" pid ok=0
  shift 2
  # shellcheck disable=SC2086
  env "$@" "$LLMUX_BIN" serve --config "$CONFIG" --host 127.0.0.1 --port "$port" $LLMUX_ARGS \
    >"$LOG_DIR/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$LOG_DIR/$name.log" >&2; die "$name exited during startup"; }
    sleep 0.05
  done
  [ "$ok" = 1 ] || die "$name /healthz not 200 within 10s; see $LOG_DIR/$name.log"
  STARTED_PID="$pid"
}

IDLE_RSS=0
if needs_llmux; then
  start_llmux llmux "$LLMUX_PORT" "DB_PATH=${DB_PATH:-$BENCH_DB}" "LLMUX_STATE_FILE=$OUT_DIR/keypool.json"
  LLMUX_PID="$STARTED_PID"
  sleep 0.5
  IDLE_RSS="$(rss_kib "$LLMUX_PID")"
  log "llmux pid $LLMUX_PID on :$LLMUX_PORT (usage: $(grep -o 'usage store: [^(]*' "$LOG_DIR/llmux.log" | head -n1)), idle RSS $(mib "$IDLE_RSS") MiB"
fi
if has_target llmux-nodb; then
  start_llmux llmux-nodb "$LLMUX_NODB_PORT" DISABLE_DATABASE=true "LLMUX_STATE_FILE=$OUT_DIR/keypool-nodb.json"
  log "llmux-nodb pid $STARTED_PID on :$LLMUX_NODB_PORT (DISABLE_DATABASE=true)"
fi

url_of() {
  case "$1" in
    direct) echo "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" ;;
    limitproxy) echo "http://127.0.0.1:$PROXY_PORT/v1/chat/completions" ;;
    llmux | llmux-to-*) echo "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" ;;
    llmux-nodb) echo "http://127.0.0.1:$LLMUX_NODB_PORT/v1/chat/completions" ;;
  esac
}
body_of() { # target mode
  local model=""
  case "$1" in
    llmux-to-anthropic) model="-claude" ;;
    llmux-to-gemini) model="-gemini" ;;
  esac
  if [ "$2" = stream ]; then echo "$BENCH_DIR/chat$model-stream.json"; else echo "$BENCH_DIR/chat$model.json"; fi
}

# ---------------------------------------------------------------- smoke check
for t in $TARGETS; do
  for m in $MODES; do
    code="$(curl -sS -o "$LOG_DIR/smoke-$t-$m.out" -w '%{http_code}' --max-time 10 \
      -H "Authorization: Bearer $CLIENT_KEY" -H 'Content-Type: application/json' \
      --data-binary "@$(body_of "$t" "$m")" "$(url_of "$t")" || echo 000)"
    log "smoke $t/$m -> HTTP $code: $(head -c 160 "$LOG_DIR/smoke-$t-$m.out" | tr '\n' ' ')"
    [ "$code" = 200 ] || log "WARNING: $t/$m did not answer 200; its rows will show errors"
  done
done

# ---------------------------------------------------------------- load
declare -A RPS P50 P99 ERRS RPS_ALL P50_ALL P99_ALL
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
run_wrk() { # target mode conc duration
  local threads=1 conns="${3%p}" pin=()
  [ "$conns" -gt 1 ] && threads=2
  [ "$conns" != "$3" ] && pin=(taskset -c 0)
  WRK_BODY_FILE="$(body_of "$1" "$2")" WRK_API_KEY="$CLIENT_KEY" \
    "${pin[@]}" wrk -t"$threads" -c"$conns" -d"$4" --latency --timeout 10s -s "$LUA" "$(url_of "$1")" 2>&1
}
# `1p` runs: every server thread on CPU 1 (run_wrk puts wrk on CPU 0); back on all CPUs after.
pin_servers() { # cpu-list
  local pid
  for pid in "${PIDS[@]}"; do
    taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || log "WARNING: cannot set the CPU affinity of pid $pid"
  done
}
if [[ " $CONCS " == *p\ * ]] && { [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null 2>&1; }; then
  log "pinned c=1 needs 2 CPUs and taskset: dropping it"
  CONCS="$(tr -s ' ' '\n' <<<"$CONCS" | grep -v p | tr '\n' ' ')"
fi
ALL_CPUS="0-$(($(nproc) - 1))"
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -n1; }

median() { tr -s ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print 0; exit }
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Targets are interleaved per mode and concurrency, so the rows compared with each other are
# measured back to back; with ROUNDS > 1 every cell is measured that many times and reported
# as the median (and the SQLite/DISABLE_DATABASE ratio as the median of the per-round ratios).
declare -A ROUND_RPS ROUND_P50
for r in $(seq 1 "$ROUNDS"); do
  for m in $MODES; do
    for c in $CONCS; do
      [ "${c%p}" != "$c" ] && pin_servers 1
      for t in $TARGETS; do
        key="$t/$m/$c"
        if [ "$WARMUP" != 0 ] && [ "$r" = 1 ]; then
          log "warm-up $key ($WARMUP)"
          run_wrk "$t" "$m" "$c" "$WARMUP" >>"$RAW" || true
        fi
        log "measure $key ($DURATION, round $r of $ROUNDS)"
        out="$(run_wrk "$t" "$m" "$c" "$DURATION" || true)"
        printf '### %s round %s\n%s\n\n' "$key" "$r" "$out" >>"$RAW"
        line="$(grep '^BENCH ' <<<"$out" | tail -n1 || true)"
        if [ -z "$line" ]; then
          log "wrk produced no result for $key:"
          printf '%s\n' "$out" >&2
          ROUND_RPS[$key/$r]=0
          RPS_ALL[$key]+=" 0" P50_ALL[$key]+=" 0" P99_ALL[$key]+=" 0"
          ERRS[$key]="${ERRS[$key]:+${ERRS[$key]}; }wrk failed"
          continue
        fi
        rps="$(field rps "$line")"
        ROUND_RPS[$key/$r]="$rps"
        ROUND_P50[$key/$r]="$(field p50_us "$line")"
        RPS_ALL[$key]+=" $rps"
        P50_ALL[$key]+=" $(field p50_us "$line")"
        P99_ALL[$key]+=" $(field p99_us "$line")"
        non200="$(field non200 "$line")"
        sock=$(($(field sock_connect "$line") + $(field sock_read "$line") + $(field sock_write "$line") + $(field sock_timeout "$line")))
        reqs="$(field requests "$line")"
        err=""
        [ "$non200" != 0 ] && err="$non200 non-200 (first: $(field first_bad_status "$line"))"
        [ "$sock" != 0 ] && err="${err:+$err, }$sock socket errors"
        [ "$reqs" = 0 ] && err="${err:+$err, }no requests completed"
        [ -n "$err" ] && ERRS[$key]="${ERRS[$key]:+${ERRS[$key]}; }$err"
        log "  rps=$rps p50=$(field p50_us "$line")us p99=$(field p99_us "$line")us ${err:+ERRORS: $err}"
      done
      [ "${c%p}" != "$c" ] && pin_servers "$ALL_CPUS"
    done
  done
done
for key in "${!RPS_ALL[@]}"; do
  RPS[$key]="$(median <<<"${RPS_ALL[$key]}")"
  P50[$key]="$(median <<<"${P50_ALL[$key]}")"
  P99[$key]="$(median <<<"${P99_ALL[$key]}")"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

AFTER_RSS=0 PEAK_RSS=0
if needs_llmux; then
  AFTER_RSS="$(rss_kib "$LLMUX_PID")"
  PEAK_RSS="$(hwm_kib "$LLMUX_PID")"
  kill -0 "$LLMUX_PID" 2>/dev/null || log "WARNING: llmux is no longer running after the load"
fi

# ---------------------------------------------------------------- report
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
sms() { awk -v u="$1" 'BEGIN { printf "%+.3f", u / 1000 }'; }
verdict() { if [ "$1" = 1 ]; then echo "PASS"; else echo "FAIL"; fi; }

# The same ratios within each round (the targets of a round ran back to back): their spread
# shows how much of a verdict is the machine's noise.
per_round_rps() { # mode conc
  [ "$ROUNDS" -gt 1 ] || return 0
  local r out=""
  for r in $(seq 1 "$ROUNDS"); do
    out+=" $(awk -v a="${ROUND_RPS[llmux/$1/$2/$r]:-0}" -v b="${ROUND_RPS[limitproxy/$1/$2/$r]:-0}" \
      'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')"
  done
  echo "; per round:$out"
}
per_round_p50() { # mode conc
  [ "$ROUNDS" -gt 1 ] || return 0
  local r out="" direct=""
  for r in $(seq 1 "$ROUNDS"); do
    out+=" $(awk -v d="${ROUND_P50[direct/$1/$2/$r]:-0}" -v lp="${ROUND_P50[limitproxy/$1/$2/$r]:-0}" \
      -v lx="${ROUND_P50[llmux/$1/$2/$r]:-0}" 'BEGIN {
        if (lp - d > 0) printf "%.2f", (lx - d) / (lp - d); else print "n/a" }')"
    direct+=" ${ROUND_P50[direct/$1/$2/$r]:-0}"
  done
  echo "; per round:$out (direct p50 us:$direct)"
}

REPORT="$OUT_DIR/latest.md"
{
  echo "# llmux benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(nproc) cores, shared by wrk, mock-upstream and the proxy under test (nothing pinned, except in the \`1p\` rows: c=1 with wrk on CPU 0 and every server on CPU 1)"
  echo "- load: $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), duration $DURATION per run after $([ "$WARMUP" = 0 ] && echo "no warm-up" || echo "a $WARMUP warm-up"); threads 1 at c=1, else 2; $ROUNDS round(s), medians reported"
  echo "- machine load average (1, 5, 15 min) before the runs: $LOAD_BEFORE; after: $LOAD_AFTER"
  echo "- request: POST /v1/chat/completions $(tr -d '\n' <"$BENCH_DIR/chat.json") (stream mode adds \"stream\":true)"
  [ -n "$MOCK_ARGS" ] && echo "- mock-upstream args: $MOCK_ARGS"
  [ -n "$LIMITPROXY_NOTE" ] && echo "- NOTE: $LIMITPROXY_NOTE"
  echo
  echo "| target | mode | conc | rps | p50 ms | p99 ms | errors |"
  echo "|---|---|---:|---:|---:|---:|---|"
  for t in $TARGETS; do
    for m in $MODES; do
      for c in $CONCS; do
        key="$t/$m/$c"
        e="${ERRS[$key]:-}"
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$m" "$c" \
          "$(awk -v r="${RPS[$key]}" 'BEGIN { printf "%.0f", r }')" \
          "$(ms "${P50[$key]}")" "$(ms "${P99[$key]}")" "${e:+**FLAGGED: $e**}"
      done
    done
  done
  echo
  if has_target llmux && has_target limitproxy; then
    echo "## llmux vs limitproxy"
    echo
    for m in $MODES; do
      hi="$(tr -s ' ' '\n' <<<"$CONCS" | grep . | sort -n | tail -n1)"
      lp="${RPS[limitproxy/$m/$hi]:-0}" lx="${RPS[llmux/$m/$hi]:-0}"
      ratio="$(awk -v a="$lx" -v b="$lp" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')"
      ok="$(awk -v r="$ratio" 'BEGIN { print (r != "n/a" && r + 0 >= 0.80) ? 1 : 0 }')"
      echo "- throughput $m c=$hi: llmux/limitproxy rps = $ratio (target >= 0.80): $(verdict "$ok")$(per_round_rps "$m" "$hi")"
    done
    if has_target direct; then
      for lo in $CONCS; do
      [ "${lo%p}" = 1 ] || continue
      for m in $MODES; do
        d="${P50[direct/$m/$lo]:-0}" lp="${P50[limitproxy/$m/$lo]:-0}" lx="${P50[llmux/$m/$lo]:-0}"
        echo "- added p50 latency $m c=$lo: llmux $(sms "$(awk -v a="$lx" -v b="$d" 'BEGIN { print a - b }')") ms, limitproxy $(sms "$(awk -v a="$lp" -v b="$d" 'BEGIN { print a - b }')") ms;" \
          "$(awk -v d="$d" -v lp="$lp" -v lx="$lx" 'BEGIN {
              if (lp - d <= 0) { print "ratio n/a (limitproxy added no measurable latency)"; exit }
              r = (lx - d) / (lp - d); printf "ratio %.2f (target <= 1.3): %s", r, (r <= 1.3) ? "PASS" : "FAIL"
              if (lp - d < 20) printf " (limitproxy adds < 20 us: the ratio is mostly noise)" }')$(per_round_p50 "$m" "$lo")"
        # At c=1 the mean latency is 1/rps: a cross-check that uses every request, not one percentile.
        echo "  - cross-check with mean latency (1/rps) $m c=$lo: $(awk \
          -v d="${RPS[direct/$m/$lo]:-0}" -v lp="${RPS[limitproxy/$m/$lo]:-0}" -v lx="${RPS[llmux/$m/$lo]:-0}" 'BEGIN {
              if (d <= 0 || lp <= 0 || lx <= 0) { print "n/a"; exit }
              md = 1e6 / d; mp = 1e6 / lp - md; mx = 1e6 / lx - md
              printf "llmux %+.1f us, limitproxy %+.1f us", mx, mp
              if (mp > 0) printf ", ratio %.2f", mx / mp }')"
      done
      done
    fi
    echo
  fi
  if has_target llmux && has_target llmux-nodb; then
    echo "## usage store: SQLite logging vs DISABLE_DATABASE"
    echo
    for m in $MODES; do
      hi="$(tr -s ' ' '\n' <<<"$CONCS" | grep . | sort -n | tail -n1)"
      db="${RPS[llmux/$m/$hi]:-0}" nodb="${RPS[llmux-nodb/$m/$hi]:-0}"
      ratios=""
      for r in $(seq 1 "$ROUNDS"); do
        ratios+=" $(awk -v a="${ROUND_RPS[llmux/$m/$hi/$r]:-0}" -v b="${ROUND_RPS[llmux-nodb/$m/$hi/$r]:-0}" \
          'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')"
      done
      ratio="$(grep -q n/a <<<"$ratios" && echo n/a || awk '{ printf "%.3f", $1 }' <<<"$(median <<<"$ratios")")"
      ok="$(awk -v r="$ratio" 'BEGIN { print (r != "n/a" && r + 0 >= 0.95) ? 1 : 0 }')"
      echo "- $m c=$hi: SQLite $(awk -v r="$db" 'BEGIN { printf "%.0f", r }') rps, DISABLE_DATABASE $(awk -v r="$nodb" 'BEGIN { printf "%.0f", r }') rps: ratio $ratio (target >= 0.95): $(verdict "$ok")$([ "$ROUNDS" -gt 1 ] && echo "; per round:$ratios")"
    done
    if [ -f "$BENCH_DB" ] && command -v sqlite3 >/dev/null 2>&1; then
      echo "- rows written: $(sqlite3 "$BENCH_DB" 'SELECT COUNT(*) FROM llmux_requests') requests, $(sqlite3 "$BENCH_DB" 'SELECT COUNT(*) FROM llmux_all_attempts') attempts"
    fi
    echo "- store counters after the load: $(curl -fsS --max-time 5 -H "Authorization: Bearer $CLIENT_KEY" "http://127.0.0.1:$LLMUX_PORT/metrics" 2>/dev/null |
      grep -E '^llmux_usage_(written|dropped)_total' | tr '\n' ' ' || echo unavailable)"
    echo
  fi
  for up in anthropic gemini; do
    has_target llmux && has_target "llmux-to-$up" || continue
    echo "## translation: OpenAI client -> $up upstream vs same-format passthrough"
    echo
    for m in $MODES; do
      for c in $CONCS; do
        same="${RPS[llmux/$m/$c]:-0}" conv="${RPS[llmux-to-$up/$m/$c]:-0}"
        ratio="$(awk -v a="$conv" -v b="$same" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')"
        ok="$(awk -v r="$ratio" 'BEGIN { print (r != "n/a" && r + 0 >= 0.90) ? 1 : 0 }')"
        echo "- $m c=$c: converted $(awk -v r="$conv" 'BEGIN { printf "%.0f", r }') rps, passthrough $(awk -v r="$same" 'BEGIN { printf "%.0f", r }') rps: ratio $ratio (target >= 0.90): $(verdict "$ok")"
      done
    done
    echo
  done
  if needs_llmux; then
    echo "## llmux memory"
    echo
    ok="$(awk -v k="$IDLE_RSS" 'BEGIN { print (k > 0 && k <= 15 * 1024) ? 1 : 0 }')"
    echo "- idle RSS (after start, before load): $(mib "$IDLE_RSS") MiB (target <= 15 MiB): $(verdict "$ok")"
    echo "- RSS after load: $(mib "$AFTER_RSS") MiB; peak (VmHWM): $(mib "$PEAK_RSS") MiB"
    echo
  fi
} >"$REPORT"

echo
cat "$REPORT"
log "saved $REPORT (raw wrk output: $RAW, service logs: $LOG_DIR/)"
