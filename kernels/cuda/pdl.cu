// The process-wide switch of programmatic dependent launch (kernels/cuda/pdl.cuh).
#include <atomic>

#include "kernels/cuda_ops.h"

namespace quarry {
namespace {
std::atomic<bool> g_programmatic_launch{false};
}  // namespace

void SetProgrammaticLaunch(bool on) { g_programmatic_launch.store(on, std::memory_order_relaxed); }
bool ProgrammaticLaunch() { return g_programmatic_launch.load(std::memory_order_relaxed); }

}  // namespace quarry
