#!/usr/bin/env bash
# Runs the packed GPU checks (tests/gpu/prepare.sh) on the GPU test machine, from inside the pack:
#   1. CUDA kernel parity tests (every CUDA op against its CPU reference),
#   2. the device model on the GPU (golden tiny-a / tiny-b, graph == eager == host),
#   3. quarry verify --device cuda on both golden models, with and without CUDA graphs,
#   4. the world-size-1 NCCL communicator test,
#   5. quarry-engine-bench on the real architecture with random weights (make-model, ~14 GB, generated here),
#   6. compute-sanitizer memcheck + racecheck over a golden run (SKIP_SANITIZER=1 skips),
#   (3 and 5 also run once with QUARRY_CUDA_PDL=1: programmatic dependent launch of the decode kernels; 5 once
#   more with QUARRY_CUDA_FUSE_AFTER=0: the post-MoE norm as its own launch, at batch 1, 8 and 32, and its
#   prefills once more with QUARRY_CUDA_SSD_CHUNKED=0 (the split SSD recurrence instead of the chunked scan)
#   with QUARRY_CUDA_TC_PIPELINE=0 (the expert GEMM's main loop staged through registers) and with
#   QUARRY_CUDA_ATTN_TC=0 (prefill attention on the f32 kernel), and decode at batch 32 with
#   QUARRY_CUDA_LINEAR_TC=0 (its 17-32-row products on cuBLAS, not kernels/cuda/linear_tc.cu), and at batch 128
#   and 256 with QUARRY_CUDA_GROUPED_TC_SMALL=0 (expert products on the 64-row tiles, not grouped_tc_small.cu)),
#   (and once with --op-profile: every op of a 1,024-token prefill and of eager decode steps at batch 1 and 32
#   timed alone, the per-op tables printed),
#   7. (PROFILE=1 only) Nsight Compute over eager decode steps at batch 1 and 32 of that model: per-kernel
#      duration and DRAM / compute throughput (SpeedOfLight), as CSV (ncu-decode.csv in the logs).
# Prints a short table last; full logs go to $LOGDIR (default ./gpu-logs), packed into $OUT when set.
# SKIP_BENCH=1 skips steps 5 and 7.
# Time budget: steps start only while less than BUDGET_S (default 520) seconds have passed, and each gets at most
# what is left, so the table always prints inside one device call; skipped steps are listed as such.
set -uo pipefail
PACK="$(cd "${1:-build-gpu/pack}" && pwd)"
if [ -f "$PACK/payload.tar.gz" ] && [ ! -d "$PACK/bin" ]; then  # prepare.sh ships the pack compressed
  UNPACKED="${TMPDIR:-/tmp}/quarry-gpu-pack"
  rm -rf "$UNPACKED" && mkdir -p "$UNPACKED"
  tar xzf "$PACK/payload.tar.gz" -C "$UNPACKED"
  cp "$PACK/run.sh" "$UNPACKED/"
  PACK="$UNPACKED"
