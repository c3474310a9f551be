#!/usr/bin/env bash
# The issue-2 queue benchmark in one command: a throwaway PostgreSQL
# (scripts/pg-local.sh: fsync and synchronous_commit on), then
# graphile-worker 0.17.3, pg-boss 10.4.2 and shardq on it in the same run,
# with the same job count and payload size, then one comparison table with
# the ratios the issue asks for.
#
#   bench/run-queue.sh [--tasks N] [--latency-s S] [--backlog LIST]
#                      [--only shardq|anchors] [--perf] [--out DIR]
#
#   --tasks N        jobs/tasks per throughput phase (default 200000)
#   --latency-s S    length of each latency phase at 200/s (default 10)
#   --backlog LIST   shardq backlog sweep, e.g. 10000,100000 (add 1000000
#                    for the full sweep: it takes several minutes)
#   --only WHICH     run only shardq or only the anchors
#   --perf           profile the whole machine (perf record -a) while shardq
#                    runs; CPU share per process and the broker's hottest
#                    symbols land in DIR/perf-*.txt
#   --out DIR        keep the JSON, tables and broker log there (default: a
#                    new /tmp/shardq-bench-queue.* directory)
# Environment: SHARDQ_PG_DIR (/tmp/pg-bench), SHARDQ_PG_PORT (54404),
# BUILD_DIR (build/bench), SHARDQ_BROKER_BIN (BUILD_DIR/broker/shardq-broker).
# Exit status: 0 when every part ran, 1 when one failed (the others still
# run and are tabled), 2 on bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tasks=200000 latency_s=10 backlog="" only=all out="" perf=0
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --tasks) tasks=${2:?}; shift 2 ;;
    --latency-s) latency_s=${2:?}; shift 2 ;;
    --backlog) backlog=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --perf) perf=1; shift ;;
    -h|--help) usage ;;
    *) echo "run-queue.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $only == all || $only == shardq || $only == anchors ]] || { echo "run-queue.sh: --only: shardq or anchors" >&2; exit 2; }

export SHARDQ_PG_DIR=${SHARDQ_PG_DIR:-/tmp/pg-bench} SHARDQ_PG_PORT=${SHARDQ_PG_PORT:-54404}
build=${BUILD_DIR:-$here/build/bench}
broker=${SHARDQ_BROKER_BIN:-$build/broker/shardq-broker}
bench=$build/bench/queue/shardq-bench-queue
pg=$here/scripts/pg-local.sh
anchors=$here/bench/anchors
out=${out:-$(mktemp -d /tmp/shardq-bench-queue.XXXXXX)}
mkdir -p "$out"

if [[ $only != anchors ]]; then
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$out/cmake.log" 2>&1 \
    || { tail -20 "$out/cmake.log" >&2; exit 1; }
  cmake --build "$build" --target shardq-broker shardq-bench-queue -j2 >>"$out/cmake.log" 2>&1 \
    || { tail -20 "$out/cmake.log" >&2; exit 1; }
fi
if [[ $only != shardq && ! -d $anchors/node_modules ]]; then
  (cd "$anchors" && npm ci --no-audit --no-fund >"$out/npm.log" 2>&1) || { tail -20 "$out/npm.log" >&2; exit 1; }
fi

trap '"$pg" destroy >/dev/null 2>&1 || true' EXIT
"$pg" destroy >/dev/null 2>&1 || true
db=$("$pg" start)
settings=$(psql "$db" -Atc "select string_agg(name || '=' || setting, ' ' order by name) from pg_settings
  where name in ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size')")

echo "# shardq queue benchmark, $(date -u '+%F %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
     "$(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "PostgreSQL $(psql "$db" -Atc 'show server_version'): $settings"
echo "source: commit $(git -C "$here" log -1 --format=%h 2>/dev/null || echo '?')$(
  git -C "$here" status --porcelain -- broker common sql 2>/dev/null | grep -q . && echo ' + uncommitted changes in broker/common/sql')"
echo "jobs: $tasks x 256 B payload per phase; latency phases: 200/s for ${latency_s} s"
echo "outputs: $out"
echo

status=0
jsons=()
run_part() { # name, command...
  local name=$1; shift
  echo "## $name (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  if "$@" > >(tee "$out/$name.txt") 2> >(tee "$out/$name.err" >&2); then
    jsons+=("$out/$name.json")
  else
    echo "run-queue.sh: $name failed (see $out/$name.err)" >&2
    status=1
  fi
  echo
}
if [[ $only != shardq ]]; then
  for q in graphile pgboss; do
    run_part "$q" node "$anchors/bench.js" --queue "$q" --db "$db" --jobs "$tasks" \
      --latency-s "$latency_s" --json "$out/$q.json"
  done
fi
profiler=()
if [[ $perf == 1 ]]; then
  command -v perf >/dev/null || { echo "run-queue.sh: --perf: perf is not installed" >&2; exit 1; }
  profiler=(perf record -q -F 499 -a -o "$out/perf.data" --)
fi
if [[ $only != anchors ]]; then
  run_part shardq "${profiler[@]}" "$bench" --db "$db" --broker "$broker" --broker-log "$out/broker.log" \
    --tasks "$tasks" --latency-s "$latency_s" ${backlog:+--backlog "$backlog"} --json "$out/shardq.json"
fi
if [[ $perf == 1 && -f $out/perf.data ]]; then
  perf report -i "$out/perf.data" --no-children --sort comm -q --stdio 2>/dev/null \
    | awk 'NF && n++ < 15' >"$out/perf-comm.txt"
  perf report -i "$out/perf.data" --no-children --comm shardq-broker --sort dso,symbol -q --stdio \
    2>/dev/null | awk 'NF && n++ < 40' >"$out/perf-broker.txt"
  echo "## CPU by process while shardq ran (perf, whole machine)"
  cat "$out/perf-comm.txt"
  echo
  echo "## shardq-broker hottest symbols (see $out/perf-broker.txt)"
  head -20 "$out/perf-broker.txt"
  echo
fi
if [[ ${#jsons[@]} -gt 0 ]]; then
  echo "## comparison"
  node "$anchors/compare.js" "${jsons[@]}" | tee "$out/compare.md"
fi
exit $status
