#!/usr/bin/env bash
# Runs the packed GPU checks (tests/gpu/prepare.sh) on the GPU test machine: CUDA kernel parity tests and the
# world-size-1 NCCL communicator test. Prints a short table last; full logs go to $OUT (or ./gpu-logs).
set -uo pipefail
PACK="${1:-build-gpu/pack}"
LOGS="${OUT:-./gpu-logs}"
mkdir -p "$LOGS"
export LD_LIBRARY_PATH="$PACK/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$LOGS/gpu.txt" 2>&1 || true
status=0
run() {
  local name=$1; shift
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    echo "$name FAIL" >>"$LOGS/summary.txt"; status=1
  elif grep -q "SKIPPED" "$LOGS/$name.log"; then
    echo "$name SKIPPED (no usable GPU)" >>"$LOGS/summary.txt"; status=1
  else
    echo "$name PASS" >>"$LOGS/summary.txt"
  fi
}
: >"$LOGS/summary.txt"
run kernels_cuda "$PACK/bin/quarry_kernels_cuda_test"
run nccl "$PACK/bin/quarry_parallel_nccl_test"
echo "GPU: $(cat "$LOGS/gpu.txt")"
grep -h -E "^\[  (PASSED|FAILED|SKIPPED) " "$LOGS"/*.log | sort | uniq -c
cat "$LOGS/summary.txt"
exit $status
