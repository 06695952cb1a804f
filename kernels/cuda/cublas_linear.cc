// CublasLinear (see cublas_linear.h): cublasGemmEx with the row-major trick, x cast to 16 bits on the device.
#include "kernels/cuda/cublas_linear.h"

#include <cublas_api.h>

#include <climits>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cast.h"
#include "kernels/cuda/cublas_loader.h"

namespace quarry {
namespace {

absl::Status CublasError(const cuda::CublasApi* api, const char* what, cublasStatus_t st) {
  return absl::InternalError(absl::StrCat("CublasLinear: ", what, " failed: ", api->status_name(st), " (",
                                          api->status_string(st), ")"));
}

absl::Status CudaError(const char* what, cudaError_t err) {
  return absl::InternalError(absl::StrCat("CublasLinear: ", what, " failed: ", cudaGetErrorString(err)));
}

bool FitsInt(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

absl::StatusOr<std::unique_ptr<CublasLinear>> CublasLinear::Create(cudaStream_t stream, int64_t max_x_elems) {
  if (max_x_elems < 0) {
    return absl::InvalidArgumentError(absl::StrCat("CublasLinear: max_x_elems must be >= 0, got ", max_x_elems));
  }
  auto api = cuda::LoadCublas();
  if (!api.ok()) return api.status();
  std::unique_ptr<CublasLinear> out(new CublasLinear());  // private constructor
  out->api_ = *api;
  out->stream_ = stream;
  out->max_x_elems_ = max_x_elems;
  cublasHandle_t handle = nullptr;
  if (cublasStatus_t st = out->api_->create(&handle); st != CUBLAS_STATUS_SUCCESS) return CublasError(out->api_, "cublasCreate", st);
  out->handle_ = handle;
  // cublasSetStream resets a user workspace, so the stream is set first.
  if (cublasStatus_t st = out->api_->set_stream(handle, stream); st != CUBLAS_STATUS_SUCCESS) {
    return CublasError(out->api_, "cublasSetStream", st);
  }
  if (cudaError_t err = cudaMalloc(&out->workspace_, kWorkspaceBytes); err != cudaSuccess) {
    return CudaError("cudaMalloc(workspace)", err);
  }
  if (cublasStatus_t st = out->api_->set_workspace(handle, out->workspace_, kWorkspaceBytes); st != CUBLAS_STATUS_SUCCESS) {
    return CublasError(out->api_, "cublasSetWorkspace", st);
  }
  // Plain f32 math for F32 weights (no TF32); 16-bit inputs use tensor cores under CUBLAS_COMPUTE_32F anyway.
  if (cublasStatus_t st = out->api_->set_math_mode(handle, CUBLAS_DEFAULT_MATH); st != CUBLAS_STATUS_SUCCESS) {
    return CublasError(out->api_, "cublasSetMathMode", st);
  }
  if (cublasStatus_t st = out->api_->set_pointer_mode(handle, CUBLAS_POINTER_MODE_HOST); st != CUBLAS_STATUS_SUCCESS) {
    return CublasError(out->api_, "cublasSetPointerMode", st);
  }
  const size_t scratch = static_cast<size_t>(max_x_elems > 0 ? max_x_elems : 1) * sizeof(uint16_t);
  if (cudaError_t err = cudaMalloc(&out->x16_, scratch); err != cudaSuccess) return CudaError("cudaMalloc(x16)", err);
  return out;
}

CublasLinear::~CublasLinear() {
  if (handle_ != nullptr) api_->destroy(handle_);  // before freeing the workspace it may still use
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (x16_ != nullptr) cudaFree(x16_);
}

absl::Status CublasLinear::Run(const LinearParams& p) {
  if (absl::Status s = ValidateLinear(p); !s.ok()) return s;
  if (p.swiglu_input) {
    return absl::InvalidArgumentError("CublasLinear: swiglu_input is not supported (use LinearCuda)");
  }
  if (p.norm_weight != nullptr) {
    return absl::InvalidArgumentError("CublasLinear: a norm prologue is not supported (run RmsNormCuda first)");
  }
  if (p.conv.n != 0) {
    return absl::InvalidArgumentError(
        "CublasLinear: a conv epilogue is not supported (run ConvUpdateBatchCuda after it, or use LinearCuda)");
  }
  if (p.kv.t != 0) {
    return absl::InvalidArgumentError(
        "CublasLinear: a kv epilogue is not supported (run KvAppendCuda after it, or use LinearCuda)");
  }
  if (p.m == 0) return absl::OkStatus();
  const int64_t n = p.w.rows;
  const int64_t k = p.w.cols;
  if (!FitsInt(n) || !FitsInt(k) || !FitsInt(p.m) || !FitsInt(p.ldx) || !FitsInt(p.ldy)) {
    return absl::InvalidArgumentError(absl::StrCat("CublasLinear: m = ", p.m, ", n = ", n, ", k = ", k,
                                                   ", ldx = ", p.ldx, ", ldy = ", p.ldy,
                                                   ": every dimension and stride must fit in int"));
  }
  const float alpha = p.scale;
  const float beta = p.accumulate ? 1.0f : 0.0f;
  const void* b = p.x;
  int64_t ldb = p.ldx;
  cudaDataType_t ab_type = CUDA_R_32F;
  if (p.x16 != nullptr) {  // rounded already by x's producer (ValidateLinear: 16-bit weights)
    b = p.x16;
    ldb = p.ldx16;
    ab_type = p.w.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  } else if (p.w.dtype != DType::kF32) {
    if (p.m * k > max_x_elems_) {
      return absl::InvalidArgumentError(absl::StrCat("CublasLinear: m * k = ", p.m * k,
                                                     " exceeds the x scratch of max_x_elems = ", max_x_elems_));
    }
    if (absl::Status s = cuda::CastRowsToHalfCuda(p.x, p.ldx, p.m, k, p.w.dtype, x16_, stream_); !s.ok()) return s;
    b = x16_;
    ldb = k;
    ab_type = p.w.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  }
  // Column-major: C[n, m] = op(A)[n, k] · B[k, m] with A = W as column-major [k, n] (ld k), B = x (ld ldb).
  const cublasStatus_t st =
      api_->gemm_ex(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(p.m), static_cast<int>(k),
                   &alpha, p.w.data, ab_type, static_cast<int>(k), b, ab_type, static_cast<int>(ldb), &beta, p.y,
                   CUDA_R_32F, static_cast<int>(p.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) return CublasError(api_, "cublasGemmEx", st);
  return absl::OkStatus();
}

}  // namespace quarry
