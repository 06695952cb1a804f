// CausalConv1dCpu (prefill chunk) and CausalConv1dUpdateCpu (one decode token) of the Mamba2 mixer.
#include "kernels/conv1d.h"

#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelMacs = 1 << 16;

inline float Activate(float v, bool silu) { return silu ? v / (1.0f + std::exp(-v)) : v; }

// One channel over all t tokens; then shifts the channel's state. The virtual input sequence is
// xs = state[0:k-1] ++ x[0:t], and out[i] uses xs[i : i+k].
void Channel(const CausalConv1dParams& p, int64_t ch) {
  const int64_t k = p.k;
  const int64_t hist = k - 1;
  const float* w = p.weight + ch * k;  // [k]
  float* st = hist > 0 ? p.state + ch * hist : nullptr;  // [k-1]
  const float bias = p.bias != nullptr ? p.bias[ch] : 0.0f;
  for (int64_t i = 0; i < p.t; ++i) {
    float acc = bias;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t src = i + j - hist;  // index into x; < 0 reads the state
      const float v = src < 0 ? st[hist + src] : p.x[src * p.ldx + ch];
      acc += w[j] * v;
    }
    p.y[i * p.ldy + ch] = Activate(acc, p.silu);
  }
  // New state[j] = xs[t + j]; reading ahead of j keeps the in-place shift safe.
  for (int64_t j = 0; j < hist; ++j) {
    const int64_t src = p.t + j - hist;
    st[j] = src < 0 ? st[p.t + j] : p.x[src * p.ldx + ch];
  }
}

}  // namespace

absl::Status CausalConv1dCpu(const CausalConv1dParams& p) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  const bool parallel = p.t * p.c * p.k >= kMinParallelMacs;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t ch = 0; ch < p.c; ++ch) Channel(p, ch);
  return absl::OkStatus();
}

absl::Status CausalConv1dUpdateCpu(const CausalConv1dParams& p) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t != 1) {
    return absl::InvalidArgumentError(absl::StrCat("CausalConv1dUpdate: t must be 1 (one decode token), got ", p.t));
  }
  const int64_t k = p.k;
  const int64_t hist = k - 1;
  for (int64_t ch = 0; ch < p.c; ++ch) {
    const float* w = p.weight + ch * k;
    float* st = p.state + ch * hist;
    const float xin = p.x[ch];
    float acc = p.bias != nullptr ? p.bias[ch] : 0.0f;
    for (int64_t j = 0; j < hist; ++j) acc += w[j] * st[j];
    acc += w[hist] * xin;
    p.y[ch] = Activate(acc, p.silu);
    for (int64_t j = 0; j + 1 < hist; ++j) st[j] = st[j + 1];
    if (hist > 0) st[hist - 1] = xin;
  }
  return absl::OkStatus();
}

}  // namespace quarry
