#!/usr/bin/env bash
# Builds the GPU checks on a development machine (CUDA 13 + NCCL in /usr/local/cuda, no GPU needed) and packs
# them with their non-system shared libraries into build-gpu/pack/, for the GPU test machine (which has no
# gRPC, abseil or package manager). Then, there: tests/gpu/run.sh build-gpu/pack  (see docs/gpu-results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DQUARRY_CUDA=ON -DQUARRY_ENGINE_ONLY=ON \
  -DQUARRY_BUILD_TESTS=ON >/dev/null
BINS=(tests/quarry_kernels_cuda_test tests/quarry_device_model_cuda_test tests/quarry_parallel_nccl_test
      bin/quarry bin/quarry-engine-bench)
TARGETS=()
for b in "${BINS[@]}"; do TARGETS+=("$(basename "$b")"); done
cmake --build build-gpu -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}"
PACK=build-gpu/pack
rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/tests/data"
for b in "${BINS[@]}"; do cp "build-gpu/$b" "$PACK/bin/"; done
# Every shared library except libc/libm/libstdc++/libgcc_s/ld-linux and the CUDA/NCCL ones the machine has.
for b in "$PACK"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnccl.so*|libcuda.so*|libpthread.so*|libdl.so*|librt.so*) ;;
      *) cp -n "$lib" "$PACK/lib/" ;;
    esac
  done
done
cp -r tests/data/golden "$PACK/tests/data/"
# The device tool carries at most 64 MiB: binaries, libraries and data travel compressed (~3x smaller);
# run.sh unpacks them into a scratch folder first.
tar czf "$PACK/payload.tar.gz" -C "$PACK" bin lib tests
rm -rf "$PACK/bin" "$PACK/lib" "$PACK/tests"
cp tests/gpu/run.sh "$PACK/"
du -sh "$PACK"
