// Philox-4x32-10 known answers, the shared weight function, and SampleCpu (temperature / top-k / top-p / min-p
// sampling, kernels/sampling.h): hand-built rows, exact thresholds, statistics over many seeds, validation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/philox.h"
#include "kernels/sampling.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::RandomVector;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- Philox ----

TEST(Philox, KnownAnswersOfRandom123) {
  struct Kat {
    Philox4x32Ctr ctr;
    uint32_t k0, k1;
    Philox4x32Ctr out;
  };
  const Kat kats[] = {
      {{{0u, 0u, 0u, 0u}}, 0u, 0u, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& kat : kats) {
    const Philox4x32Ctr got = Philox4x32_10(kat.ctr, kat.k0, kat.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], kat.out.v[i]) << "word " << i << " of KAT key " << kat.k0;
  }
}

TEST(Philox, UniformUsesTheTop24BitsOfTheFirstWordAndTheSeedStepLayout) {
  // counter 0, key 0 -> first word 0x6627e8d5.
  EXPECT_EQ(PhiloxUniform(0, 0), static_cast<float>(0x6627e8u) / 16777216.0f);
  // seed = (k0 | k1 << 32) and step = (c0 | c1 << 32): the third KAT has c2, c3 != 0, so check the layout on
  // the raw generator instead.
  const uint64_t seed = 0x299f31d0a4093822ull, step = 0x85a308d3243f6a88ull;
  const Philox4x32Ctr raw = Philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0u, 0u}}, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(PhiloxUniform(seed, step), static_cast<float>(raw.v[0] >> 8) * (1.0f / 16777216.0f));
  // The high halves of seed and step matter.
  EXPECT_NE(PhiloxUniform(1, 5), PhiloxUniform(1 + (1ull << 32), 5));
  EXPECT_NE(PhiloxUniform(1, 5), PhiloxUniform(1, 5 + (1ull << 32)));
  // In [0, 1) with mean about 1/2 over many steps.
  double sum = 0.0;
  for (uint64_t s = 0; s < 100000; ++s) {
    const float u = PhiloxUniform(42, s);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);  // sd of the mean ~0.0009
}

// ---- The shared weight ----

TEST(SamplerWeight, ExpIsWithinTwoUlpOfLibmAndHandlesTheEdges) {
  double worst = 0.0;
  for (int i = 0; i <= 860000; ++i) {
    const float y = -static_cast<float>(i) * 1e-4f;
    const double ref = std::exp(static_cast<double>(y));
    const double got = SamplerExp(y);
    worst = std::max(worst, std::fabs(got - ref) / ref);
    ASSERT_LE(got, 1.0) << y;
  }
  EXPECT_LT(worst, 2.4e-7);  // 2 ulp of float
  EXPECT_EQ(SamplerExp(-86.5f), 0.0f);
  EXPECT_EQ(SamplerExp(-kInf), 0.0f);
  EXPECT_EQ(SamplerExp(kNan), 0.0f);
  EXPECT_GE(SamplerExp(-86.0f), std::numeric_limits<float>::min());  // nonzero weights are normal floats
  EXPECT_EQ(SamplerWeight(3.0f, 3.0f, 0.5f), 1.0f);
  EXPECT_EQ(SamplerWeight(kInf, kInf, 1.0f), 1.0f);   // +inf maximum: its tokens weigh 1
  EXPECT_EQ(SamplerWeight(5.0f, kInf, 1.0f), 0.0f);   // everything else 0
  EXPECT_EQ(SamplerWeight(kNan, 1.0f, 1.0f), 0.0f);
  EXPECT_EQ(SamplerWeight(-kInf, 1.0f, 1.0f), 0.0f);
  EXPECT_NEAR(SamplerWeight(0.0f, 1.0f, SamplerInvTemperature(0.5f)), std::exp(-2.0), 2e-7);
}

// ---- SampleCpu ----

// Samples one row once per (seed, step) pair.
int32_t SampleOne(const std::vector<float>& logits, SampleRowParams rp) {
  int32_t out = -1;
  const absl::Status s = SampleCpu({.logits = logits.data(),
                                    .ld = static_cast<int64_t>(logits.size()),
                                    .rows = 1,
                                    .cols = static_cast<int64_t>(logits.size()),
                                    .row_params = &rp,
                                    .out = &out});
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// Counts of each token over `draws` seeds (step fixed).
std::vector<int> Histogram(const std::vector<float>& logits, SampleRowParams rp, int draws) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    rp.seed = 1000003ull * static_cast<uint64_t>(i) + 17;
    const int32_t tok = SampleOne(logits, rp);
    EXPECT_GE(tok, 0);
    EXPECT_LT(tok, static_cast<int32_t>(logits.size()));
    if (tok >= 0 && tok < static_cast<int32_t>(logits.size())) ++counts[tok];
  }
  return counts;
}

