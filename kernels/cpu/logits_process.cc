// LogitsAdjustCpu and LogprobsCpu: the references of the CUDA logits processors (kernels/logits_process.h).
#include "kernels/logits_process.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

absl::Status CheckShape(const char* op, const void* logits, int64_t ld, int64_t rows, int64_t cols) {
  if (rows < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": rows must be non-negative, got ", rows));
  if (cols <= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": cols must be positive, got ", cols));
  if (cols > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": cols = ", cols, " exceeds the int32 token id range"));
  }
  if (rows > 0 && logits == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": logits is null"));
  if (ld < cols) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": row stride ld = ", ld, " is smaller than cols = ", cols));
  }
  return absl::OkStatus();
}

// (a, ia) ranks before (b, ib): larger value first, NaN last, ties by lower index.
bool RanksBefore(float a, int32_t ia, float b, int32_t ib) {
  const bool an = std::isnan(a), bn = std::isnan(b);
  if (an != bn) return bn;
  if (!an && a != b) return a > b;
  return ia < ib;
}

}  // namespace

absl::Status ValidateLogitsAdjust(const LogitsAdjustParams& p) {
  constexpr const char* kOp = "LogitsAdjust";
  if (absl::Status s = CheckShape(kOp, p.logits, p.ld, p.rows, p.cols); !s.ok()) return s;
  if (p.adjust != nullptr && p.adjust_offsets == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": adjust is set but adjust_offsets is null"));
  }
  if (p.ban != nullptr && p.ban_offsets == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": ban is set but ban_offsets is null"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLogitAdjustRows(int64_t rows, int64_t cols, const int32_t* adjust_offsets,
                                     const LogitAdjust* adjust, const int32_t* ban_offsets, const int32_t* ban) {
  constexpr const char* kOp = "LogitsAdjust";
  auto check_offsets = [&](const char* what, const int32_t* off, const void* entries) -> absl::Status {
    if (off == nullptr) return absl::OkStatus();
    if (off[0] != 0) return absl::InvalidArgumentError(absl::StrCat(kOp, ": ", what, "_offsets[0] = ", off[0], ", not 0"));
    for (int64_t r = 0; r < rows; ++r) {
      if (off[r + 1] < off[r]) {
        return absl::InvalidArgumentError(
            absl::StrCat(kOp, ": ", what, "_offsets decrease at row ", r, " (", off[r], " -> ", off[r + 1], ")"));
      }
    }
    if (off[rows] > 0 && entries == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": ", off[rows], " ", what, " entries but ", what, " is null"));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = check_offsets("adjust", adjust_offsets, adjust); !s.ok()) return s;
  if (absl::Status s = check_offsets("ban", ban_offsets, ban); !s.ok()) return s;
  // Uniqueness by a per-thread vocabulary bitmap, cleared again entry by entry: O(entries) per call (this runs
  // on every sampling step, and a repetition penalty over a long prompt has thousands of entries per row).
  thread_local std::vector<uint8_t> seen;
  if (static_cast<int64_t>(seen.size()) < cols) seen.assign(static_cast<size_t>(cols), 0);
  auto clear = [&](int64_t r, int32_t upto) {
    for (int32_t e = adjust_offsets[r]; e < upto; ++e) seen[adjust[e].token] = 0;
  };
  for (int64_t r = 0; adjust_offsets != nullptr && r < rows; ++r) {
    for (int32_t e = adjust_offsets[r]; e < adjust_offsets[r + 1]; ++e) {
      const LogitAdjust& a = adjust[e];
      if (a.token < 0 || a.token >= cols) {
        clear(r, e);
        return absl::InvalidArgumentError(
            absl::StrCat(kOp, ": row ", r, " adjusts token ", a.token, ", outside [0, ", cols, ")"));
      }
      if (seen[a.token] != 0) {
        clear(r, e);
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": row ", r, " adjusts token ", a.token, " twice"));
      }
      seen[a.token] = 1;
      if (!std::isfinite(a.bias) || !std::isfinite(a.subtract) || !std::isfinite(a.repetition) ||
          !(a.repetition > 0.0f)) {
        clear(r, e + 1);
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": row ", r, " token ", a.token, ": bias ", a.bias,
                                                       ", repetition ", a.repetition, ", subtract ", a.subtract,
                                                       " (finite, repetition > 0)"));
      }
    }
    clear(r, adjust_offsets[r + 1]);
  }
  for (int64_t r = 0; ban_offsets != nullptr && r < rows; ++r) {
    for (int32_t e = ban_offsets[r]; e < ban_offsets[r + 1]; ++e) {
      if (ban[e] < 0 || ban[e] >= cols) {
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": row ", r, " bans token ", ban[e], ", outside [0, ", cols, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LogitsAdjustCpu(const LogitsAdjustParams& p) {
  if (absl::Status s = ValidateLogitsAdjust(p); !s.ok()) return s;
  if (absl::Status s = ValidateLogitAdjustRows(p.rows, p.cols, p.adjust_offsets, p.adjust, p.ban_offsets, p.ban);
      !s.ok()) {
    return s;
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    float* x = p.logits + r * p.ld;
    for (int32_t e = p.adjust_offsets ? p.adjust_offsets[r] : 0; p.adjust_offsets && e < p.adjust_offsets[r + 1]; ++e) {
      const LogitAdjust& a = p.adjust[e];
      float v = x[a.token] + a.bias;
      if (a.repetition != 1.0f) v = v > 0 ? v / a.repetition : v * a.repetition;
      x[a.token] = v - a.subtract;
    }
    for (int32_t e = p.ban_offsets ? p.ban_offsets[r] : 0; p.ban_offsets && e < p.ban_offsets[r + 1]; ++e) {
      x[p.ban[e]] = -std::numeric_limits<float>::infinity();
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLogprobs(const LogprobsParams& p) {
  constexpr const char* kOp = "Logprobs";
  if (absl::Status s = CheckShape(kOp, p.logits, p.ld, p.rows, p.cols); !s.ok()) return s;
  if (p.top_n < 0 || p.top_n > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": top_n = ", p.top_n, " is outside [0, ", kMaxTopLogprobs, "]"));
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.tokens == nullptr) return absl::InvalidArgumentError(absl::StrCat(kOp, ": tokens is null"));
  if (p.chosen_logprob == nullptr) return absl::InvalidArgumentError(absl::StrCat(kOp, ": chosen_logprob is null"));
  if (p.top_n > 0 && (p.top_ids == nullptr || p.top_logprobs == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": top_n = ", p.top_n, " but top_ids or top_logprobs is null"));
  }
  return absl::OkStatus();
}

absl::Status LogprobsCpu(const LogprobsParams& p) {
  if (absl::Status s = ValidateLogprobs(p); !s.ok()) return s;
  std::vector<int32_t> order;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.logits + r * p.ld;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < p.cols; ++c) {
      if (x[c] > m) m = x[c];  // NaN never compares greater
    }
    float lse = m;
    if (std::isfinite(m)) {
      double sum = 0;
      for (int64_t c = 0; c < p.cols; ++c) sum += std::exp(static_cast<double>(x[c] - m));
      lse = m + static_cast<float>(std::log(sum));
    }
    const int32_t tok = p.tokens[p.token_index ? p.token_index[r] : r];
    p.chosen_logprob[r] = tok >= 0 && tok < p.cols ? x[tok] - lse : std::numeric_limits<float>::quiet_NaN();
    if (p.top_n == 0) continue;
    order.resize(p.cols);
    for (int32_t c = 0; c < p.cols; ++c) order[c] = c;
    const int64_t k = std::min<int64_t>(p.top_n, p.cols);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return RanksBefore(x[a], a, x[b], b); });
    for (int64_t j = 0; j < p.top_n; ++j) {
      const bool have = j < k;
      p.top_ids[r * p.top_n + j] = have ? order[j] : -1;
      p.top_logprobs[r * p.top_n + j] = have ? x[order[j]] - lse : -std::numeric_limits<float>::infinity();
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
