// Sampler: every logits processor against hand-computed expectations, seeded reproducibility, the sampled
// distribution, logprobs of the raw distribution, and range validation.
#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/logits_process.h"

namespace quarry {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, -1.0f, 0.5f}; }

Sampler::Result Draw(const SamplingParams& p, std::vector<float> logits, std::vector<int32_t> prompt = {},
                     std::vector<int32_t> banned = {}, int top = -1) {
  Sampler s(p, static_cast<int64_t>(logits.size()), prompt);
  return s.Sample(logits, banned, top);
}

TEST(Sampler, GreedyIsArgmaxAndBansApply) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(Draw(p, Logits()).token, 1);
  EXPECT_EQ(Draw(p, Logits(), {}, {1}).token, 2);  // banned best -> next best
}

TEST(Sampler, LogitBiasForcesAToken) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{3, 10.0f}};  // -1 + 10 = 9 > 3
  EXPECT_EQ(Draw(p, Logits()).token, 3);
}

TEST(Sampler, RepetitionPenaltyHfSemantics) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  // Token 1 (3.0) seen in the prompt -> 1.5 < token 2 (2.0).
  EXPECT_EQ(Draw(p, Logits(), {1}).token, 2);
  // Negative logits are multiplied: token 3 -1 -> -2 (still not chosen), checks no sign flip.
  std::vector<float> neg = {-1.0f, -1.5f};
  EXPECT_EQ(Draw(p, neg, {0}).token, 1);  // -1 * 2 = -2 < -1.5
}

TEST(Sampler, PresenceAndFrequencyPenaltiesUseGeneratedCounts) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.6f;
  Sampler s(p, 5, {});
  s.Accept(1);
  std::vector<float> l = Logits();
  EXPECT_EQ(s.Sample(l, {}, -1).token, 1);  // 3.0 - 0.6 = 2.4 > 2.0
  s.Accept(1);
  l = Logits();
  EXPECT_EQ(s.Sample(l, {}, -1).token, 2);  // 3.0 - 1.2 = 1.8 < 2.0
  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 1.5f;
  Sampler t(q, 5, {});
  t.Accept(1);
  t.Accept(1);
  l = Logits();
  EXPECT_EQ(t.Sample(l, {}, -1).token, 2);  // 3.0 - 1.5 = 1.5 < 2.0, independent of the count
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 5;
  p.top_k = 1;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Draw(p, Logits()).token, 1);
  p.top_k = 0;
  p.top_p = 0.01f;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Draw(p, Logits()).token, 1);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  // p ∝ exp(logit): token 1 has e^3; min_p 0.5 keeps tokens with e^l >= 0.5 e^3 -> only l >= 3 - ln 2 = 2.31.
  SamplingParams p;
  p.seed = 1;
  p.min_p = 0.5f;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Draw(p, Logits()).token, 1);
  p.min_p = 0.3f;  // keeps l >= 3 - ln(1/0.3) = 1.796: tokens 1 and 2
  Sampler s(p, 5, {});
  int twos = 0;
  for (int i = 0; i < 400; ++i) {
    std::vector<float> l = Logits();
    const int32_t t = s.Sample(l, {}, -1).token;
    ASSERT_TRUE(t == 1 || t == 2);
    twos += t == 2;
  }
  EXPECT_GT(twos, 50);  // expected 400 / (1 + e) ≈ 108
}

TEST(Sampler, DistributionMatchesSoftmax) {
  // logits [0, ln 3] at temperature 1 -> P = [0.25, 0.75]; at temperature 2 -> [1/(1+√3), √3/(1+√3)].
  SamplingParams p;
  p.seed = 42;
  Sampler s(p, 2, {});
  int ones = 0;
  const int n = 8000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {0.0f, std::log(3.0f)};
    ones += s.Sample(l, {}, -1).token == 1;
  }
  EXPECT_NEAR(ones / static_cast<double>(n), 0.75, 0.02);
  p.temperature = 2.0f;
  Sampler hot(p, 2, {});
  ones = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {0.0f, std::log(3.0f)};
    ones += hot.Sample(l, {}, -1).token == 1;
  }
  EXPECT_NEAR(ones / static_cast<double>(n), std::sqrt(3.0) / (1 + std::sqrt(3.0)), 0.02);
}

