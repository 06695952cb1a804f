#!/usr/bin/env bash
# Installs what is missing, builds everything (CUDA targets too when nvcc exists), runs every test
# (ctest; CUDA tests skip without a GPU) and a short libFuzzer run of the safetensors parser.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/local/install-deps.sh
deploy/local/build.sh -DQUARRY_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900
if [[ "${QUARRY_FUZZ_SECONDS:-30}" != "0" ]] && command -v clang++ >/dev/null; then
  tests/fuzz/run_fuzzer.sh "${QUARRY_FUZZ_SECONDS:-30}"
fi
echo "run_all: all tests passed"
