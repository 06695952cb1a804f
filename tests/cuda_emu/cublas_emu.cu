// Quarry CUDA emulator (tests/cuda_emu): cuBLAS emulated behind the loader interface (kernels/cuda/cublas_loader.h),
// so the real CublasLinear (kernels/cuda/cublas_linear.cc) runs in the emulated parity tests. The handle keeps
// its stream; cublasGemmEx is an emulated kernel launched on that stream (so it is ordered with the other work
// and recorded by a stream capture like any launch): one thread per output element, f32 products of the inputs
// widened from their types, summed in k order, alpha / beta from host memory (beta == 0: C is not read, as in
// cuBLAS). Only what CublasLinear uses is accepted (32F compute, 32F / 16F / 16BF inputs, 32F output, N / T);
// anything else is CUBLAS_STATUS_NOT_SUPPORTED.
#include <cublas_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/cublas_loader.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace quarry::cuda {
namespace {

struct GemmArgs {
  bool ta, tb;
  int m, n, k;
  float alpha, beta;
  const void* a;
  cudaDataType_t at;
  int lda;
  const void* b;
  cudaDataType_t bt;
  int ldb;
  float* c;
  int ldc;
};

__device__ float LoadAs(const void* base, int64_t i, cudaDataType_t t) {
  if (t == CUDA_R_32F) return static_cast<const float*>(base)[i];
  if (t == CUDA_R_16F) return __half2float(static_cast<const __half*>(base)[i]);
  return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16);
}

// C[i, j] = alpha * Σ_l op(A)[i, l] · op(B)[l, j] + beta * C[i, j], column-major.
__global__ void EmuGemmKernel(GemmArgs g) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<int64_t>(g.m) * g.n) return;
  const int64_t i = e % g.m, j = e / g.m;
  float acc = 0.0f;
  for (int64_t l = 0; l < g.k; ++l) {
    const float av = LoadAs(g.a, g.ta ? l + i * g.lda : i + l * g.lda, g.at);
    const float bv = LoadAs(g.b, g.tb ? j + l * g.ldb : l + j * g.ldb, g.bt);
    acc += av * bv;
  }
  float* out = g.c + i + j * static_cast<int64_t>(g.ldc);
  *out = g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * *out;
}

cublasStatus_t Create(cublasHandle_t* h) {
  *h = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t Destroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t SetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t SetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t SetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t SetPointerMode(cublasHandle_t, cublasPointerMode_t mode) {
  return mode == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

bool Known(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

cublasStatus_t GemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      const void* alpha, const void* a, cudaDataType at, int lda, const void* b, cudaDataType bt,
                      int ldb, const void* beta, void* c, cudaDataType ct, int ldc, cublasComputeType_t compute,
                      cublasGemmAlgo_t) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (compute != CUBLAS_COMPUTE_32F || ct != CUDA_R_32F || !Known(at) || !Known(bt) || at != bt ||
      ta == CUBLAS_OP_C || tb == CUBLAS_OP_C) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_T ? k : m) || ldb < (tb == CUBLAS_OP_T ? n : k) || ldc < m) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const GemmArgs g{ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, *static_cast<const float*>(alpha),
                   *static_cast<const float*>(beta), a, at, lda, b, bt, ldb, static_cast<float*>(c), ldc};
  const int64_t blocks = (static_cast<int64_t>(m) * n + 255) / 256;
  EmuGemmKernel<<<static_cast<unsigned int>(blocks), 256, 0, h->stream>>>(g);
  return cudaGetLastError() == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

const char* StatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* StatusString(cublasStatus_t) { return "emulated cuBLAS (tests/cuda_emu/cublas_emu.cu)"; }

}  // namespace

absl::StatusOr<const CublasApi*> LoadCublas() {
  static const CublasApi api{Create,         Destroy, SetStream,  SetWorkspace, SetMathMode,
                             SetPointerMode, GemmEx,  StatusName, StatusString};
  return &api;
}

}  // namespace quarry::cuda
