// ArgmaxCpu: greedy token selection over logits rows (the reference of ArgmaxCuda).
// SampleCpu: per-row temperature / top-k / top-p / min-p sampling (the reference of SampleCuda), following the
// steps of kernels/sampling.h literally: the thresholds come from a descending sort of the row's weights.
//
// Shared conventions with SampleCuda (both use kernels/philox.h, so the weights are the same bits):
//   * w = SamplerWeight(x, m, 1 / T): NaN -> 0, x == m -> 1, else SamplerExp((x - m) * (1 / T)), which is 0
//     below an argument of -86. Tokens of weight 0 are never in K, P or F (every threshold is >= FLT_MIN).
//   * An all-NaN row yields 0 whatever T is (as the argmax).
//   * Sums of weights are accumulated in double; u * sum_F w is formed in double.
#include "kernels/sampling.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/philox.h"

namespace quarry {

absl::Status ArgmaxCpu(const ArgmaxParams& p) {
  if (absl::Status s = ValidateArgmax(p); !s.ok()) return s;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.ldx;
    int64_t best = -1;
    for (int64_t c = 0; c < p.cols; ++c) {
      if (std::isnan(x[c])) continue;
      if (best < 0 || x[c] > x[best]) best = c;
    }
    p.out[r] = static_cast<int32_t>(best < 0 ? 0 : best);
  }
  return absl::OkStatus();
}

absl::Status ValidateSample(const SampleParams& p) {
  constexpr const char* kOp = "Sample";
  if (p.rows < 0) return absl::InvalidArgumentError(absl::StrCat(kOp, ": rows must be non-negative, got ", p.rows));
  if (p.cols <= 0) return absl::InvalidArgumentError(absl::StrCat(kOp, ": cols must be positive, got ", p.cols));
  if (p.rows == 0) return absl::OkStatus();
  if (p.logits == nullptr) return absl::InvalidArgumentError(absl::StrCat(kOp, ": logits is null"));
  if (p.row_params == nullptr) return absl::InvalidArgumentError(absl::StrCat(kOp, ": row_params is null"));
  if (p.out == nullptr) return absl::InvalidArgumentError(absl::StrCat(kOp, ": out is null"));
  if (p.ld < p.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": row stride ld = ", p.ld, " is smaller than the row width ", p.cols));
  }
  return absl::OkStatus();
}

absl::Status ValidateSampleRow(const SampleRowParams& r) {
  constexpr const char* kOp = "Sample";
  if (!std::isfinite(r.temperature) || r.temperature < 0.0f || r.temperature > 100.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": temperature must be finite and in [0, 100], got ", r.temperature));
  }
  if (r.top_k < 0) return absl::InvalidArgumentError(absl::StrCat(kOp, ": top_k must be >= 0, got ", r.top_k));
  if (!(r.top_p > 0.0f && r.top_p <= 1.0f)) {  // NaN fails too
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": top_p must be in (0, 1], got ", r.top_p));
  }
  if (!(r.min_p >= 0.0f && r.min_p < 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": min_p must be in [0, 1), got ", r.min_p));
  }
  return absl::OkStatus();
}

namespace {

// One row with T > 0 (parameters validated).
int32_t SampleRow(const float* x, int64_t cols, const SampleRowParams& rp) {
  float m = 0.0f;
  bool any = false;
  for (int64_t c = 0; c < cols; ++c) {
    if (std::isnan(x[c])) continue;
    if (!any || x[c] > m) m = x[c];
    any = true;
  }
  if (!any) return 0;  // all NaN

  const float inv_t = SamplerInvTemperature(rp.temperature);
  std::vector<float> w(static_cast<size_t>(cols));
  std::vector<float> sorted;  // the positive weights, descending
  sorted.reserve(w.size());
  for (int64_t c = 0; c < cols; ++c) {
    w[c] = SamplerWeight(x[c], m, inv_t);
    if (w[c] > 0.0f) sorted.push_back(w[c]);
  }
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const int64_t positive = static_cast<int64_t>(sorted.size());  // >= 1: the maximum has weight 1

  // K: t_k = the top_k-th largest w (ties at t_k all kept); every positive weight when top_k is off or
  // larger than the number of positive weights.
  float t = FLT_MIN;
  if (rp.top_k > 0 && rp.top_k < cols && rp.top_k <= positive) t = sorted[rp.top_k - 1];

  // P: the largest v among the w of K whose mass sum_{K, w >= v} w reaches top_p of K's mass.
  if (rp.top_p < 1.0f) {
    double mass_k = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      if (w[c] >= t) mass_k += w[c];
    }
    const double target = static_cast<double>(rp.top_p) * mass_k;
    double mass = 0.0;
    for (int64_t i = 0; i < positive && sorted[i] >= t;) {
      const float v = sorted[i];
      for (; i < positive && sorted[i] == v; ++i) mass += v;  // all ties of v enter together
      if (mass >= target) {
        t = v;
        break;
      }
    }
  }

  // F: min-p relative to the maximum (whose weight is 1).
  if (rp.min_p > t) t = rp.min_p;

  double mass_f = 0.0;
  int64_t last = 0;
  for (int64_t c = 0; c < cols; ++c) {
    if (w[c] >= t) {
      mass_f += w[c];
      last = c;
    }
  }
  const double target = static_cast<double>(PhiloxUniform(rp.seed, rp.step)) * mass_f;
  double running = 0.0;
  for (int64_t c = 0; c < cols; ++c) {
    if (!(w[c] >= t)) continue;
    running += w[c];
    if (running > target) return static_cast<int32_t>(c);
  }
  return static_cast<int32_t>(last);  // rounding left no index past the target
}

}  // namespace

absl::Status SampleCpu(const SampleParams& p) {
  if (absl::Status s = ValidateSample(p); !s.ok()) return s;
  for (int64_t r = 0; r < p.rows; ++r) {
    if (absl::Status s = ValidateSampleRow(p.row_params[r]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s.message(), " (row ", r, ")"));
    }
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.logits + r * p.ld;
    const SampleRowParams& rp = p.row_params[r];
    if (rp.temperature == 0.0f) {
      if (absl::Status s = ArgmaxCpu({.x = x, .ldx = p.ld, .rows = 1, .cols = p.cols, .out = p.out + r}); !s.ok()) {
        return s;
      }
      continue;
    }
    p.out[r] = SampleRow(x, p.cols, rp);
  }
  return absl::OkStatus();
}

}  // namespace quarry
