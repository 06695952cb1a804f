// Backend selection by name: "cuda" (a GPU; only in builds with CUDA) or "host" (the CPU references).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/model/device/device_ops.h"

namespace quarry {

struct DeviceOpsRequest {
  std::string kind = "cuda";         // "cuda" | "host"
  int device = 0;                    // CUDA device ordinal
  int64_t max_gemm_input_elems = 0;  // cuBLAS staging (DeviceModelGemmInputElems)
};

// UNIMPLEMENTED naming the build when CUDA was not compiled in; FAILED_PRECONDITION without a usable GPU.
absl::StatusOr<std::unique_ptr<DeviceOps>> CreateDeviceOps(const DeviceOpsRequest& request);
bool CudaCompiledIn();

}  // namespace quarry
