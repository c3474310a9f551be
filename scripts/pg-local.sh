#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests, benchmarks and the demo.
#
#   scripts/pg-local.sh start    initdb (first time) and start; prints the conninfo
#   scripts/pg-local.sh stop     stop (fast shutdown)
#   scripts/pg-local.sh restart  stop then start (used by recovery tests)
#   scripts/pg-local.sh kill     stop immediately (crash-like, for tests)
#   scripts/pg-local.sh url      print the conninfo (usable as SHARDQ_DB)
#   scripts/pg-local.sh destroy  stop and delete the data directory
#
# The cluster lives in a project-local directory (.pg/ in the repo, or
# SHARDQ_PG_DIR), listens only on a unix socket in that directory (port
# SHARDQ_PG_PORT, default 54329), trusts local connections and keeps fsync
# and synchronous_commit on, so benchmarks measure real durability.
# PostgreSQL refuses to run as root: when invoked as root the server runs as
# the `postgres` OS user, and a directory that user cannot reach (the repo
# under /root, say) is replaced by one under /tmp.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
port=${SHARDQ_PG_PORT:-54329}
dir=${SHARDQ_PG_DIR:-$here/.pg}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ $(id -u) -eq 0 && -z ${SHARDQ_PG_DIR:-} ]]; then
  mkdir -p "$dir" 2>/dev/null || true
  chown postgres: "$dir" 2>/dev/null || true
  if ! runuser -u postgres -- test -w "$dir" 2>/dev/null; then
    dir=/tmp/shardq-pg-$(printf '%s' "$here" | md5sum | cut -c1-12)
  fi
fi
data=$dir/data
sock=$dir/sock
conninfo="host=$sock port=$port dbname=shardq user=postgres"

start() {
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
  if [[ ! -f $data/PG_VERSION ]]; then
    # initdb and the settings below go into data.new, renamed when complete:
    # a start interrupted half way leaves no data dir that would run on the
    # default port (a later start begins again)
    local new=$data.new
    as_pg rm -rf "$new"
    as_pg "$bindir/initdb" -D "$new" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg mkdir -p "$sock"
    cat >>"$new/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$sock'
port = $port
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
log_min_messages = warning
CONF
    rm -rf "$data"
    mv "$new" "$data"
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
  fi
  if ! as_pg "$bindir/psql" -h "$sock" -p "$port" -U postgres -d postgres -Atqc \
       "select 1 from pg_database where datname='shardq'" | grep -q 1; then
    as_pg "$bindir/createdb" -h "$sock" -p "$port" -U postgres shardq
  fi
  echo "$conninfo"
}

stop() {
  if [[ -f $data/PG_VERSION ]] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -m "${1:-fast}" -w -t 60 stop >/dev/null
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop fast ;;
  kill) stop immediate ;;
  restart) stop fast; start ;;
  url) echo "$conninfo" ;;
  destroy) stop immediate || true; rm -rf "$dir" ;;
  *) echo "usage: $0 start|stop|restart|kill|url|destroy" >&2; exit 2 ;;
esac
