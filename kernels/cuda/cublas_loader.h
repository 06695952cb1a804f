// cuBLAS loaded at run time (dlopen) instead of linked. libcublasLt carries ~94 KB of static TLS; linked into a
// process, it makes every thread need that much more stack, and CivetWeb (the Prometheus exposer of the worker
// and router) starts its threads with ~100 KB stacks, which then fail to start ("Cannot create first worker
// thread"). A dlopen'ed library's TLS is allocated per thread on first use instead, so loading cuBLAS only
// when a GPU engine starts keeps the metrics endpoint working in CUDA builds.
#pragma once

#include <cublas_api.h>

#include "absl/status/statusor.h"

namespace quarry::cuda {

// The cuBLAS entry points Quarry uses (the _v2 symbols cublas_v2.h maps to).
struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
  cublasStatus_t (*set_pointer_mode)(cublasHandle_t, cublasPointerMode_t);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  const char* (*status_name)(cublasStatus_t);
  const char* (*status_string)(cublasStatus_t);
};

// Loads libcublas once per process (libcublas.so.13, then libcublas.so); FAILED_PRECONDITION naming the library
// and the dlerror when it is not there or lacks a symbol.
absl::StatusOr<const CublasApi*> LoadCublas();

}  // namespace quarry::cuda
