#!/usr/bin/env bash
# Builds the GPU checks on a development machine (CUDA 13 + NCCL in /usr/local/cuda, no GPU needed) and packs
# them with their non-system shared libraries into build-gpu/pack/, for the GPU test machine (which has no
# gRPC, abseil or package manager). Then, there: tests/gpu/run.sh build-gpu/pack  (see docs/gpu-results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DQUARRY_CUDA=ON -DQUARRY_ENGINE_ONLY=ON \
  -DQUARRY_BUILD_TESTS=ON >/dev/null
cmake --build build-gpu -j "${JOBS:-$(nproc)}" --target quarry_kernels_cuda_test quarry_parallel_nccl_test quarry
PACK=build-gpu/pack
rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/lib"
cp build-gpu/tests/quarry_kernels_cuda_test build-gpu/tests/quarry_parallel_nccl_test build-gpu/bin/quarry "$PACK/bin/"
# Every shared library except libc/libm/libstdc++/libgcc_s/ld-linux and the CUDA/NCCL ones the machine has.
for b in "$PACK"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnccl.so*|libcuda.so*|libpthread.so*|libdl.so*|librt.so*) ;;
      *) cp -n "$lib" "$PACK/lib/" ;;
    esac
  done
done
mkdir -p "$PACK/data" && cp -r tests/data/golden "$PACK/data/"
cp tests/gpu/run.sh "$PACK/"
du -sh "$PACK"
