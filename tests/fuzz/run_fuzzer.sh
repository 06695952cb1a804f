#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser with clang (build-fuzz/) and fuzzes it for
# N seconds (default 30) starting from the seed corpus. Crashes leave a reproducer in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-30}"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQUARRY_FUZZ=ON -DQUARRY_BUILD_TESTS=ON -DQUARRY_CUDA=OFF >/dev/null
cmake --build build-fuzz --target quarry_safetensors_fuzzer -j "${JOBS:-$(nproc)}"
work="build-fuzz/corpus"
mkdir -p "$work" build-fuzz/artifacts
cp -n tests/fuzz/corpus/safetensors/* "$work"/ 2>/dev/null || true
build-fuzz/tests/quarry_safetensors_fuzzer "$work" -max_total_time="$SECONDS_TO_RUN" -max_len=4096 \
  -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1