TEST(Sampler, SeedIsReproducible) {
  SamplingParams p;
  p.seed = 1234;
  p.temperature = 1.3f;
  std::vector<int32_t> a, b;
  Sampler s1(p, 5, {}), s2(p, 5, {});
  for (int i = 0; i < 30; ++i) {
    std::vector<float> l1 = Logits(), l2 = Logits();
    a.push_back(s1.Sample(l1, {}, -1).token);
    b.push_back(s2.Sample(l2, {}, -1).token);
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(std::count(a.begin(), a.end(), a[0]), 30);  // actually random
}

TEST(Sampler, LogprobsAreOfTheRawDistribution) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{3, 10.0f}};  // changes the choice, not the reported logprobs
  const std::vector<float> raw = Logits();
  double z = 0;
  for (float v : raw) z += std::exp(v);
  const double lse = std::log(z);
  Sampler::Result r = Draw(p, raw, {}, {}, 3);
  EXPECT_EQ(r.token, 3);
  EXPECT_NEAR(r.logprob.logprob, -1.0 - lse, 1e-5);
  ASSERT_EQ(r.logprob.top.size(), 3u);
  EXPECT_EQ(r.logprob.top[0].first, 1);
  EXPECT_EQ(r.logprob.top[1].first, 2);
  EXPECT_EQ(r.logprob.top[2].first, 0);
  EXPECT_NEAR(r.logprob.top[0].second, 3.0 - lse, 1e-5);
}

// The device form of the processors: Adjustments() (built lazily, then kept up to date by Accept) applied with
// LogitsAdjustCpu gives the logits Sample() works on, bit for bit, at every step of a generation; a duplicate
// logit_bias id is refused.
TEST(Sampler, AdjustmentsReproduceTheHostProcessors) {
  constexpr int64_t V = 300;
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 1.7f;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.3f;
  p.logit_bias = {{5, 2.5f}, {17, -3.0f}, {250, 0.75f}};
  const std::vector<int32_t> prompt = {5, 9, 9, 120, 42, 17};
  Sampler lazy(p, V, prompt), host(p, V, prompt);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int step = 0; step < 12; ++step) {
    std::vector<float> raw(V);
    for (float& x : raw) x = nd(rng);
    // What the host sampler picks (greedy over its processed logits) ...
    std::vector<float> h = raw;
    const int32_t want = host.Sample(h, {}, -1).token;
    // ... equals the argmax of the device form's adjusted logits; and those are the host's values exactly.
    if (step == 3) (void)lazy.Adjustments();  // built mid-generation: Accept keeps it current from then on
    const auto adj = lazy.Adjustments();
    std::vector<float> d = raw;
    const int32_t off[2] = {0, static_cast<int32_t>(adj.size())};
    ASSERT_TRUE(LogitsAdjustCpu({d.data(), V, 1, V, off, adj.data()}).ok());
    const int32_t got = static_cast<int32_t>(std::max_element(d.begin(), d.end()) - d.begin());
    EXPECT_EQ(got, want) << "step " << step;
    // The host sampler modified its copy in place with the same float steps.
    for (int64_t i = 0; i < V; ++i) ASSERT_EQ(d[i], h[i]) << "step " << step << " token " << i;
    host.Accept(want);
    lazy.Accept(want);
  }
  SamplingParams dup;
  dup.logit_bias = {{3, 1.0f}, {3, 2.0f}};
  const absl::Status st = Sampler::Validate(dup, V);
  EXPECT_NE(st.message().find("token id 3 appears twice"), std::string::npos) << st;
}

TEST(Sampler, ValidateNamesFieldLimitAndValue) {
  SamplingParams p;
  p.temperature = -1;
  absl::Status st = Sampler::Validate(p, 10);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("temperature = -1"), std::string::npos) << st;
  p = {};
  p.top_p = 0;
  EXPECT_NE(Sampler::Validate(p, 10).message().find("top_p"), std::string::npos);
  p = {};
  p.logit_bias = {{10, 1.0f}};
  EXPECT_NE(Sampler::Validate(p, 10).message().find("token id 10"), std::string::npos);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_FALSE(Sampler::Validate(p, 10).ok());
  EXPECT_TRUE(Sampler::Validate(SamplingParams{}, 10).ok());
}

}  // namespace
}  // namespace quarry
