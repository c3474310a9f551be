#!/usr/bin/env bash
# tests/gpu/run.sh: everything the CUDA backend needs a GPU for, in one go
# (owner: "cuda"). For a GPU machine with CUDA, CMake, ninja and MPI and no
# network; budgeted for under 8 minutes on one H200 with 16 cores.
#
#   tests/gpu/run.sh            # from anywhere; logs also go to $OUT if set
#
# Dependencies: the machine's own when it has them all, else the tree
# scripts/gpu-deps.sh unpacked into .gpudeps/root (carry it); NCCL from the
# nvidia-nccl-cu13 wheel when python3 has it (scripts/gpu-env.sh decides).
#
# Environment: SHARDQ_GPU_BUILD (build dir, default build/gpu),
# SHARDQ_GPU_JOBS (default nproc), SHARDQ_GPU_SHAPES (default
# "llama-110m tinyllama-1.1b"; a dry run on a CPU machine uses fewer).
#
# 1. optimised build (RelWithDebInfo, as CI) with CUDA (architecture of the visible GPU);
# 2. the gpu-labelled tests (CUDA vs CPU logits and greedy tokens on F32,
#    Q8_0 and F16, batched == alone, TP = 2 on one GPU through the host
#    all-reduce) and the CUDA unit tests;
# 3. the benchmark table: llama-110m and tinyllama-1.1b shapes (random
#    weights from shardq-model), F16 and Q8_0, on shardq-bench-cuda;
# 4. PyTorch transformers on the same files and sizes, if it is importable;
# 5. the largest Q8_0 model's profile (SHARDQ_PROFILE=1: each step's
#    device time and bandwidth, prefill, batch 1 and batch 64);
# 6. the largest Q8_0 model again without PDL, without fusion, without
#    graphs, without the int8 mma kernel, with sampling at T = 1, with a
#    LoRA adapter, and at 2,048 positions with the F16, Q8_0 and F32 KV cache.
# Steps run in that order (of worth) and each one's timeout is cut to what is left of
# SHARDQ_GPU_BUDGET seconds (default 480), so one run under the device's
# limit always brings back the figures that matter most; a step with under
# 20 s left is skipped, and says so.
# Exit: 0 when every test passed (the benchmark never fails the run), 1
# otherwise, 2 when the build fails.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${SHARDQ_GPU_BUILD:-$ROOT/build/gpu}
LOGS=${OUT:-$BUILD/logs}
JOBS=${SHARDQ_GPU_JOBS:-$(nproc 2>/dev/null || echo 4)}
SHAPES=${SHARDQ_GPU_SHAPES:-llama-110m tinyllama-1.1b}
mkdir -p "$BUILD" "$LOGS"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# sets SQ_GPU_CMAKE_ARGS and, for carried dependencies, PATH, LD_LIBRARY_PATH,
# pkg-config and Open MPI variables for everything below but python3, which
# keeps the machine's own libraries
SYSTEM_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
source "$ROOT/scripts/gpu-env.sh"
START=$(date +%s)
BUDGET=${SHARDQ_GPU_BUDGET:-480}
stamp() { echo "== [$(( $(date +%s) - START ))s] $*"; }
# the timeout for a step that wants $1 seconds: that, or what is left of
# the budget; 0 (skip the step) when under 20 s are left
budget() {
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < 20 )); then echo 0; elif (( left < $1 )); then echo "$left"; else echo "$1"; fi
}
# run "$@" under timeout $(budget $1), or say it was skipped (status 3)
within() {
  local t; t=$(budget "$1"); shift
  if (( t == 0 )); then echo "skipped (budget of ${BUDGET}s spent): $*"; return 3; fi
  timeout "$t" "$@"
}

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader \
  | tee "$LOGS/gpu.txt" || echo "nvidia-smi failed"
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${CAP:-90}
# the CUDA 13 runtime we link statically needs driver r580 or newer
echo "driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)" \
  "(CUDA 13 needs 580.65 or newer); nvcc: $(nvcc --version 2>/dev/null | tail -1)" | tee -a "$LOGS/gpu.txt"

stamp "configure + build (sm_$ARCH, $JOBS jobs)"
TARGETS="shardq-worker shardq-model shardq-bench-cuda test_cuda_unit test_cuda_cli test_cuda_engine
         test_cuda_tp test_cuda_lora test_cuda_emu"
if ! { cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSQ_WITH_CUDA=ON \
         -DCMAKE_CUDA_ARCHITECTURES="$ARCH" "${SQ_GPU_CMAKE_ARGS[@]}" &&
       cmake --build "$BUILD" --target $TARGETS -j"$JOBS"; } >"$LOGS/build.txt" 2>&1; then
  tail -40 "$LOGS/build.txt"
  echo "BUILD FAILED (full log: $LOGS/build.txt)"
  exit 2
fi
grep -i "shardq: CUDA" "$LOGS/build.txt" || true

stamp "tests: -L gpu and unit.cuda"
# (not the emulator's engine, TP, LoRA and worker-group runs: CPU CI runs
# them; unit.cuda.emu, the kernels on the emulator, stays)
within 240 ctest --test-dir "$BUILD" -R 'cuda' -E '^unit\.cuda\.emu.|^e2e\.' --output-on-failure 2>&1 |
  tee "$LOGS/tests.txt"
TESTS_RC=${PIPESTATUS[0]}
CTEST_RC=$TESTS_RC
grep -h "vs cpu\|vs alone" "$LOGS/tests.txt" || true
# A GPU test skips (exit 77) when no CUDA device is usable, and ctest
# counts a skip as a pass: with a GPU listed, a skip is a failure.
SKIPPED=$(grep -c '\*\*\*Skipped' "$LOGS/tests.txt" || true)
if [ -n "$CAP" ] && [ "${SKIPPED:-0}" -gt 0 ]; then
  echo "FAILED: $SKIPPED GPU tests skipped although nvidia-smi lists a GPU (no usable device:" \
    "driver too old for CUDA 13, or the device hidden?)" | tee -a "$LOGS/tests.txt"
  TESTS_RC=1
fi
# A failure under graphs and PDL shows up at the next synchronisation,
# far from the kernel at fault: run the failed tests again op by op with
# blocking launches, then under compute-sanitizer's memcheck when there.
if [ "$CTEST_RC" != 0 ] && [ -n "$CAP" ]; then
  stamp "failed tests again: SHARDQ_CUDA_GRAPHS=0 SHARDQ_CUDA_PDL=0 CUDA_LAUNCH_BLOCKING=1"
  SHARDQ_CUDA_GRAPHS=0 SHARDQ_CUDA_PDL=0 CUDA_LAUNCH_BLOCKING=1 within 60 \
    ctest --test-dir "$BUILD" --rerun-failed --output-on-failure 2>&1 | tee "$LOGS/tests-debug.txt"
  # (the first two failed single-process tests; not those under mpirun)
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  if [ -n "$SAN" ]; then
    for t in $(sed -n 's/^[[:space:]]*[0-9]* - \([a-z.]*cuda[^ ]*\) .*/\1/p' "$LOGS/tests.txt"); do
      # the test's own command (-FA: not its fixtures'), its arguments quoted
      cmd=$(ctest --test-dir "$BUILD" -R "^$t\$" -FA '.*' -N -V | sed -n 's/.*Test command: //p' |
            tail -1)
      case "$cmd" in ""|*mpirun*|*mpiexec*) continue ;; esac
      stamp "compute-sanitizer memcheck: $t"
      eval "within 60 \"\$SAN\" --tool memcheck $cmd" 2>&1 | tail -60 | tee -a "$LOGS/tests-debug.txt"
      n_san=$(( ${n_san:-0} + 1 )); [ "$n_san" -ge 2 ] && break
    done
  fi
fi

stamp "benchmark models"
MODELS=()
for shape in $SHAPES; do
  for type in f16 q8_0; do
    f="$BUILD/bench-$shape-$type.gguf"
    [ -s "$f" ] || "$BUILD/tools/shardq-model" random --shape "$shape" --type "$type" --seed 1 "$f" \
      >>"$LOGS/models.txt" 2>&1 || { echo "shardq-model random $shape $type failed"; continue; }
    MODELS+=("$f")
  done
done

stamp "shardq (CUDA): prompt 512, 64 decode steps, batches 16/64/256 x 16 steps"
within 200 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 64 --agg-steps 16 \
  --batches 16,64,256 "${MODELS[@]}" 2>&1 | tee "$LOGS/bench-shardq.txt"

