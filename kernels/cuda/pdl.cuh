// Programmatic dependent launch (Hopper), used by the decode chain: the GEMVs (which prefetch their weight rows
// into L2 before waiting), the expert GEMVs, the norms, the Mamba conv / SSD updates and the routing kernel.
// A kernel launched with LaunchDependent may start while the kernel
// before it on the stream is still finishing (once that one has called TriggerDependents or exited), run the
// prologue that needs none of the predecessor's results (index math, L2 prefetch of its weights), and then
// wait in WaitForPredecessor until the predecessor has completed and its writes are visible. Off by default
// (SetProgrammaticLaunch, `--pdl`); off, LaunchDependent is an ordinary launch and the two calls are no-ops
// in effect (nothing to wait for, no dependent to release).
//
// Rules that keep it correct: a kernel launched with LaunchDependent calls WaitForPredecessor before reading
// any activation or writing anything (only immutable weights, and the step's metadata uploaded before its first
// kernel, such as the per-sequence state pointer arrays, may be read before it); TriggerDependents may be called
// anywhere (it releases the launch of the next kernel, whose own wait still orders memory).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>

#include "kernels/cuda_ops.h"

namespace quarry::cuda {

__device__ __forceinline__ void WaitForPredecessor() {
#if defined(QUARRY_CUDA_EMULATOR)
  // One grid runs at a time in the emulator: the predecessor has finished.
#else
  cudaGridDependencySynchronize();
#endif
}

__device__ __forceinline__ void TriggerDependents() {
#if !defined(QUARRY_CUDA_EMULATOR)
  cudaTriggerProgrammaticLaunchCompletion();
#endif
}

// Hints the 128-byte line at `p` into L2 (no register, no fault on any mapped address; a no-op emulated).
__device__ __forceinline__ void PrefetchL2(const void* p) {
#if !defined(QUARRY_CUDA_EMULATOR)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

// kernel<<<grid, block, 0, stream>>>(args...), with programmatic stream serialization when enabled.
template <typename... Params, typename... Args>
void LaunchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
#if !defined(QUARRY_CUDA_EMULATOR)
  if (ProgrammaticLaunch()) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attr;
    config.numAttrs = 1;
    cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    return;
  }
#endif
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
}

}  // namespace quarry::cuda
