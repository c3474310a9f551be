#!/usr/bin/env bash
# shardq end to end, on this machine, in a few minutes:
#   dependencies, build, a throwaway PostgreSQL, the broker, one worker group
#   (mpirun -np 2: the bundled model split over two ranks, CPU), a nightly
#   LoRA adapter published and activated, a research batch submitted (60
#   tasks, 20 of them on the adapter) with progress, results written, a few
#   printed, two audit queries answered, and everything shut down cleanly.
# Everything lives under .demo/ (removed at the start of each run).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "dependencies"
scripts/deps.sh

say "build (release, CPU)"
# (its own build dir: build/release keeps the preset's settings, CUDA
# included, for `scripts/build.sh release` and `cmake --install`)
cmake --preset release -B build/demo -DSQ_WITH_CUDA=OFF >/dev/null
cmake --build build/demo -j "$(nproc)" \
  --target shardq-broker shardq-worker shardq-cli shardq-model >/dev/null
bin=$here/build/demo
export PATH=$bin/broker:$bin/worker:$bin/client:$bin/tools:$here/worker/group:$PATH

demo=$here/.demo
rm -rf "$demo"
mkdir -p "$demo/adapters" "$demo/out"
export SHARDQ_PG_DIR=/tmp/shardq-demo-pg SHARDQ_PG_PORT=${SHARDQ_DEMO_PG_PORT:-54330}
port_c=${SHARDQ_DEMO_PORT:-15555}
port_w=$((port_c + 1))
export SHARDQ_BROKER=tcp://127.0.0.1:$port_c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export SHARDQ_ACTOR=demo

pids=()
. scripts/procs.sh
cleanup() {
  set +e
  stop_pids "${pids[@]}"
  scripts/pg-local.sh destroy >/dev/null 2>&1
}
trap cleanup EXIT

say "PostgreSQL (throwaway, fsync on)"
scripts/pg-local.sh destroy >/dev/null 2>&1 || true
export SHARDQ_DB
SHARDQ_DB=$(scripts/pg-local.sh start)
echo "$SHARDQ_DB"
shardq-broker --migrate

say "broker on $SHARDQ_BROKER"
shardq-broker --listen "tcp://127.0.0.1:$port_c" --workers "tcp://127.0.0.1:$port_w" \
  --adapters "$demo/adapters" >"$demo/broker.log" 2>&1 &
pids+=($!)

say "worker group: mpirun -np 2 shardq-worker (tensor parallel over 2 ranks)"
shardq-group -np 2 --oversubscribe -- --broker "tcp://127.0.0.1:$port_w" \
  --model models/stories260K.gguf --max-batch 16 --group-id demo-group-1 \
  --adapters "$demo/adapters" >"$demo/worker.log" 2>&1 &
group=$!
pids=("$group" "${pids[@]}")
for _ in $(seq 1 100); do
  shardq workers 2>/dev/null | grep -q demo-group-1 && break
  sleep 0.2
done
shardq workers

say "nightly LoRA update: publish and activate adapter 'fin'"
# Training would drop this file; the demo makes a seeded stand-in.
version=$(date -u +%Y-%m-%d)
shardq-model lora-random --base models/stories260K.gguf --rank 8 --seed 7 \
  --targets attn_q,attn_v,ffn_up,ffn_down --gain 0.2 --name "fin-$version" \
  "$demo/fin-$version.gguf" >/dev/null
LORA_NAME=fin LORA_VERSION=$version LORA_SOURCE_DIR=$demo LORA_BASE_MODEL=models/stories260K.gguf \
  LORA_METRICS='{"eval_loss": 1.42, "rouge_l": 0.31}' SHARDQ_BIN=shardq \
  examples/nightly-lora.sh

say "submit examples/research-batch.jsonl (60 tasks; those naming \"adapter\": \"fin\" run on it)"
key="research-batch-$version"
job=$(shardq submit examples/research-batch.jsonl --tenant research --model stories260K.gguf \
  --idempotency-key "$key")
say "submit it again with the same idempotency key (as a retry after a timeout would): the same job"
again=$(shardq submit examples/research-batch.jsonl --tenant research --model stories260K.gguf \
  --idempotency-key "$key")
[[ $again == "$job" ]] || { echo "demo: the repeated submit gave job $again, not $job" >&2; exit 1; }
shardq wait "$job"
shardq results "$job" -o "$demo/out/research-results.jsonl"

say "a few results (OpenAI Batch output shape)"
head -n 3 "$demo/out/research-results.jsonl" | cut -c1-400
echo "all results: $demo/out/research-results.jsonl"

psql_q() { psql "$SHARDQ_DB" -X -q -P pager=off "$@"; }
say "audit: what happened to job $job (sql/queries/job_history.sql, first rows)"
# (head closes the pipe early: not a failure)
psql_q -v job_id="$job" -f sql/queries/job_history.sql | head -n 14 || true
say "audit: which model and adapter version produced which outputs (sql/queries/adapter_outputs.sql)"
psql_q -v from="'-infinity'" -v to="'infinity'" -v adapter="''" -v job=0 \
  -f sql/queries/adapter_outputs.sql | head -n 10 || true
psql_q -c "SELECT coalesce(adapter, '(base)') AS adapter, adapter_version, count(*) AS outputs,
                  left(model_sha256, 12) AS model_sha256
           FROM result_lineage GROUP BY 1, 2, 4 ORDER BY 1"
say "usage per tenant and day: tokens, those of the prompts served from the KV cache (sql/queries/tenant_daily.sql)"
psql_q -v from="'-infinity'" -v to="'infinity'" -f sql/queries/tenant_daily.sql
say "the worker group's KV cache after the job (KV_INUSE: pages running sequences hold)"
shardq workers

say "shutdown: drain the worker group, stop the broker and PostgreSQL"
kill -TERM "$group"
wait "$group" && echo "worker group drained (exit 0)"
pids=("${pids[@]:1}")
