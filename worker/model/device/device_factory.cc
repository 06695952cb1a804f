// CreateDeviceOps: "host" always, "cuda" when this build has CUDA.
#include "worker/model/device/device_factory.h"

#include "absl/strings/str_cat.h"
#include "worker/model/device/host_device_ops.h"
#ifdef QUARRY_HAVE_CUDA
#include "worker/model/device/cuda_device_ops.h"
#endif

namespace quarry {

bool CudaCompiledIn() {
#ifdef QUARRY_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<DeviceOps>> CreateDeviceOps(const DeviceOpsRequest& r) {
  if (r.kind == "host") return CreateHostDeviceOps();
  if (r.kind != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("unknown device backend '", r.kind, "' (expected cuda or host)"));
  }
#ifdef QUARRY_HAVE_CUDA
  CudaDeviceOptions o;
  o.device = r.device;
  o.max_gemm_input_elems = r.max_gemm_input_elems;
  return CreateCudaDeviceOps(o);
#else
  return absl::UnimplementedError(
      "--device cuda: this build of Quarry has no CUDA support (configure with -DQUARRY_CUDA=ON and the CUDA "
      "toolkit installed)");
#endif
}

}  // namespace quarry
