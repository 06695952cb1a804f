// CausalConv1dCpu (prefill chunk) and CausalConv1dUpdateCpu (one decode token) of the Mamba2 mixer.
#include "kernels/conv1d.h"
#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelMacs = 1 << 16;

inline float Activate(float v, bool silu) { return silu ? v / (1.0f + std::exp(-v)) : v; }

constexpr int64_t kChannelBlock = 256;

// Channels [c0, c1) over all t tokens, token-major so the inner loop runs over contiguous channels.
// The virtual input sequence is xs = state[0:k-1] ++ x[0:t] and out[i] uses xs[i : i+k]; afterwards the
// state holds xs[t : t+k-1].
void ChannelBlock(const CausalConv1dParams& p, int64_t c0, int64_t c1) {
  const int64_t k = p.k;
  const int64_t hist = k - 1;
  const int64_t w = c1 - c0;
  std::vector<float> wt(k * w);      // [k, w] transposed taps
  std::vector<float> st(hist * w);   // [k-1, w] transposed state (oldest first)
  for (int64_t c = 0; c < w; ++c) {
    for (int64_t j = 0; j < k; ++j) wt[j * w + c] = p.weight[(c0 + c) * k + j];
    for (int64_t j = 0; j < hist; ++j) st[j * w + c] = p.state[(c0 + c) * hist + j];
  }
  // Row r of xs restricted to the block: r < hist reads the state, otherwise x[r - hist].
  auto row = [&](int64_t r) -> const float* { return r < hist ? st.data() + r * w : p.x + (r - hist) * p.ldx + c0; };
  for (int64_t i = 0; i < p.t; ++i) {
    float* y = p.y + i * p.ldy + c0;  // [w]
    if (p.bias != nullptr) {
      std::copy(p.bias + c0, p.bias + c1, y);
    } else {
      std::fill(y, y + w, 0.0f);
    }
    for (int64_t j = 0; j < k; ++j) {
      const float* src = row(i + j);
      const float* tap = wt.data() + j * w;
#pragma omp simd
      for (int64_t c = 0; c < w; ++c) y[c] += tap[c] * src[c];
    }
    if (p.silu) cpu::SiluInPlace(y, w);
  }
  for (int64_t j = 0; j < hist; ++j) {
    const float* src = row(p.t + j);
    for (int64_t c = 0; c < w; ++c) p.state[(c0 + c) * hist + j] = src[c];
  }
}

}  // namespace

absl::Status CausalConv1dCpu(const CausalConv1dParams& p) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  const bool parallel = p.t * p.c * p.k >= kMinParallelMacs;
  const int64_t blocks = (p.c + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) ChannelBlock(p, b * kChannelBlock, std::min(p.c, (b + 1) * kChannelBlock));
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
