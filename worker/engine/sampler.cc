// Sampler: logits processors in vLLM's order (bias, penalties, bans), then greedy or filtered sampling.
#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

absl::Status Bad(const char* field, double value, const char* limit) {
  return absl::InvalidArgumentError(absl::StrCat("sampling.", field, " = ", value, " is outside ", limit));
}

// log_softmax of the raw logits: returns the log normaliser.
float LogSumExp(std::span<const float> x) {
  float mx = kNegInf;
  for (float v : x) mx = std::max(mx, v);
  if (!std::isfinite(mx)) return mx;
  double sum = 0;
  for (float v : x) sum += std::exp(static_cast<double>(v - mx));
  return mx + static_cast<float>(std::log(sum));
}

}  // namespace

absl::Status Sampler::Validate(const SamplingParams& p, int64_t vocab) {
  if (!(p.temperature >= 0 && p.temperature <= 100)) return Bad("temperature", p.temperature, "[0, 100]");
  if (p.top_k < 0) return Bad("top_k", p.top_k, "[0, vocab_size] (0 = off)");
  if (!(p.top_p > 0 && p.top_p <= 1)) return Bad("top_p", p.top_p, "(0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) return Bad("min_p", p.min_p, "[0, 1]");
  if (!(p.repetition_penalty > 0 && p.repetition_penalty <= 10)) {
    return Bad("repetition_penalty", p.repetition_penalty, "(0, 10]");
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) return Bad("presence_penalty", p.presence_penalty, "[-2, 2]");
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return Bad("frequency_penalty", p.frequency_penalty, "[-2, 2]");
  }
  std::vector<int32_t> ids;
  for (const auto& [id, bias] : p.logit_bias) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  if (auto dup = std::adjacent_find(ids.begin(), ids.end()); dup != ids.end()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.logit_bias: token id ", *dup, " appears twice"));
  }
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.logit_bias: token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    }
    if (!(bias >= -100 && bias <= 100)) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.logit_bias[", id, "] = ", bias, " is outside [-100, 100]"));
    }
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int64_t vocab, std::span<const int32_t> prompt)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()), seen_(vocab, 0) {
  for (int32_t t : prompt) seen_[t] = 1;
}

void Sampler::Accept(int32_t token) {
  seen_[token] = 1;
  ++counts_[token];
  if (adjust_built_) UpdateAdjustment(token);
}

LogitAdjust& Sampler::AdjustEntry(int32_t token) {
  auto [it, fresh] = adjust_index_.emplace(token, static_cast<int32_t>(adjust_.size()));
  if (fresh) adjust_.push_back(LogitAdjust{.token = token});
  return adjust_[it->second];
}

void Sampler::UpdateAdjustment(int32_t token) {
  const bool repetition = params_.repetition_penalty != 1.0f && seen_[token];
  auto count = counts_.find(token);
  const bool penalised = (params_.presence_penalty != 0 || params_.frequency_penalty != 0) && count != counts_.end();
  if (!repetition && !penalised) return;
  LogitAdjust& a = AdjustEntry(token);
  if (repetition) a.repetition = params_.repetition_penalty;
  // The expression of Sample() below, so that the device subtracts the same float.
  if (penalised) a.subtract = params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count->second);
}

std::span<const LogitAdjust> Sampler::Adjustments() {
  if (!adjust_built_) {
    adjust_built_ = true;
    for (const auto& [id, bias] : params_.logit_bias) AdjustEntry(id).bias = bias;
    if (params_.repetition_penalty != 1.0f) {
      for (int64_t i = 0; i < static_cast<int64_t>(seen_.size()); ++i) {
        if (seen_[i]) UpdateAdjustment(static_cast<int32_t>(i));
      }
    } else {
      for (const auto& [id, n] : counts_) UpdateAdjustment(id);
    }
  }
  return adjust_;
}

Sampler::Result Sampler::Sample(std::span<float> logits, std::span<const int32_t> banned, int32_t top_logprobs) {
  Result r;
  const int64_t V = static_cast<int64_t>(logits.size());
  float lse = 0;
  if (top_logprobs >= 0) lse = LogSumExp(logits);
  if (top_logprobs > 0) {
    scratch_.clear();
    for (int64_t i = 0; i < V; ++i) scratch_.push_back({logits[i], static_cast<int32_t>(i)});
    const int64_t k = std::min<int64_t>(top_logprobs, V);
    std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (int64_t i = 0; i < k; ++i) r.logprob.top.push_back({scratch_[i].second, scratch_[i].first - lse});
  }
  // The raw logprob of the chosen token needs the unmodified value: keep a copy of the ones we touch.
  std::unordered_map<int32_t, float> original;
  auto touch = [&](int32_t t) { original.emplace(t, logits[t]); };

  for (const auto& [id, bias] : params_.logit_bias) {
    touch(id);
    logits[id] += bias;
  }
  if (params_.repetition_penalty != 1.0f) {
    for (int64_t i = 0; i < V; ++i) {
      if (!seen_[i]) continue;
      touch(static_cast<int32_t>(i));
      logits[i] = logits[i] > 0 ? logits[i] / params_.repetition_penalty : logits[i] * params_.repetition_penalty;
    }
  }
  if (params_.presence_penalty != 0 || params_.frequency_penalty != 0) {
    for (const auto& [id, n] : counts_) {
      touch(id);
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(n);
    }
  }
  for (int32_t t : banned) {
    touch(t);
    logits[t] = kNegInf;
  }

  int32_t chosen = 0;
  if (params_.temperature == 0) {
    for (int64_t i = 1; i < V; ++i) {
      if (logits[i] > logits[chosen]) chosen = static_cast<int32_t>(i);
    }
  } else {
    // Candidates sorted by logit (descending, ties by id), then top-k, softmax at temperature, top-p, min-p.
    scratch_.clear();
    for (int64_t i = 0; i < V; ++i) {
      if (logits[i] != kNegInf) scratch_.push_back({logits[i], static_cast<int32_t>(i)});
    }
    if (scratch_.empty()) {
      chosen = 0;
    } else {
      auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
      const int64_t k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, scratch_.size()) : scratch_.size();
      std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(), by_logit);
      scratch_.resize(k);
      const float mx = scratch_[0].first;
      double total = 0;
      for (auto& [v, id] : scratch_) {
        v = static_cast<float>(std::exp(static_cast<double>(v - mx) / params_.temperature));
        total += v;
      }
      size_t keep = scratch_.size();
      if (params_.top_p < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < scratch_.size(); ++i) {
          cum += scratch_[i].first / total;
          if (cum >= params_.top_p) {
            keep = i + 1;
            break;
          }
        }
      }
      if (params_.min_p > 0) {
        const float threshold = params_.min_p * scratch_[0].first;
        size_t i = 1;
        while (i < keep && scratch_[i].first >= threshold) ++i;
        keep = i;
      }
      scratch_.resize(keep);
      double mass = 0;
      for (const auto& [w, id] : scratch_) mass += w;
      const double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
      double acc = 0;
      chosen = scratch_.back().second;
      for (const auto& [w, id] : scratch_) {
        acc += w;
        if (u < acc) {
          chosen = id;
          break;
        }
      }
    }
  }
  r.token = chosen;
  if (top_logprobs >= 0) {
    auto it = original.find(chosen);
    r.logprob.token = chosen;
    r.logprob.logprob = (it != original.end() ? it->second : logits[chosen]) - lse;
  }
  return r;
}

}  // namespace quarry
