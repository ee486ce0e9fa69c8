#!/usr/bin/env bash
# A throw-away PostgreSQL server for the usage-store tests.
#
#   bash scripts/pg-throwaway.sh start DIR   # initdb DIR (first time), start it, print its URL
#   bash scripts/pg-throwaway.sh stop DIR    # stop it at once (the data dir stays)
#   bash scripts/pg-throwaway.sh available   # exit 0 when the server binaries are installed
#
# The server listens on 127.0.0.1 on a spare port (kept in DIR/port, so a restart reuses it),
# with its socket in DIR, trust authentication for the user `llmux`, and fsync off (a stopped
# server loses nothing; only an OS crash could, which does not matter here). As root
# (CI) it runs as the `postgres` user (PostgreSQL refuses root), created if missing. Debian
# keeps the binaries in /usr/lib/postgresql/<version>/bin, which is searched after PATH.
set -euo pipefail

die() { printf 'pg-throwaway: %s\n' "$*" >&2; exit 1; }

find_bin() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Run a command as the server's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

spare_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd="${1:-}"
case "$cmd" in
  available)
    find_bin >/dev/null
    ;;
  start)
    dir="${2:?usage: pg-throwaway.sh start DIR}"
    bin="$(find_bin)" || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
      chown postgres "$dir"
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U llmux -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    [ -f "$dir/port" ] || spare_port >"$dir/port"
    port="$(cat "$dir/port")"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
      start >/dev/null || { tail -n 20 "$dir/server.log" >&2; die "the server did not start"; }
    echo "postgres://llmux@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir="${2:?usage: pg-throwaway.sh stop DIR}"
    bin="$(find_bin)" || die "PostgreSQL server binaries not found"
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
  *)
    die "usage: pg-throwaway.sh start DIR | stop DIR | available"
    ;;
esac
