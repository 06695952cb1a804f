// LoadCublas: dlopen + dlsym once, under std::call_once.
#include "kernels/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace quarry::cuda {
namespace {

template <typename F>
bool Resolve(void* lib, const char* name, F* out, std::string* error) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    *error = absl::StrCat("libcublas has no symbol ", name);
    return false;
  }
  *out = reinterpret_cast<F>(sym);
  return true;
}

}  // namespace

absl::StatusOr<const CublasApi*> LoadCublas() {
  static CublasApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = nullptr;
    std::string tried;
    for (const char* name : {"libcublas.so.13", "libcublas.so"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      const char* why = dlerror();
      absl::StrAppend(&tried, tried.empty() ? "" : "; ", name, ": ", why != nullptr ? why : "not found");
    }
    if (lib == nullptr) {
      error = absl::StrCat("cannot load cuBLAS (", tried,
                           "); install the CUDA 13 toolkit's cuBLAS or add its directory to LD_LIBRARY_PATH");
      return;
    }
    const bool ok = Resolve(lib, "cublasCreate_v2", &api.create, &error) &&
                    Resolve(lib, "cublasDestroy_v2", &api.destroy, &error) &&
                    Resolve(lib, "cublasSetStream_v2", &api.set_stream, &error) &&
                    Resolve(lib, "cublasSetWorkspace_v2", &api.set_workspace, &error) &&
                    Resolve(lib, "cublasSetMathMode", &api.set_math_mode, &error) &&
                    Resolve(lib, "cublasSetPointerMode_v2", &api.set_pointer_mode, &error) &&
                    Resolve(lib, "cublasGemmEx", &api.gemm_ex, &error) &&
                    Resolve(lib, "cublasGetStatusName", &api.status_name, &error) &&
                    Resolve(lib, "cublasGetStatusString", &api.status_string, &error);
    if (!ok) error = absl::StrCat("cannot use cuBLAS: ", error);
  });
  if (!error.empty()) return absl::FailedPreconditionError(error);
  return &api;
}

}  // namespace quarry::cuda
