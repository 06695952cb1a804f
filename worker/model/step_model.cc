// StepModel::ForwardSample's host fallback (full logits, then the CPU references of the logits processors and
// of the sampler), its plain-parameter and greedy forms, and PackedSampleRows.
#include "worker/model/step_model.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace quarry {

absl::Status ValidateSampleRows(const SampleRow* rows, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    const SampleRow& r = rows[i];
    if (r.top_logprobs > kMaxTopLogprobs) {
      return absl::InvalidArgumentError(
          absl::StrCat("logits row ", i, ": top_logprobs = ", r.top_logprobs, " exceeds ", kMaxTopLogprobs));
    }
    const int32_t adjust_off[2] = {0, static_cast<int32_t>(r.adjust.size())};
    const int32_t ban_off[2] = {0, static_cast<int32_t>(r.ban.size())};
    if (absl::Status s = ValidateLogitAdjustRows(1, vocab, adjust_off, r.adjust.data(), ban_off, r.ban.data());
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sampling adjustments of logits row ", i, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status PackedSampleRows::Pack(const SampleRow* rows, int64_t n, const int64_t* row_of, int64_t rows_total,
                                    int64_t vocab) {
  std::vector<const SampleRow*> by_row(static_cast<size_t>(rows_total), nullptr);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = row_of ? row_of[i] : i;
    if (r < 0 || r >= rows_total) {
      return absl::InternalError(absl::StrCat("sample row ", i, " maps to logits row ", r, " of ", rows_total));
    }
    by_row[r] = &rows[i];
    if (rows[i].top_logprobs > kMaxTopLogprobs) {
      return absl::InvalidArgumentError(
          absl::StrCat("logits row ", i, ": top_logprobs = ", rows[i].top_logprobs, " exceeds ", kMaxTopLogprobs));
    }
  }
  adjust_offsets.assign(1, 0);
  ban_offsets.assign(1, 0);
  adjust.clear();
  ban.clear();
  logprob_rows.clear();
  max_top_logprobs = 0;
  for (int64_t r = 0; r < rows_total; ++r) {
    if (const SampleRow* s = by_row[r]) {
      adjust.insert(adjust.end(), s->adjust.begin(), s->adjust.end());
      ban.insert(ban.end(), s->ban.begin(), s->ban.end());
      if (s->top_logprobs >= 0) {
        logprob_rows.push_back(static_cast<int32_t>(r));
        max_top_logprobs = std::max(max_top_logprobs, s->top_logprobs);
      }
    }
    adjust_offsets.push_back(static_cast<int32_t>(adjust.size()));
    ban_offsets.push_back(static_cast<int32_t>(ban.size()));
  }
  if (absl::Status s = ValidateLogitAdjustRows(rows_total, vocab, adjust_offsets.data(), adjust.data(),
                                               ban_offsets.data(), ban.data());
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling adjustments: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status StepModel::ForwardSample(std::span<const ForwardSegment> segments, const SampleRow* rows,
                                      int32_t* tokens, RowLogprobs* logprobs) {
  const int64_t n = LogitRows(segments), V = config().vocab_size;
  PackedSampleRows packed;
  if (absl::Status s = packed.Pack(rows, n, nullptr, n, V); !s.ok()) return s;
  if (!packed.logprob_rows.empty() && logprobs == nullptr) {
    return absl::InvalidArgumentError("logprobs were asked for but no output was given");
  }
  std::vector<float> logits(static_cast<size_t>(n * V));
  if (absl::Status s = Forward(segments, logits.data()); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  const int64_t L = static_cast<int64_t>(packed.logprob_rows.size());
  std::vector<float> raw(static_cast<size_t>(L * V));
  for (int64_t i = 0; i < L; ++i) {
    std::memcpy(raw.data() + i * V, logits.data() + packed.logprob_rows[i] * V, V * sizeof(float));
  }
  if (absl::Status s = LogitsAdjustCpu({logits.data(), V, n, V, packed.adjust_offsets.data(), packed.adjust.data(),
                                        packed.ban_offsets.data(), packed.ban.data()});
      !s.ok()) {
    return s;
  }
  std::vector<SampleRowParams> params(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) params[i] = rows[i].params;
  if (absl::Status s = SampleCpu({logits.data(), V, n, V, params.data(), tokens}); !s.ok()) return s;
  if (L == 0) return absl::OkStatus();
  const int32_t top = packed.max_top_logprobs;
  std::vector<float> chosen(L), top_lp(L * top);
  std::vector<int32_t> top_ids(L * top);
  if (absl::Status s = LogprobsCpu({raw.data(), V, L, V, tokens, packed.logprob_rows.data(), top, chosen.data(),
                                    top_ids.data(), top_lp.data()});
      !s.ok()) {
    return s;
  }
  for (int64_t i = 0; i < L; ++i) {
    const int32_t r = packed.logprob_rows[i];
    RowLogprobs& out = logprobs[r];
    out.chosen = chosen[i];
    out.top.clear();
    for (int32_t j = 0; j < rows[r].top_logprobs && top_ids[i * top + j] >= 0; ++j) {
      out.top.emplace_back(top_ids[i * top + j], top_lp[i * top + j]);
    }
  }
  return absl::OkStatus();
}

absl::Status StepModel::ForwardSample(std::span<const ForwardSegment> segments, const SampleRowParams* params,
                                      int32_t* tokens) {
  std::vector<SampleRow> rows(static_cast<size_t>(LogitRows(segments)));
  for (size_t i = 0; i < rows.size(); ++i) rows[i].params = params[i];
  return ForwardSample(segments, rows.data(), tokens, nullptr);
}

absl::Status StepModel::ForwardGreedy(std::span<const ForwardSegment> segments, int32_t* tokens) {
  std::vector<SampleRowParams> greedy(static_cast<size_t>(LogitRows(segments)));
  for (SampleRowParams& p : greedy) p.temperature = 0.0f;
  return ForwardSample(segments, greedy.data(), tokens);
}

}  // namespace quarry
