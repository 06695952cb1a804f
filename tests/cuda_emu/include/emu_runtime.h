// Quarry CUDA emulator (tests/cuda_emu): the execution engine behind the fake CUDA headers.
//
// A launch runs its blocks one after another on the calling OS thread. Inside a block every CUDA thread is a
// fiber (ucontext: makecontext / swapcontext) that runs until it blocks at __syncthreads or a warp-wide
// intrinsic; the last thread to arrive completes the operation (computes every lane's result) and releases
// the others. Whatever cannot complete is a bug in the kernel and aborts with a message (see README.md):
// a barrier or warp intrinsic reached by only part of the block / warp, or from different call sites, lanes
// that disagree on the mask, a collective waiting for an exited lane, bad launch dimensions, too much shared
// memory. Static __shared__ variables (rewritten by convert_cu.py) and dynamic shared memory live in a
// per-block arena filled with 0xFF bytes (NaN as float, -1 as int) before every block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

namespace emu {

using Loc = std::source_location;

// Prints "EMU FAILURE: <message>", the kernel / block / thread being run, and aborts.
[[noreturn]] void Fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- Warp-wide operations ----

// One lane's operands and result of a warp-wide operation.
struct LaneSlot {
  uint64_t value = 0;         // the lane's operand bits (shuffles, votes, match, reduce)
  int64_t aux = 0;            // source lane (shuffles), pointer-sized payload of WMMA ops, ...
  const void* ptr = nullptr;  // operation-specific per-lane data (WMMA: the lane's arguments)
  uint64_t out = 0;           // the result, written by the completer
};

// Runs once, in the last-arriving lane, when every lane of `mask` has arrived: reads lanes[l] (nullptr for
// lanes outside the mask) and writes their `out`. May call Fail.
using Completer = void (*)(const char* name, unsigned mask, LaneSlot* const* lanes);

// The calling lane arrives at warp-wide operation `name` (completed by `fn`) with `mask`; returns the lane's
// result once every lane of `mask` has arrived at the same operation from the same source location.
uint64_t WarpOp(const char* name, Completer fn, unsigned mask, const LaneSlot& in, const Loc& loc);

// Block barrier: kind 0 = __syncthreads, 1 = count, 2 = and, 3 = or (of `pred`); returns the result.
int BlockBarrier(const char* name, int kind, int pred, const Loc& loc);

// The current thread's linear index in its block, lane and warp.
extern unsigned g_tid;
inline unsigned LaneId() { return g_tid & 31u; }
inline unsigned WarpId() { return g_tid >> 5; }

// True while a kernel thread is running (device code); false on the host.
bool InKernel();

// ---- Shared memory ----

extern uint64_t g_block_serial;     // changes with every block run
extern unsigned char* g_static_smem;  // the block's static __shared__ arena
// Places a static __shared__ variable of `size` bytes in the current block's arena (first use in the block).
size_t SharedAllocate(size_t size, size_t align, const char* name);
void* DynamicSharedBase(size_t align, const char* type);

// One static `__shared__ T name;` (T may be an array type); convert_cu.py emits a function-local static.
template <typename T, size_t Align>
class SharedVar {
 public:
  T& Get(const char* name) {
    if (serial_ != g_block_serial) {
      offset_ = SharedAllocate(sizeof(T), Align != 0 ? Align : alignof(std::remove_all_extents_t<T>), name);
      serial_ = g_block_serial;
    }
    return *reinterpret_cast<T*>(g_static_smem + offset_);
  }

 private:
  uint64_t serial_ = ~uint64_t{0};
  size_t offset_ = 0;
};

// `extern __shared__ T name[];`
template <typename T, size_t Align>
T* DynamicShared(const char* type) {
  return static_cast<T*>(DynamicSharedBase(Align != 0 ? Align : alignof(T), type));
}

// __launch_bounds__(max_threads[, min_blocks[, max_blocks_per_cluster]]) of the running kernel.
void CheckLaunchBounds(long long max_threads, long long min_blocks = 0, long long max_cluster = 0);

// ---- Launches ----

struct LaunchSpec {
  const char* name;   // the kernel expression as written in the .cu source
  const void* func;   // the kernel's address (cudaFuncSetAttribute key)
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  Loc loc;  // the launch in the .cu source
};

// Runs the grid now, or records it into the graph of the capturing `spec.stream`. `body` runs one thread.
void Submit(const LaunchSpec& spec, std::function<void()> body);

template <typename... P>
class Launcher {
 public:
  Launcher(const LaunchSpec& spec, void (*fn)(P...)) : spec_(spec), fn_(fn) {}

  // Arguments are converted to the kernel's parameter types and copied once (as cudaLaunchKernel does);
  // every thread gets its own copy of the parameters.
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "wrong number of kernel arguments");
    auto params = std::make_shared<const std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    void (*fn)(P...) = fn_;
    Submit(spec_, [fn, params] { std::apply(fn, *params); });
  }

 private:
  LaunchSpec spec_;
  void (*fn_)(P...);
};

// `kernel<<<grid, block, smem, stream>>>(args)` becomes `::emu::Launch("kernel", kernel, grid, block, smem,
// stream)(args)` (convert_cu.py).
template <typename... P>
Launcher<P...> Launch(const char* name, void (*fn)(P...), dim3 grid, dim3 block, size_t smem = 0,
                      cudaStream_t stream = nullptr, const Loc& loc = Loc::current()) {
  return Launcher<P...>(LaunchSpec{name, reinterpret_cast<const void*>(fn), grid, block, smem, stream, loc}, fn);
}

}  // namespace emu
