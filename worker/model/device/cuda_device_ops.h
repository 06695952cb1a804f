// CudaDeviceOps: the DeviceOps backend on one GPU: one stream, cuBLAS for large GEMMs (bf16 tensor cores),
// the Quarry CUDA kernels for everything else, and CUDA graphs for whole decode steps.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "worker/model/device/device_ops.h"

namespace quarry {

struct CudaDeviceOptions {
  int device = 0;
  // Largest m * k of a Linear that takes the cuBLAS path (the f32 -> bf16 staging of its input).
  int64_t max_gemm_input_elems = 0;
  // Linears with m <= this run the bandwidth-bound small-m kernel instead of cuBLAS.
  int64_t small_m = 16;
};

// FAILED_PRECONDITION when no CUDA device is usable (the message says why).
absl::StatusOr<std::unique_ptr<DeviceOps>> CreateCudaDeviceOps(const CudaDeviceOptions& options);

}  // namespace quarry
