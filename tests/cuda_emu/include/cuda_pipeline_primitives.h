// Quarry CUDA emulator (tests/cuda_emu): the asynchronous global -> shared copy primitives of CUDA's
// <cuda_pipeline_primitives.h> (cp.async): __pipeline_memcpy_async, __pipeline_commit, __pipeline_wait_prior.
//
// Model: a copy reads its source when it is issued but writes its shared destination only when a
// __pipeline_wait_prior of the issuing thread covers its batch, so a kernel that reads a stage before waiting
// for it (or before the barrier after the wait) reads stale shared memory and fails its parity test, as it could
// on a GPU. Per thread: copies since the last commit form the open batch; __pipeline_commit closes it (empty
// batches count); __pipeline_wait_prior(n) completes every committed batch but the n most recent. Pending copies
// of a finished block are dropped (its shared memory is gone). Checks: size 4, 8 or 16; both addresses aligned
// to it; zfill <= size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "emu_device.h"

namespace emu {

struct AsyncCopy {
  void* dst;
  unsigned char bytes[16];
  size_t size;
};

struct ThreadPipeline {
  std::vector<AsyncCopy> open;
  std::deque<std::vector<AsyncCopy>> committed;
};

// The calling CUDA thread's pipeline, reset when a new block starts.
inline ThreadPipeline& CurrentPipeline() {
  static std::vector<ThreadPipeline> threads;
  static uint64_t serial = ~uint64_t{0};
  if (serial != g_block_serial) {
    threads.assign(1024, ThreadPipeline{});
    serial = g_block_serial;
  }
  return threads.at(g_tid);
}

}  // namespace emu

inline void __pipeline_memcpy_async(void* dst_shared, const void* src_global, size_t size_and_align,
                                    size_t zfill = 0) {
  if (size_and_align != 4 && size_and_align != 8 && size_and_align != 16) {
    emu::Fail("__pipeline_memcpy_async: size %zu is not 4, 8 or 16", size_and_align);
  }
  if (reinterpret_cast<uintptr_t>(dst_shared) % size_and_align != 0 ||
      reinterpret_cast<uintptr_t>(src_global) % size_and_align != 0) {
    emu::Fail("__pipeline_memcpy_async: addresses %p / %p are not %zu-byte aligned", dst_shared, src_global,
              size_and_align);
  }
  if (zfill > size_and_align) emu::Fail("__pipeline_memcpy_async: zfill %zu exceeds size %zu", zfill, size_and_align);
  emu::AsyncCopy c{};
  c.dst = dst_shared;
  c.size = size_and_align;
  std::memcpy(c.bytes, src_global, size_and_align - zfill);  // the rest stays zero
  emu::CurrentPipeline().open.push_back(c);
}

inline void __pipeline_commit() {
  emu::ThreadPipeline& p = emu::CurrentPipeline();
  p.committed.push_back(std::move(p.open));
  p.open.clear();
}

inline void __pipeline_wait_prior(size_t prior) {
  emu::ThreadPipeline& p = emu::CurrentPipeline();
  while (p.committed.size() > prior) {
    for (const emu::AsyncCopy& c : p.committed.front()) std::memcpy(c.dst, c.bytes, c.size);
    p.committed.pop_front();
  }
}
