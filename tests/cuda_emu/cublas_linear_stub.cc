// Quarry CUDA emulator (tests/cuda_emu): cuBLAS is not emulated. These definitions only satisfy the linker for
// the parity tests that mention CublasLinear; every call reports UNIMPLEMENTED, and those tests are left out
// of the emulated run by its default filter (tests/cuda_emu/CMakeLists.txt).
#include "kernels/cuda/cublas_linear.h"

namespace quarry {

absl::StatusOr<std::unique_ptr<CublasLinear>> CublasLinear::Create(cudaStream_t, int64_t) {
  return absl::UnimplementedError("CublasLinear: cuBLAS is not emulated by the CUDA emulator (tests/cuda_emu)");
}

CublasLinear::~CublasLinear() = default;

absl::Status CublasLinear::Run(const LinearParams&) {
  return absl::UnimplementedError("CublasLinear: cuBLAS is not emulated by the CUDA emulator (tests/cuda_emu)");
}

}  // namespace quarry