stamp "PyTorch transformers, same files and sizes"
if LD_LIBRARY_PATH=$SYSTEM_LD_LIBRARY_PATH python3 -c 'import numpy, torch, transformers' \
     >/dev/null 2>&1; then
  LD_LIBRARY_PATH=$SYSTEM_LD_LIBRARY_PATH within 200 python3 "$ROOT/bench/cuda/hf_bench.py" \
    --prompt 512 --gen 64 --agg-steps 16 --batches 16,64,256 "${MODELS[@]}" 2>&1 |
    tee "$LOGS/bench-transformers.txt"
else
  echo "transformers column skipped: python3 cannot import numpy, torch and transformers" \
    | tee "$LOGS/bench-transformers.txt"
fi

# What PDL, fusion, graphs and the int8 mma kernel give, on the last
# (largest Q8_0) model: batch-1 decode without programmatic dependent
# launch; the same run with every op its own kernel, then with no graphs
# either; then prefill and batch 64 with big Q8_0 batches through
# dequantisation + cuBLAS instead of mma.
if ((${#MODELS[@]})); then
  # where the time goes: every step of the fusion plan timed alone (no
  # graphs), with the bytes it reads as GB/s, by batch bucket; what to
  # tune next, and the launch overhead (the plain run's step time minus
  # the sum of these)
  stamp "shardq profile (SHARDQ_PROFILE=1) on ${MODELS[-1]##*/}"
  SHARDQ_PROFILE=1 within 60 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 32 \
    --agg-steps 8 --batches 64 "${MODELS[-1]}" 2>&1 | tee "$LOGS/bench-profile.txt"
  stamp "shardq variants on ${MODELS[-1]##*/}: SHARDQ_CUDA_PDL=0; SHARDQ_CUDA_FUSE=0, then" \
    "also SHARDQ_CUDA_GRAPHS=0; SHARDQ_CUDA_MMA=0"
  { SHARDQ_CUDA_PDL=0 within 60 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 64 \
      --agg-steps 16 --batches 16 "${MODELS[-1]}"
    SHARDQ_CUDA_FUSE=0 within 100 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 64 \
      --agg-steps 16 --batches 16,64 "${MODELS[-1]}"
    SHARDQ_CUDA_FUSE=0 SHARDQ_CUDA_GRAPHS=0 within 100 "$BUILD/bench/cuda/shardq-bench-cuda" \
      --prompt 512 --gen 64 --agg-steps 16 --batches 16,64 "${MODELS[-1]}"
    SHARDQ_CUDA_MMA=0 within 60 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 16 \
      --agg-steps 16 --batches 64 "${MODELS[-1]}"
  } 2>&1 | tee "$LOGS/bench-variants.txt"
  # decode steps that draw at temperature 1 on the device instead of the argmax
  stamp "shardq sampling at T = 1 on ${MODELS[-1]##*/}"
  within 60 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 32 --agg-steps 16 \
    --batches 64,256 --temperature 1 "${MODELS[-1]}" 2>&1 | tee "$LOGS/bench-sampling.txt"
  # what a rank-16 LoRA adapter on every target costs: prompt and batch-1
  # decode on it, batches 16 and 64 half on it (the gather/scatter path)
  LORA="$BUILD/bench-lora-r16.gguf"
  stamp "shardq with a LoRA adapter on ${MODELS[-1]##*/}"
  { [ -s "$LORA" ] || "$BUILD/tools/shardq-model" lora-random --base "${MODELS[-1]}" --rank 16 \
      --targets attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down --seed 7 "$LORA" \
      >>"$LOGS/models.txt" 2>&1; } &&
    within 60 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 512 --gen 32 --agg-steps 16 \
      --batches 16,64 --lora "$LORA" "${MODELS[-1]}" 2>&1 | tee "$LOGS/bench-lora.txt"
  # long contexts, where reading the KV cache is most of a step: 64
  # sequences after 2,048-token prompts, the F16 cache (the default), Q8_0
  # (53 % of its bytes), then F32
  stamp "shardq at 2,048 positions, KV cache f16, q8_0 then f32, on ${MODELS[-1]##*/}"
  for kv in f16 q8_0 f32; do
    within 90 "$BUILD/bench/cuda/shardq-bench-cuda" --prompt 2048 --gen 16 --agg-prompt 2048 \
      --agg-steps 8 --batches 64 --kv-type "$kv" "${MODELS[-1]}"
  done 2>&1 | tee "$LOGS/bench-longctx.txt"
fi

stamp "done: tests $([ "$TESTS_RC" = 0 ] && echo passed || echo FAILED), logs in $LOGS"
[ "$TESTS_RC" = 0 ]