// The tokens that appeared.
std::set<int> Support(const std::vector<int>& counts) {
  std::set<int> s;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) s.insert(static_cast<int>(i));
  }
  return s;
}

// logits = log(p): w = p / p_max.
std::vector<float> LogProbs(const std::vector<double>& p) {
  std::vector<float> x;
  for (double v : p) x.push_back(static_cast<float>(std::log(v)));
  return x;
}

TEST(SampleCpu, ZeroTemperatureEqualsArgmax) {
  const int64_t rows = 8, cols = 300, ld = 301;
  std::vector<float> x = RandomVector(rows * ld, 5, -4.0f, 4.0f);
  x[0 * ld + 7] = x[0 * ld + 200] = 9.0f;  // tie: lowest index
  x[1 * ld + 0] = kNan;
  x[1 * ld + 150] = kNan;
  for (int64_t c = 0; c < cols; ++c) x[2 * ld + c] = kNan;  // all NaN -> 0
  x[3 * ld + 299] = kInf;
  std::vector<SampleRowParams> rp(rows);
  for (int64_t r = 0; r < rows; ++r) {
    rp[r] = {.temperature = 0.0f, .top_k = static_cast<int32_t>(r), .top_p = 0.5f, .min_p = 0.1f,
             .seed = static_cast<uint64_t>(r), .step = 3};
  }
  std::vector<int32_t> got(rows, -1), want(rows, -2);
  ASSERT_TRUE(SampleCpu({.logits = x.data(), .ld = ld, .rows = rows, .cols = cols, .row_params = rp.data(),
                         .out = got.data()})
                  .ok());
  ASSERT_TRUE(ArgmaxCpu({.x = x.data(), .ldx = ld, .rows = rows, .cols = cols, .out = want.data()}).ok());
  EXPECT_EQ(got, want);
  EXPECT_EQ(got[0], 7);
  EXPECT_EQ(got[2], 0);
  EXPECT_EQ(got[3], 299);
}

const std::vector<float> kRow10 = {0.3f, 2.5f, -1.0f, 1.9f, 0.0f, 2.2f, -3.0f, 1.0f, 0.7f, 1.8f};

TEST(SampleCpu, TopKOneAlwaysReturnsTheMaximum) {
  const std::vector<int> h = Histogram(kRow10, {.temperature = 1.5f, .top_k = 1}, 500);
  EXPECT_EQ(h[1], 500);
}

TEST(SampleCpu, TopKThreeOnlyReturnsTheThreeLargestAndEachOfThem) {
  const std::vector<int> h = Histogram(kRow10, {.temperature = 1.0f, .top_k = 3}, 2000);
  EXPECT_EQ(Support(h), (std::set<int>{1, 3, 5}));  // 2.5, 1.9, 2.2
  // And in softmax proportion among them: p(1) = e^2.5 / (e^2.5 + e^2.2 + e^1.9) = 0.4223.
  EXPECT_NEAR(h[1] / 2000.0, 0.4223, 0.05);
}

TEST(SampleCpu, TiesAtTheTopKThresholdAreAllKept) {
  const std::vector<float> row = {5.0f, 3.0f, 3.0f, 3.0f, 1.0f, 0.0f};
  EXPECT_EQ(Support(Histogram(row, {.temperature = 2.0f, .top_k = 2}, 2000)), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 2.0f, .top_k = 4}, 2000)), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 2.0f, .top_k = 5}, 2000)), (std::set<int>{0, 1, 2, 3, 4}));
}

TEST(SampleCpu, TopPKeepsTheSmallestPrefixReachingTheMass) {
  const std::vector<float> row = LogProbs({0.5, 0.3, 0.15, 0.05});
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 0.49f}, 400)), (std::set<int>{0}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 0.79f}, 2000)), (std::set<int>{0, 1}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 0.81f}, 2000)), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 0.96f}, 4000)), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 1.0f}, 4000)), (std::set<int>{0, 1, 2, 3}));
}