fi
# Logs go to a scratch folder; with $OUT set (the device tool brings back at most 8 files), they end up packed as
# $OUT/gpu-logs.tar.gz next to summary.txt and engine-bench.json.
LOGS="${LOGDIR:-$PWD/gpu-logs}"
mkdir -p "$LOGS"
cd "$PACK"
export LD_LIBRARY_PATH="$PACK/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$LOGS/gpu.txt" 2>&1 || true
status=0
: >"$LOGS/summary.txt"
BUDGET_S="${BUDGET_S:-520}"
run() {
  local name=$1; shift
  local t0=$SECONDS
  local left=$((BUDGET_S - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name NOT RUN (time budget of ${BUDGET_S} s spent)" >>"$LOGS/summary.txt"; status=1
    return
  fi
  local limit="${STEP_TIMEOUT:-300}"
  [ "$limit" -gt "$left" ] && limit=$left
  if ! timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1; then
    echo "$name FAIL ($((SECONDS - t0)) s)" >>"$LOGS/summary.txt"; status=1
  elif grep -q "SKIPPED" "$LOGS/$name.log"; then
    echo "$name SKIPPED (no usable GPU)" >>"$LOGS/summary.txt"; status=1
  else
    echo "$name PASS ($((SECONDS - t0)) s)" >>"$LOGS/summary.txt"
  fi
}
run kernels_cuda bin/quarry_kernels_cuda_test
run device_model_cuda bin/quarry_device_model_cuda_test
for m in tiny-a tiny-b; do
  tol=$([ "$m" = tiny-a ] && echo 1e-3 || echo 3e-2)
  run "verify_${m}_graphs" bin/quarry verify --device cuda --model "tests/data/golden/$m" \
    --reference "tests/data/golden/$m/reference.safetensors" --tolerance "$tol"
  run "verify_${m}_eager_chunk5" bin/quarry verify --device cuda --no-cuda-graphs --prefill-chunk 5 \
    --model "tests/data/golden/$m" --reference "tests/data/golden/$m/reference.safetensors" --tolerance "$tol"
  run "verify_${m}_bf16_kv" bin/quarry verify --device cuda --kv-cache-dtype bf16 --prefill-chunk 7 \
    --model "tests/data/golden/$m" --reference "tests/data/golden/$m/reference.safetensors" --tolerance "$tol"
done
# Programmatic dependent launch (experimental, QUARRY_CUDA_PDL=1): the golden checks once more with it on.
run verify_tiny-b_pdl env QUARRY_CUDA_PDL=1 bin/quarry verify --device cuda --model tests/data/golden/tiny-b \
  --reference tests/data/golden/tiny-b/reference.safetensors --tolerance 3e-2
run device_model_cuda_pdl env QUARRY_CUDA_PDL=1 bin/quarry_device_model_cuda_test
run nccl bin/quarry_parallel_nccl_test
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  MODEL="${BENCH_MODEL_DIR:-/tmp/quarry-granite-tiny}"
  [ -f "$MODEL/config.json" ] || run make_model bin/quarry make-model --preset granite-4.0-h-tiny --out "$MODEL" \
    --threads "$(nproc)"
  STEP_TIMEOUT=400 run engine_bench bin/quarry-engine-bench --model "$MODEL" --device cuda \
    --json "$LOGS/engine-bench.json"
  STEP_TIMEOUT=200 run engine_bench_pdl env QUARRY_CUDA_PDL=1 bin/quarry-engine-bench --model "$MODEL" \
    --device cuda --prefill 0 --prefill8 0 --batches 1,8,32 --json "$LOGS/engine-bench-pdl.json"
  # The post-MoE norm as its own launch instead of inside the experts' down projection (up to 64 tokens).
  STEP_TIMEOUT=150 run engine_bench_no_after env QUARRY_CUDA_FUSE_AFTER=0 bin/quarry-engine-bench --model "$MODEL" \
    --device cuda --prefill 0 --prefill8 0 --batches 1,8,32 --json "$LOGS/engine-bench-no-after.json"
  # Decode at batch 32 with its products on cuBLAS (+ conv / KV launches) instead of kernels/cuda/linear_tc.cu.
  STEP_TIMEOUT=120 run engine_bench_no_linear_tc env QUARRY_CUDA_LINEAR_TC=0 bin/quarry-engine-bench \
    --model "$MODEL" --device cuda --prefill 0 --prefill8 0 --batches 32 --json "$LOGS/engine-bench-no-linear-tc.json"
  # Decode at batch 128 and 256 with the expert products on the 64-row-tile GEMM instead of the 16-row-tile kernel
  # (kernels/cuda/grouped_tc_small.cu; at 128 before it they ran on the GEMV).
  STEP_TIMEOUT=120 run engine_bench_no_tc_small env QUARRY_CUDA_GROUPED_TC_SMALL=0 bin/quarry-engine-bench \
    --model "$MODEL" --device cuda --prefill 0 --prefill8 0 --batches 128,256 --json "$LOGS/engine-bench-no-tc-small.json"
  # Where the time goes, op by op (each op timed alone, synchronised; eager decode): the per-op tables.
  STEP_TIMEOUT=150 run engine_bench_op_profile bin/quarry-engine-bench --model "$MODEL" --device cuda --op-profile \
    --no-graphs --prefill 1024 --prefill8 0 --batches 1,32 --steps 4 --json "$LOGS/engine-bench-op-profile.json"
  # Prefill with the expert GEMM's register-staged main loop instead of the cp.async pipeline.
  STEP_TIMEOUT=150 run engine_bench_tc_registers env QUARRY_CUDA_TC_PIPELINE=0 bin/quarry-engine-bench \
    --model "$MODEL" --device cuda --batches 1 --steps 5 --json "$LOGS/engine-bench-tc-registers.json"
  # Prefill with the f32 attention kernel instead of the tensor cores (kernels/cuda/attention_tc.cu).
  STEP_TIMEOUT=150 run engine_bench_attn_f32 env QUARRY_CUDA_ATTN_TC=0 bin/quarry-engine-bench \
    --model "$MODEL" --device cuda --batches 1 --steps 5 --json "$LOGS/engine-bench-attn-f32.json"
  # Prefill with the split SSD recurrence instead of the chunked scan (kernels/cuda/ssd_chunked.cu).
  STEP_TIMEOUT=150 run engine_bench_ssd_recurrence env QUARRY_CUDA_SSD_CHUNKED=0 bin/quarry-engine-bench \
    --model "$MODEL" --device cuda --batches 1 --steps 5 --json "$LOGS/engine-bench-ssd-recurrence.json"
fi
# compute-sanitizer (memcheck, then racecheck for shared-memory races) over a whole golden run, eager and graphs.
SAN="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
if [ "${SKIP_SANITIZER:-0}" != 1 ] && [ -x "$SAN" ]; then
  run memcheck_tiny_b "$SAN" --tool memcheck --error-exitcode 9 bin/quarry verify --device cuda --prefill-chunk 7 \
    --model tests/data/golden/tiny-b --reference tests/data/golden/tiny-b/reference.safetensors --tolerance 3e-2
  run racecheck_tiny_b "$SAN" --tool racecheck --error-exitcode 9 bin/quarry verify --device cuda --no-cuda-graphs \
    --model tests/data/golden/tiny-b --reference tests/data/golden/tiny-b/reference.safetensors --tolerance 3e-2
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  MODEL="${BENCH_MODEL_DIR:-/tmp/quarry-granite-tiny}"
  NCU="$(command -v ncu || echo /usr/local/cuda/bin/ncu)"
  if [ "${PROFILE:-0}" = 1 ] && [ -x "$NCU" ]; then
    # One eager decode step of this model is a few hundred launches; the CSV's grid sizes tell batch 1 from 32
    # (the first launches, pool zeroing and the bandwidth probe, are skipped).
    STEP_TIMEOUT=300 run ncu_decode "$NCU" --csv --section SpeedOfLight --launch-skip 400 --launch-count 2500 \
      --log-file "$LOGS/ncu-decode.csv" bin/quarry-engine-bench --model "$MODEL" --device cuda --no-graphs \
      --prefill 0 --prefill8 0 --batches 1,32 --steps 2 --json "$LOGS/engine-bench-ncu.json"
  fi
fi
echo "GPU: $(cat "$LOGS/gpu.txt")"
count() { grep -E "^\[ +$1 +\] [A-Za-z]" "$2" | sed -E 's/^\[[^]]*\] //; s/ .*//' | sort -u | wc -l; }
for f in "$LOGS"/kernels_cuda.log "$LOGS"/device_model_cuda.log "$LOGS"/nccl.log; do
  [ -f "$f" ] || continue
  echo "$(basename "$f" .log): $(count OK "$f") passed, $(count FAILED "$f") failed, $(count SKIPPED "$f") skipped"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$f" | sed -E 's/ \(.*//' | sort -u | head -30
done
grep -h "^\[timing\]" "$LOGS"/kernels_cuda.log 2>/dev/null
grep -h -E "^verify|^device steps" "$LOGS"/verify_*.log 2>/dev/null
[ -f "$LOGS/engine_bench.log" ] && grep -A12 "^Quarry device engine" "$LOGS/engine_bench.log"
[ -f "$LOGS/engine_bench_pdl.log" ] && echo "with QUARRY_CUDA_PDL=1:" && grep -A8 "^Quarry device engine" "$LOGS/engine_bench_pdl.log"
[ -f "$LOGS/engine_bench_no_after.log" ] && echo "with QUARRY_CUDA_FUSE_AFTER=0:" &&
  grep -A7 "^Quarry device engine" "$LOGS/engine_bench_no_after.log"
[ -f "$LOGS/engine_bench_no_linear_tc.log" ] && echo "with QUARRY_CUDA_LINEAR_TC=0:" &&
  grep -A5 "^Quarry device engine" "$LOGS/engine_bench_no_linear_tc.log"
[ -f "$LOGS/engine_bench_no_tc_small.log" ] && echo "with QUARRY_CUDA_GROUPED_TC_SMALL=0:" &&
  grep -A6 "^Quarry device engine" "$LOGS/engine_bench_no_tc_small.log"
[ -f "$LOGS/engine_bench_op_profile.log" ] && grep -A22 "^ops of" "$LOGS/engine_bench_op_profile.log"
[ -f "$LOGS/engine_bench_tc_registers.log" ] && echo "with QUARRY_CUDA_TC_PIPELINE=0:" &&
  grep -A7 "^Quarry device engine" "$LOGS/engine_bench_tc_registers.log"
[ -f "$LOGS/engine_bench_attn_f32.log" ] && echo "with QUARRY_CUDA_ATTN_TC=0:" &&
  grep -A7 "^Quarry device engine" "$LOGS/engine_bench_attn_f32.log"
[ -f "$LOGS/engine_bench_ssd_recurrence.log" ] && echo "with QUARRY_CUDA_SSD_CHUNKED=0:" &&
  grep -A7 "^Quarry device engine" "$LOGS/engine_bench_ssd_recurrence.log"
cat "$LOGS/summary.txt"
if [ -n "${OUT:-}" ] && [ "$LOGS" != "$OUT" ]; then
  mkdir -p "$OUT"
  tar czf "$OUT/gpu-logs.tar.gz" -C "$LOGS" . && cp "$LOGS/summary.txt" "$OUT/"
  [ -f "$LOGS/engine-bench.json" ] && cp "$LOGS/engine-bench.json" "$OUT/"
  [ -f "$LOGS/engine-bench-pdl.json" ] && cp "$LOGS/engine-bench-pdl.json" "$OUT/"
  [ -f "$LOGS/engine-bench-op-profile.json" ] && cp "$LOGS/engine-bench-op-profile.json" "$OUT/"
fi
exit $status
