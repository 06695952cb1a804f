// Which expert a block row of a grouped product works on: the experts that have rows, taken in ascending id
// order by block rows y, y + gridDim.y, ... (GroupedLinearCuda's GEMV in kernels/cuda/moe_grouped.cu and
// GroupedTcSmallCuda in kernels/cuda/grouped_tc_small.cu). The offsets never leave the device.
#pragma once

#include <cstdint>

namespace quarry::cuda {

// Lane `lane`'s expert of the 32 from `base`: its rows [*b, *en) clamped to [0, max_rows] (empty past `experts`).
__device__ __forceinline__ void LaneExpertRows(const int32_t* offsets, int64_t experts, int64_t max_rows,
                                               int64_t base, int lane, int64_t* b, int64_t* en) {
  const int64_t mine = base + lane;
  *b = 0, *en = 0;
  if (mine < experts) {
    *b = offsets[mine];
    *en = offsets[mine + 1];
    if (*b < 0) *b = 0;
    if (*en > max_rows) *en = max_rows;  // never write past y's capacity
  }
}

// The target-th (0-based, ascending id) of the experts that have rows: *e and its rows [*begin, *end), clamped to
// [0, max_rows) whatever the offsets say; false when fewer experts have rows. Scans the offsets 32 experts at a
// time (ballot of the non-empty ones, then the lane whose rank among them is the target's), the next 32's
// offsets loaded before this 32's ballots (64 experts: one memory round trip, not two in a row). Every lane of
// the warp calls it and gets the same answer.
__device__ __forceinline__ bool NthBusyExpert(const int32_t* offsets, int64_t experts, int64_t max_rows,
                                              int64_t target, int lane, int64_t* e, int64_t* begin, int64_t* end) {
  int64_t left = target;
  int64_t b = 0, en = 0;
  LaneExpertRows(offsets, experts, max_rows, 0, lane, &b, &en);
  for (int64_t base = 0; base < experts; base += 32) {  // warp-uniform
    int64_t nb = 0, nen = 0;  // the next 32 experts', in flight during this chunk's ballots
    if (base + 32 < experts) LaneExpertRows(offsets, experts, max_rows, base + 32, lane, &nb, &nen);
    const bool busy = en > b;
    const unsigned act = __ballot_sync(0xffffffffu, busy);
    const int count = __popc(act);
    if (left < count) {
      const int rank = __popc(act & ((1u << lane) - 1u));
      const unsigned hit = __ballot_sync(0xffffffffu, busy && rank == left);
      const int l = __ffs(static_cast<int>(hit)) - 1;
      *e = base + l;
      *begin = __shfl_sync(0xffffffffu, b, l);
      *end = __shfl_sync(0xffffffffu, en, l);
      return true;
    }
    left -= count;
    b = nb, en = nen;
  }
  return false;
}

}  // namespace quarry::cuda