TEST(SampleCpu, TopPThresholdIsExactToTheUlp) {
  // top_p * mass(K) equal to mass({0, 1}) keeps {0, 1}; one float ulp of top_p above it brings in token 2.
  const std::vector<float> row = LogProbs({0.5, 0.3, 0.15, 0.05});
  std::vector<double> w;
  for (float x : row) w.push_back(SamplerWeight(x, row[0], 1.0f));
  const double mass_k = ((w[0] + w[1]) + w[2]) + w[3];  // SampleCpu's order (index order)
  const double mass_2 = w[0] + w[1];
  float lo = static_cast<float>(mass_2 / mass_k);
  while (static_cast<double>(lo) * mass_k > mass_2) lo = std::nextafter(lo, 0.0f);
  while (static_cast<double>(std::nextafter(lo, 1.0f)) * mass_k <= mass_2) lo = std::nextafter(lo, 1.0f);
  const float hi = std::nextafter(lo, 1.0f);
  ASSERT_NEAR(lo, 0.8f, 1e-6f);
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = lo}, 2000)), (std::set<int>{0, 1}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = hi}, 2000)), (std::set<int>{0, 1, 2}));

  // An exact tie (every quantity exact in binary): w = {1, 0.5, 0.5}, top_p = 0.5: target = 1 = mass({0}), and
  // ">=" keeps P = {0}; the next float of top_p needs the tied pair as well.
  const float half_logit = static_cast<float>(-std::log(2.0));
  ASSERT_EQ(SamplerExp(half_logit), 0.5f);
  const std::vector<float> tied = {0.0f, half_logit, half_logit};
  EXPECT_EQ(Support(Histogram(tied, {.temperature = 1.0f, .top_p = 0.5f}, 500)), (std::set<int>{0}));
  EXPECT_EQ(Support(Histogram(tied, {.temperature = 1.0f, .top_p = std::nextafter(0.5f, 1.0f)}, 2000)),
            (std::set<int>{0, 1, 2}));
}

TEST(SampleCpu, MinPExcludesTokensBelowTheFractionOfTheMaximum) {
  const std::vector<float> row = LogProbs({0.5, 0.3, 0.15, 0.05});  // w = 1, 0.6, 0.3, 0.1
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .min_p = 0.5f}, 2000)), (std::set<int>{0, 1}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .min_p = 0.2f}, 2000)), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .min_p = 0.05f}, 4000)), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .min_p = 0.61f}, 500)), (std::set<int>{0}));
  // min-p applies after top-p: top_p 0.81 keeps {0, 1, 2}, min_p 0.35 then drops 2.
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f, .top_p = 0.81f, .min_p = 0.35f}, 2000)),
            (std::set<int>{0, 1}));
}

TEST(SampleCpu, NanLogitsAreNeverChosen) {
  std::vector<float> row = kRow10;
  row[0] = row[3] = row[9] = kNan;
  for (SampleRowParams rp : {SampleRowParams{.temperature = 1.0f}, SampleRowParams{.temperature = 5.0f, .top_k = 9},
                             SampleRowParams{.temperature = 100.0f, .top_p = 0.99f}}) {
    const std::vector<int> h = Histogram(row, rp, 2000);
    EXPECT_EQ(h[0] + h[3] + h[9], 0);
    EXPECT_EQ(Support(h).size(), 7u);
  }
  EXPECT_EQ(SampleOne(std::vector<float>(5, kNan), {.temperature = 1.0f}), 0);  // all NaN -> 0, as argmax
  std::vector<float> one(6, kNan);
  one[4] = -2.0f;
  EXPECT_EQ(Support(Histogram(one, {.temperature = 1.0f}, 200)), (std::set<int>{4}));
}

TEST(SampleCpu, InfiniteLogits) {
  // +inf maxima share the mass; -inf never wins against a number.
  const std::vector<float> row = {1.0f, kInf, 2.0f, kInf, -kInf};
  EXPECT_EQ(Support(Histogram(row, {.temperature = 1.0f}, 1000)), (std::set<int>{1, 3}));
  const std::vector<float> row2 = {-kInf, 0.0f, -kInf};
  EXPECT_EQ(Support(Histogram(row2, {.temperature = 1.0f}, 200)), (std::set<int>{1}));
}

