# bench/worker/cluster.sh: what the worker-group benchmarks share, sourced
# (not run) by bench/worker/run.sh and bench/worker/prefix.sh after they
# set B (the build dir): PATH to the build's binaries, a throwaway
# PostgreSQL and a broker (cluster_up), a worker group
# (cluster_group NAME ARGS...), the wall time of a job as PostgreSQL saw
# it (job_wall JOB), and a cleanup on exit that drains what was started.
# BENCH_MODEL: e.g. a llama-110m Q8_0 file from `shardq-model random`, so
# that model compute, not the tiny bundled model, sets the pace.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$here"
export PATH=$here/$B/broker:$here/$B/worker:$here/$B/client:$here/$B/tools:$here/$B/bench/worker:$here/worker/group:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export SHARDQ_PG_DIR=/tmp/shardq-bench-worker-pg SHARDQ_PG_PORT=54340
model=${BENCH_MODEL:-models/stories260K.gguf}
model_name=$(basename "$model")
reps=${BENCH_REPEAT:-3}
work=$(mktemp -d)
pids=()
# stop_pids: shardq-group drains on TERM; a KILLed wrapper takes mpirun
# with it
. scripts/procs.sh
cleanup() {
  stop_pids "${pids[@]}"
  scripts/pg-local.sh destroy >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

cluster_up() {
  scripts/pg-local.sh destroy >/dev/null 2>&1 || true
  export SHARDQ_DB
  SHARDQ_DB=$(scripts/pg-local.sh start)
  shardq-broker --migrate 2>/dev/null
  export SHARDQ_BROKER=tcp://127.0.0.1:15655
  shardq-broker --listen tcp://127.0.0.1:15655 --workers tcp://127.0.0.1:15656 \
    --adapters "$work/adapters" 2>"$work/broker.log" &
  pids+=($!)
}

# a TP = 2 group NAME on the model, shardq-worker's other flags after;
# returns once the broker lists it, its pid in $group_pid
cluster_group() {
  local name=$1
  shift
  shardq-group -np 2 --oversubscribe -- --broker tcp://127.0.0.1:15656 --model "$model" \
    --group-id "$name" "$@" 2>"$work/$name.log" &
  group_pid=$!
  pids=("$group_pid" "${pids[@]}")
  until shardq workers 2>/dev/null | grep -q "$name"; do sleep 0.2; done
}

# Wall time of a job as PostgreSQL saw it: from the commit of its SUBMIT
# to the commit of its last result (the CLI's polling is not counted).
job_wall() {
  psql "$SHARDQ_DB" -Atc "SELECT extract(epoch FROM max(r.finished_at) - j.created_at)
        FROM jobs j JOIN task_results r ON r.job_id = j.id WHERE j.id = $1 GROUP BY j.created_at"
}
