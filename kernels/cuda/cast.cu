// CastRowsToHalfCuda: grid-stride over the m*k destination elements, one element per thread per step
// (consecutive threads -> consecutive columns of a row, so loads and stores are coalesced).
#include "kernels/cuda/cast.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"

namespace quarry::cuda {
namespace {

constexpr int kThreads = 256;

template <DType DT>
__global__ void CastRowsKernel(const float* src, int64_t lds, int64_t m, int64_t k, void* dst) {
  const int64_t total = m * k;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / k;
    const int64_t c = i - r * k;
    const float v = src[r * lds + c];
    if constexpr (DT == DType::kBF16) {
      static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(v);
    } else {
      static_cast<__half*>(dst)[i] = __float2half_rn(v);
    }
  }
}

}  // namespace

absl::Status CastRowsToHalfCuda(const float* src, int64_t lds, int64_t m, int64_t k, DType dtype, void* dst,
                                cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("CastRowsToHalfCuda: dtype must be BF16 or F16, got ",
                                                   DTypeName(dtype)));
  }
  if (m < 0 || k < 0 || lds < k) {
    return absl::InvalidArgumentError(
        absl::StrCat("CastRowsToHalfCuda: bad shape m = ", m, ", k = ", k, ", lds = ", lds));
  }
  if (m == 0 || k == 0) return absl::OkStatus();
  if (src == nullptr || dst == nullptr) return absl::InvalidArgumentError("CastRowsToHalfCuda: null pointer");
  const unsigned int blocks = GridFor(m * k, kThreads);
  if (dtype == DType::kBF16) {
    CastRowsKernel<DType::kBF16><<<blocks, kThreads, 0, stream>>>(src, lds, m, k, dst);
  } else {
    CastRowsKernel<DType::kF16><<<blocks, kThreads, 0, stream>>>(src, lds, m, k, dst);
  }
  return LaunchStatus("CastRowsToHalfCuda");
}

}  // namespace quarry::cuda
