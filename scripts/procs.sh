# Sourced by the scripts that start shardq's processes (scripts/demo.sh,
# tests/image/rehearse.sh, bench/worker/cluster.sh).
#
# stop_pids PID...: SIGTERM to each, up to 10 s for all of them to exit (a
# worker group drains, the broker finishes its writes), then SIGKILL to
# whatever is left. Always succeeds.
stop_pids() {
  local p alive
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
  return 0
}
