#!/usr/bin/env bash
# Prefix caching through the whole cluster: one job whose prompts all open
# with the same instruction (shardq-bench-batch --print-prompts N TOKENS
# long: ~150 words, a job's system prompt), served by a fresh TP = 2 group
# with --prefix-cache off (the anchor) and then on, BENCH_REPEAT times
# each (a new group every time, so no run finds the last one's cache);
# the best wall of each (SUBMIT committed -> last result committed), their
# ratio, and the prompt tokens the results report as taken from the KV
# cache (usage.prompt_tokens_details.cached_tokens).
# Usage: bench/worker/prefix.sh [BUILD_DIR]   (default build/release)
#   BENCH_MODEL (models/stories260K.gguf), BENCH_N (200 tasks),
#   BENCH_TOKENS (16 new tokens), BENCH_INSTRUCTION (long | short),
#   BENCH_REPEAT (3)
set -euo pipefail
B=${1:-build/release}
# shellcheck source=bench/worker/cluster.sh
source "$(dirname "$0")/cluster.sh"
n=${BENCH_N:-200}
tok=${BENCH_TOKENS:-16}
instr=${BENCH_INSTRUCTION:-long}
cluster_up
shardq-bench-batch --print-prompts "$n" "$tok" "$instr" >"$work/job.jsonl"
echo "| prefix cache | TP | model | tasks | instruction | wall (best of $reps) | prompt tokens | from the KV cache |"
echo "|---|---|---|---|---|---|---|---|"
declare -A wall
k=0
for mode in off on; do
  best=999999
  best_job=0
  for _ in $(seq 1 "$reps"); do
    k=$((k + 1))
    cluster_group "prefix-$mode-$k" --max-batch 16 --prefix-cache "$mode"
    job=$(shardq submit "$work/job.jsonl" --model "$model_name" 2>/dev/null)
    shardq wait "$job" >/dev/null 2>&1
    s=$(job_wall "$job")
    if (($(echo "$s < $best" | bc -l))); then
      best=$s
      best_job=$job
    fi
    stop_pids "$group_pid"
  done
  wall[$mode]=$best
  read -r prompt cached <<<"$(psql "$SHARDQ_DB" -AtF ' ' -c "SELECT sum(prompt_tokens),
    coalesce(sum(cached_tokens), 0) FROM task_results WHERE job_id = $best_job")"
  printf "| %s | 2 | %s | %d | %s | %.2f s | %d | %d |\n" "$mode" "$model_name" "$n" "$instr" \
    "$best" "$prompt" "$cached"
done
printf "\n| speed-up, prefix cache on over off | %.2fx |\n" "$(echo "${wall[off]} / ${wall[on]}" | bc -l)"
