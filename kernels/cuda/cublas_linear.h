// CublasLinear: LinearParams on cuBLAS tensor cores (prefill-sized m; LinearCuda's GEMV path serves decode).
//
// y[m, n] (+)= x[m, k] · W[n, k]ᵀ as one cublasGemmEx in column-major terms: y row-major [m, n] is
// column-major [n, m] with leading dimension ldy, W row-major [n, k] is column-major [k, n] (op T), x
// row-major [m, k] is column-major [k, m]. For BF16/F16 weights x is first rounded to the weight's type in a
// device scratch ([max_x_elems] 16-bit values, allocated once) by a small cast kernel; products accumulate in
// f32 (CUBLAS_COMPUTE_32F) and y stays f32. Rounding x to bf16 keeps ~3 significant digits (8-bit
// mantissa), so results differ from LinearCpu (f32 x) by up to ~1e-2 relative to the output scale (f16: ~1e-3).
// F32 weights use x directly (CUDA_R_32F, CUBLAS_COMPUTE_32F, no TF32): agrees with LinearCpu to ~1e-5.
//
// Graph capture: the handle is bound to one stream at Create and given a fixed 32 MiB workspace
// (cublasSetWorkspace), and Run allocates nothing and never synchronises, so Run can be captured.
// Not thread-safe: one CublasLinear per stream / thread. cuBLAS stays out of this header; it is loaded with
// dlopen on the first Create (FAILED_PRECONDITION when it is missing; see cublas_loader.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/linear.h"

struct cublasContext;  // cublasHandle_t is cublasContext*

namespace quarry {
namespace cuda {
struct CublasApi;
}  // namespace cuda

class CublasLinear {
 public:
  // max_x_elems: the largest m * k that Run converts to 16 bits (0: F32 weights only).
  static absl::StatusOr<std::unique_ptr<CublasLinear>> Create(cudaStream_t stream, int64_t max_x_elems);
  ~CublasLinear();
  CublasLinear(const CublasLinear&) = delete;
  CublasLinear& operator=(const CublasLinear&) = delete;

  // ValidateLinear's errors; INVALID_ARGUMENT when m * k > max_x_elems (16-bit weights) or a dimension or
  // stride exceeds cuBLAS's int range; INTERNAL naming the cuBLAS status when the GEMM fails to launch.
  absl::Status Run(const LinearParams& p);

  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

 private:
  CublasLinear() = default;

  const cuda::CublasApi* api_ = nullptr;  // cuBLAS, loaded at run time (kernels/cuda/cublas_loader.h)
  cublasContext* handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  void* x16_ = nullptr;  // [max_x_elems] bf16 or f16
  int64_t max_x_elems_ = 0;
};

}  // namespace quarry
