// MeasureCopyBandwidthCuda: device-to-device copy bandwidth (the engine benchmark's bandwidth floor).
// Not an op: it allocates, synchronises and frees, so it must not run inside a graph capture.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kWarmupCopies = 2;

absl::Status CudaError(const char* what, cudaError_t err) {
  return absl::InternalError(absl::StrCat("MeasureCopyBandwidthCuda: ", what, ": ", cudaGetErrorString(err)));
}

// Frees what was allocated, whichever way the measurement ends.
struct Resources {
  void* src = nullptr;
  void* dst = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  ~Resources() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (src != nullptr) cudaFree(src);
    if (dst != nullptr) cudaFree(dst);
  }
};

}  // namespace

absl::Status MeasureCopyBandwidthCuda(size_t bytes, int iters, cudaStream_t stream, double* gb_per_s) {
  if (bytes == 0) return absl::InvalidArgumentError("MeasureCopyBandwidthCuda: bytes must be positive");
  if (iters <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("MeasureCopyBandwidthCuda: iters must be positive, got ", iters));
  }
  if (gb_per_s == nullptr) return absl::InvalidArgumentError("MeasureCopyBandwidthCuda: gb_per_s is null");
  Resources res;
  cudaError_t err = cudaMalloc(&res.src, bytes);
  if (err != cudaSuccess) return CudaError("cudaMalloc", err);
  err = cudaMalloc(&res.dst, bytes);
  if (err != cudaSuccess) return CudaError("cudaMalloc", err);
  if ((err = cudaEventCreate(&res.start)) != cudaSuccess) return CudaError("cudaEventCreate", err);
  if ((err = cudaEventCreate(&res.stop)) != cudaSuccess) return CudaError("cudaEventCreate", err);
  // Touch both buffers (first use maps the pages), then warm up the copy path.
  if ((err = cudaMemsetAsync(res.src, 1, bytes, stream)) != cudaSuccess) return CudaError("cudaMemsetAsync", err);
  if ((err = cudaMemsetAsync(res.dst, 0, bytes, stream)) != cudaSuccess) return CudaError("cudaMemsetAsync", err);
  for (int i = 0; i < kWarmupCopies; ++i) {
    err = cudaMemcpyAsync(res.dst, res.src, bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) return CudaError("cudaMemcpyAsync", err);
  }
  if ((err = cudaEventRecord(res.start, stream)) != cudaSuccess) return CudaError("cudaEventRecord", err);
  for (int i = 0; i < iters; ++i) {
    err = cudaMemcpyAsync(res.dst, res.src, bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) return CudaError("cudaMemcpyAsync", err);
  }
  if ((err = cudaEventRecord(res.stop, stream)) != cudaSuccess) return CudaError("cudaEventRecord", err);
  if ((err = cudaEventSynchronize(res.stop)) != cudaSuccess) return CudaError("cudaEventSynchronize", err);
  float ms = 0.0f;
  if ((err = cudaEventElapsedTime(&ms, res.start, res.stop)) != cudaSuccess) {
    return CudaError("cudaEventElapsedTime", err);
  }
  if (ms <= 0.0f) return absl::InternalError("MeasureCopyBandwidthCuda: the copies took no measurable time");
  // Each copy reads and writes `bytes`.
  *gb_per_s = 2.0 * static_cast<double>(bytes) * static_cast<double>(iters) / (static_cast<double>(ms) * 1e-3) / 1e9;
  return absl::OkStatus();
}

}  // namespace quarry