TEST(SampleCpu, SameSeedAndStepGiveTheSameTokenWhateverTheBatch) {
  const std::vector<float> flat(1000, 0.0f);
  std::set<int32_t> tokens;
  for (uint64_t step = 0; step < 200; ++step) {
    const SampleRowParams rp{.temperature = 1.0f, .seed = 77, .step = step};
    const int32_t a = SampleOne(flat, rp);
    EXPECT_EQ(SampleOne(flat, rp), a);
    tokens.insert(a);
  }
  EXPECT_GT(tokens.size(), 150u);  // ~181 distinct expected from 200 uniform draws over 1000 tokens

  // Row r of a batch draws what it draws alone.
  const int64_t rows = 6, cols = 64;
  const std::vector<float> x = RandomVector(rows * cols, 9, -2.0f, 2.0f);
  std::vector<SampleRowParams> rp(rows);
  for (int64_t r = 0; r < rows; ++r) {
    rp[r] = {.temperature = 0.8f, .top_k = static_cast<int32_t>(r * 5), .top_p = 0.95f, .seed = 1234,
             .step = static_cast<uint64_t>(r)};
  }
  std::vector<int32_t> out(rows, -1);
  ASSERT_TRUE(SampleCpu({.logits = x.data(), .ld = cols, .rows = rows, .cols = cols, .row_params = rp.data(),
                         .out = out.data()})
                  .ok());
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(out[r], SampleOne(std::vector<float>(x.begin() + r * cols, x.begin() + (r + 1) * cols), rp[r]));
  }
}

TEST(SampleCpu, FrequenciesMatchSoftmaxAtTemperatureOne) {
  const std::vector<float> row = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 2.0f};
  const int draws = 20000;
  const std::vector<int> h = Histogram(row, {.temperature = 1.0f}, draws);
  double z = 0.0;
  for (float x : row) z += std::exp(static_cast<double>(x));
  double chi2 = 0.0;
  for (size_t i = 0; i < row.size(); ++i) {
    const double expected = draws * std::exp(static_cast<double>(row[i])) / z;
    chi2 += (h[i] - expected) * (h[i] - expected) / expected;
  }
  EXPECT_LT(chi2, 25.7) << "5 degrees of freedom: P(chi2 > 25.7) = 1e-4";
  // A wrong distribution fails: the counts are far from uniform.
  double chi2_uniform = 0.0;
  for (int c : h) chi2_uniform += (c - draws / 6.0) * (c - draws / 6.0) / (draws / 6.0);
  EXPECT_GT(chi2_uniform, 1000.0);
}

TEST(SampleCpu, LowTemperatureSharpens) {
  const std::vector<float> row = {0.0f, -1.0f};
  const int draws = 20000;
  const double p1 = Histogram(row, {.temperature = 1.0f}, draws)[0] / double(draws);
  const double p05 = Histogram(row, {.temperature = 0.5f}, draws)[0] / double(draws);
  EXPECT_NEAR(p1, 1.0 / (1.0 + std::exp(-1.0)), 0.012);   // 0.731, sd 0.0031
  EXPECT_NEAR(p05, 1.0 / (1.0 + std::exp(-2.0)), 0.012);  // 0.881, sd 0.0023
}

// The header's steps written the naive way (O(n^2), sums in index order) on small rows with ties.
int32_t NaiveSample(const std::vector<float>& x, const SampleRowParams& rp) {
  const int n = static_cast<int>(x.size());
  float m = -kInf;
  bool any = false;
  for (float v : x) {
    if (!std::isnan(v) && (!any || v > m)) m = v, any = true;
  }
  if (!any) return 0;
  std::vector<float> w(n);
  for (int i = 0; i < n; ++i) w[i] = SamplerWeight(x[i], m, SamplerInvTemperature(rp.temperature));
  std::vector<bool> in(n);
  for (int i = 0; i < n; ++i) {
    int greater = 0;
    for (int j = 0; j < n; ++j) greater += w[j] > w[i];
    in[i] = w[i] > 0.0f && (rp.top_k == 0 || greater < rp.top_k);
  }
  if (rp.top_p < 1.0f) {
    double mass_k = 0.0;
    for (int i = 0; i < n; ++i) mass_k += in[i] ? w[i] : 0.0f;
    float t_p = 0.0f;
    for (int i = 0; i < n; ++i) {
      if (!in[i]) continue;
      // SampleCpu adds the prefix in descending order; add it the same way so that only the sets are tested.
      std::vector<float> prefix;
      for (int j = 0; j < n; ++j) {
        if (in[j] && w[j] >= w[i]) prefix.push_back(w[j]);
      }
      std::sort(prefix.rbegin(), prefix.rend());
      double mass = 0.0;
      for (float v : prefix) mass += v;
      if (mass >= static_cast<double>(rp.top_p) * mass_k) t_p = std::max(t_p, w[i]);
    }
    for (int i = 0; i < n; ++i) in[i] = in[i] && w[i] >= t_p;
  }
  double mass_f = 0.0;
  int last = -1;
  for (int i = 0; i < n; ++i) {
    in[i] = in[i] && w[i] >= rp.min_p;
    if (in[i]) mass_f += w[i], last = i;
  }
  const double target = static_cast<double>(PhiloxUniform(rp.seed, rp.step)) * mass_f;
  double run = 0.0;
  for (int i = 0; i < n; ++i) {
    if (in[i] && (run += w[i]) > target) return i;
  }
  return last;
}

