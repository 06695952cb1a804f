// Helpers shared by the .cu files: launch status, grid sizing, dtype loads on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace quarry::cuda {

// INTERNAL naming the op if the launch (or an earlier asynchronous call) left an error.
inline absl::Status LaunchStatus(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(std::string(op) + ": CUDA launch failed: " + cudaGetErrorString(err));
}

inline unsigned int GridFor(int64_t work, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t blocks = (work + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;  // kernels use grid-stride loops
  return static_cast<unsigned int>(blocks);
}

__device__ __forceinline__ float LoadElem(const void* base, int64_t i, DType dt) {
  switch (dt) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kBF16:
      return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16);
    case DType::kF16:
      return __half2float(static_cast<const __half*>(base)[i]);
  }
  return 0.0f;
}

__device__ __forceinline__ float Silu(float v) { return v / (1.0f + expf(-v)); }

// f32 -> BF16 / F16 bits, round to nearest even (FloatTo16 of kernels/dtype.h).
__device__ __forceinline__ uint16_t To16(float v, DType t) {
  return t == DType::kF16 ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float BlockSum(float v, float* scratch /* [32] shared */) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read by a previous BlockSum
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float s = lane < warps ? scratch[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  return s;
}

}  // namespace quarry::cuda
