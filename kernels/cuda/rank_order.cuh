// The ranking shared by the token-selection kernels (argmax, sampling, top logprobs): a number beats NaN;
// between numbers the larger wins; equal values (or two NaNs) go to the lower index. Index -1 = no candidate.
#pragma once

#include <cstdint>

namespace quarry {

// True when candidate (av, ai) ranks before (bv, bi).
__device__ __forceinline__ bool Beats(float av, int32_t ai, float bv, int32_t bi) {
  if (ai < 0) return false;
  if (bi < 0) return true;
  const bool a_nan = isnan(av);
  const bool b_nan = isnan(bv);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && av != bv) return av > bv;
  return ai < bi;
}

}  // namespace quarry