TEST(SampleCpu, MatchesTheNaiveDefinitionOnRandomRowsWithTies) {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> len(1, 40), logit(-6, 6), kdist(0, 12);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  int checked = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<float> x(len(rng));
    for (float& v : x) v = 0.5f * static_cast<float>(logit(rng));  // many ties
    if (trial % 7 == 0) x[trial % x.size()] = kNan;
    SampleRowParams rp{.temperature = 0.25f + 2.0f * unit(rng), .top_k = trial % 3 == 0 ? 0 : kdist(rng),
                       .top_p = trial % 4 == 0 ? 1.0f : 0.05f + 0.95f * unit(rng),
                       .min_p = trial % 5 == 0 ? 0.3f * unit(rng) : 0.0f,
                       .seed = static_cast<uint64_t>(trial) * 0x9E3779B97F4A7C15ull, .step = 11};
    ASSERT_EQ(SampleOne(x, rp), NaiveSample(x, rp)) << "trial " << trial;
    ++checked;
  }
  EXPECT_EQ(checked, 3000);
}

TEST(SampleCpu, RejectsInvalidRowsByName) {
  struct Case {
    SampleRowParams rp;
    const char* field;
    const char* value;
  };
  const Case cases[] = {
      {{.temperature = -1.0f}, "temperature", "-1"},  {{.temperature = kNan}, "temperature", "nan"},
      {{.temperature = kInf}, "temperature", "inf"},  {{.temperature = 101.0f}, "temperature", "101"},
      {{.top_k = -3}, "top_k", "-3"},                 {{.top_p = 0.0f}, "top_p", "0"},
      {{.top_p = 1.5f}, "top_p", "1.5"},              {{.top_p = kNan}, "top_p", "nan"},
      {{.min_p = -0.25f}, "min_p", "-0.25"},          {{.min_p = 1.0f}, "min_p", "1"},
      {{.min_p = kNan}, "min_p", "nan"},
  };
  for (const Case& c : cases) {
    const absl::Status s = ValidateSampleRow(c.rp);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s;
    EXPECT_NE(s.message().find(c.value), std::string::npos) << s;
  }
  EXPECT_TRUE(ValidateSampleRow({.temperature = 0.0f}).ok());
  EXPECT_TRUE(ValidateSampleRow({.temperature = 100.0f, .top_k = 5, .top_p = 1.0f, .min_p = 0.99f}).ok());

  // SampleCpu checks every row before writing any output.
  const std::vector<SampleRowParams> rp = {{.temperature = 0.0f}, {.temperature = 1.0f, .top_p = 2.0f}};
  std::vector<float> x2 = {1.0f, 2.0f, 3.0f, 4.0f};
  std::vector<int32_t> out = {-7, -7};
  const absl::Status s =
      SampleCpu({.logits = x2.data(), .ld = 2, .rows = 2, .cols = 2, .row_params = rp.data(), .out = out.data()});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("top_p"), std::string::npos) << s;
  EXPECT_NE(s.message().find("row 1"), std::string::npos) << s;
  EXPECT_EQ(out, (std::vector<int32_t>{-7, -7}));
}

TEST(SampleCpu, RejectsBadShapesByName) {
  const std::vector<float> x(8, 0.0f);
  const SampleRowParams rp;
  int32_t out = 0;
  const SampleParams good{.logits = x.data(), .ld = 4, .rows = 2, .cols = 4, .row_params = &rp, .out = &out};
  struct Case {
    SampleParams p;
    const char* field;
  };
  SampleParams rows = good, cols = good, ld = good, logits = good, params = good, outp = good;
  rows.rows = -1;
  cols.cols = 0;
  ld.ld = 3;
  logits.logits = nullptr;
  params.row_params = nullptr;
  outp.out = nullptr;
  for (const Case& c : {Case{rows, "rows"}, Case{cols, "cols"}, Case{ld, "ld"}, Case{logits, "logits"},
                        Case{params, "row_params"}, Case{outp, "out"}}) {
    const absl::Status s = ValidateSample(c.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s;
    EXPECT_EQ(SampleCpu(c.p).code(), absl::StatusCode::kInvalidArgument) << c.field;
  }
  // rows == 0: a no-op, pointers may be null.
  EXPECT_TRUE(
      SampleCpu({.logits = nullptr, .ld = 0, .rows = 0, .cols = 4, .row_params = nullptr, .out = nullptr}).ok());
}

}  // namespace
}  // namespace quarry
