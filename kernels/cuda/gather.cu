// GatherRowsCuda: one block per output row, threads over the width.
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

__global__ void GatherRowsKernel(GatherRowsParams p) {
  const int64_t i = blockIdx.x;
  const int64_t src = p.rows[i];
  const float* x = p.x + src * p.ldx;
  float* y = p.y + i * p.ldy;
  for (int64_t c = threadIdx.x; c < p.width; c += blockDim.x) y[c] = src < 0 ? __int_as_float(0x7fc00000) : x[c];
}

}  // namespace

absl::Status GatherRowsCuda(const GatherRowsParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateGatherRows(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 0x7fffffff) return absl::InvalidArgumentError("GatherRowsCuda: n exceeds 2^31 - 1");
  GatherRowsKernel<<<static_cast<unsigned int>(p.n), 256, 0, stream>>>(p);
  return cuda::LaunchStatus("GatherRowsCuda");
}

}  // namespace quarry
