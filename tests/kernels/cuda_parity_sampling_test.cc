// CUDA parity of SampleCuda against SampleCpu (kernels/sampling.h): vocabulary-sized rows with mixed per-row
// parameters over several steps, NaN / infinity / tie rows, small and odd shapes, run-to-run determinism.
// Both sides compute bit-identical weights (kernels/philox.h) and sum them in double, so they can differ only
// where the two summation orders round across a boundary; the vocabulary test tolerates one such token.
// Skips (GTEST_SKIP) when no CUDA device is present; the limit checks run without one.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda_ops.h"
#include "kernels/sampling.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::CudaParityTest;
using testing::DeviceBuffer;
using testing::RandomVector;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Outputs {
  std::vector<int32_t> cpu, gpu;
};

// Samples rows x [rows, cols] (stride ld) with SampleCpu and SampleCuda.
Outputs SampleBoth(const std::vector<float>& x, int64_t ld, int64_t cols, const std::vector<SampleRowParams>& rp) {
  const int64_t rows = static_cast<int64_t>(rp.size());
  Outputs o{std::vector<int32_t>(rows, -1), std::vector<int32_t>(rows, -1)};
  const absl::Status cs = SampleCpu(
      {.logits = x.data(), .ld = ld, .rows = rows, .cols = cols, .row_params = rp.data(), .out = o.cpu.data()});
  EXPECT_TRUE(cs.ok()) << cs;
  DeviceBuffer<float> dx(x);
  DeviceBuffer<SampleRowParams> drp(rp);
  DeviceBuffer<int32_t> dout(o.gpu);
  const absl::Status gs = SampleCuda(
      {.logits = dx.get(), .ld = ld, .rows = rows, .cols = cols, .row_params = drp.get(), .out = dout.get()}, nullptr);
  EXPECT_TRUE(gs.ok()) << gs;
  o.gpu = dout.Download();
  return o;
}

std::string Describe(const SampleRowParams& p) {
  return absl::StrCat("T=", p.temperature, " top_k=", p.top_k, " top_p=", p.top_p, " min_p=", p.min_p,
                      " seed=", p.seed, " step=", p.step);
}

TEST_F(CudaParityTest, SampleVocabularyRowsWithMixedParametersMatchCpu) {
  const int64_t rows = 64, cols = 100352, ld = cols + 3;
  // LM-like logits: a broad normal body plus a few spiked tokens per row, so that top-p and min-p cut at a few
  // tokens in some rows and at thousands in others.
  std::vector<float> x(rows * ld, kNan);  // the padding between rows is NaN: it must never be read
  std::mt19937 rng(4242);
  std::normal_distribution<float> body(0.0f, 2.0f);
  std::uniform_int_distribution<int64_t> pos(0, cols - 1);
  std::uniform_real_distribution<float> spike(6.0f, 14.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) x[r * ld + c] = body(rng);
    const int spikes = static_cast<int>(r % 8);
    for (int i = 0; i < spikes; ++i) x[r * ld + pos(rng)] = spike(rng);
  }
  const SampleRowParams configs[] = {
      {.temperature = 0.0f},                                                 // greedy
      {.temperature = 0.7f, .top_k = 50},                                    // top-k
      {.temperature = 1.0f, .top_p = 0.9f},                                  // top-p
      {.temperature = 1.0f, .min_p = 0.05f},                                 // min-p
      {.temperature = 1.0f},                                                 // all off
      {.temperature = 0.8f, .top_k = 200, .top_p = 0.95f, .min_p = 0.02f},  // all on
      {.temperature = 1.3f, .top_k = 1000, .top_p = 0.6f},                   // top-k then top-p
  };
  constexpr int kConfigs = sizeof(configs) / sizeof(configs[0]);
  int mismatches = 0, draws = 0, distinct_steps = 0;
  std::vector<std::vector<int32_t>> by_step;
  for (uint64_t step = 0; step < 4; ++step) {
    std::vector<SampleRowParams> rp(rows);
    for (int64_t r = 0; r < rows; ++r) {
      rp[r] = configs[r % kConfigs];
      rp[r].seed = 1000 + 7919 * static_cast<uint64_t>(r);
      rp[r].step = step;
    }
    const Outputs o = SampleBoth(x, ld, cols, rp);
    for (int64_t r = 0; r < rows; ++r) {
      ++draws;
      ASSERT_GE(o.gpu[r], 0);
      ASSERT_LT(o.gpu[r], cols);
      ASSERT_FALSE(std::isnan(x[r * ld + o.gpu[r]])) << "row " << r;
      if (o.gpu[r] != o.cpu[r]) {
        ++mismatches;
        std::printf("SampleCuda mismatch: row %lld (%s): cpu %d (logit %.9g) gpu %d (logit %.9g)\n",
                    static_cast<long long>(r), Describe(rp[r]).c_str(), o.cpu[r], x[r * ld + o.cpu[r]], o.gpu[r],
                    x[r * ld + o.gpu[r]]);
      }
    }
    by_step.push_back(o.gpu);
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (by_step[0][r] != by_step[1][r] || by_step[0][r] != by_step[2][r] || by_step[0][r] != by_step[3][r]) {
      ++distinct_steps;
    }
  }
  std::printf("SampleCuda: %d of %d vocabulary-row draws differ from SampleCpu\n", mismatches, draws);
  EXPECT_LE(mismatches, 1) << "more than one token differs: not explainable by summation order";
  EXPECT_GT(distinct_steps, rows / 4) << "the step (RNG counter) should move sampled rows' tokens";
}

TEST_F(CudaParityTest, SampleIsDeterministicRunToRun) {
  const int64_t rows = 16, cols = 100352;
  const std::vector<float> x = RandomVector(rows * cols, 31, -3.0f, 3.0f);
  std::vector<SampleRowParams> rp(rows);
  for (int64_t r = 0; r < rows; ++r) {
    rp[r] = {.temperature = 1.0f, .top_k = r % 2 ? 0 : 4000, .top_p = 0.97f, .seed = 99, .step = uint64_t(r)};
  }
  const Outputs a = SampleBoth(x, cols, cols, rp);
  const Outputs b = SampleBoth(x, cols, cols, rp);
  EXPECT_EQ(a.gpu, b.gpu);
  int mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) mismatches += a.gpu[r] != a.cpu[r];
  EXPECT_LE(mismatches, 1);
}

TEST_F(CudaParityTest, SampleNanInfinityAndTieRowsMatchCpu) {
  const int64_t cols = 2000, ld = 2003;
  std::vector<std::vector<float>> base;
  std::vector<SampleRowParams> kinds;
  auto row = [&](uint32_t seed) { return RandomVector(cols, seed, -4.0f, 4.0f); };
  {  // NaNs scattered, one at the would-be maximum
    std::vector<float> r = row(1);
    for (int64_t c = 0; c < cols; c += 37) r[c] = kNan;
    r[1000] = kNan;
    r[999] = 9.0f;
    base.push_back(r), kinds.push_back({.temperature = 1.0f, .top_k = 20});
    base.push_back(r), kinds.push_back({.temperature = 2.0f});
    base.push_back(r), kinds.push_back({.temperature = 0.0f});
  }
  base.push_back(std::vector<float>(cols, kNan)), kinds.push_back({.temperature = 1.0f});  // -> 0
  {  // eleven tied maxima (6.0) and five tied runners-up (5.5)
    std::vector<float> r = row(2);
    for (int64_t c = 3; c < cols; c += 199) r[c] = 6.0f;
    for (int64_t c = 50; c < cols; c += 401) r[c] = 5.5f;
    base.push_back(r), kinds.push_back({.temperature = 1.0f, .top_k = 3});    // K = the eleven maxima
    base.push_back(r), kinds.push_back({.temperature = 1.0f, .top_k = 12});   // 16 tokens: all five 5.5s join
    base.push_back(r), kinds.push_back({.temperature = 0.5f, .top_p = 0.5f});
    base.push_back(r), kinds.push_back({.temperature = 0.0f});                // lowest index of the maximum
  }
  {  // +inf maxima next to NaN; -inf entries
    std::vector<float> r = row(3);
    r[10] = kNan, r[11] = kInf, r[1500] = kInf, r[12] = -kInf;
    base.push_back(r), kinds.push_back({.temperature = 1.0f});
  }
  {  // a single number among NaN and -inf
    std::vector<float> r(cols, kNan);
    for (int64_t c = 0; c < cols; c += 3) r[c] = -kInf;
    r[1777] = -3.0f;
    base.push_back(r), kinds.push_back({.temperature = 1.0f, .top_p = 0.3f});
  }
  {  // flat row: every token equally likely; the draw position is u itself
    base.push_back(std::vector<float>(cols, 1.0f)), kinds.push_back({.temperature = 1.0f, .min_p = 0.5f});
  }
  // Each kind with 8 seeds.
  std::vector<float> x;
  std::vector<SampleRowParams> rp;
  for (size_t k = 0; k < base.size(); ++k) {
    for (uint64_t s = 0; s < 8; ++s) {
      std::vector<float> padded = base[k];
      padded.resize(ld, 0.0f);
      x.insert(x.end(), padded.begin(), padded.end());
      SampleRowParams p = kinds[k];
      p.seed = 31 * k + s;
      p.step = s;
      rp.push_back(p);
    }
  }
  const Outputs o = SampleBoth(x, ld, cols, rp);
  EXPECT_EQ(o.gpu, o.cpu);
  for (size_t i = 0; i < rp.size(); ++i) {
    EXPECT_FALSE(std::isnan(x[i * ld + o.gpu[i]]) && i / 8 != 3) << "row " << i << " " << Describe(rp[i]);
  }
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(o.gpu[2 * 8 + i], 999);  // greedy
    EXPECT_EQ(o.gpu[3 * 8 + i], 0);    // all NaN
    EXPECT_EQ(o.gpu[7 * 8 + i], 3);    // greedy ties: the first 6.0
    EXPECT_TRUE(o.gpu[8 * 8 + i] == 11 || o.gpu[8 * 8 + i] == 1500) << o.gpu[8 * 8 + i];
    EXPECT_EQ(o.gpu[9 * 8 + i], 1777);
    EXPECT_EQ((o.gpu[4 * 8 + i] - 3) % 199, 0) << o.gpu[4 * 8 + i];  // top_k 3 keeps exactly the eleven 6.0s
  }
}

TEST_F(CudaParityTest, SampleSmallAndOddShapesMatchCpu) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int64_t cols : {1, 2, 5, 31, 32, 33, 1023, 1024, 1025, 3000, 33000}) {
    SCOPED_TRACE(absl::StrCat("cols ", cols));
    const int64_t rows = 24, ld = cols + 1;
    const std::vector<float> x = RandomVector(rows * ld, static_cast<uint32_t>(cols), -5.0f, 5.0f);
    std::vector<SampleRowParams> rp(rows);
    for (int64_t r = 0; r < rows; ++r) {
      rp[r] = {.temperature = r % 6 == 0 ? 0.0f : 0.1f + 2.0f * unit(rng),
               .top_k = r % 3 == 0 ? 0 : static_cast<int32_t>(1 + (rng() % (2 * cols))),
               .top_p = r % 4 == 0 ? 1.0f : 0.1f + 0.9f * unit(rng),
               .min_p = r % 5 == 0 ? 0.2f * unit(rng) : 0.0f,
               .seed = rng(),
               .step = static_cast<uint64_t>(r)};
    }
    const Outputs o = SampleBoth(x, ld, cols, rp);
    EXPECT_EQ(o.gpu, o.cpu);
  }
}

// ---- Limits refused before any CUDA call (runs without a GPU) ----

TEST(CudaSampleLimitsTest, RefusedBeforeLaunch) {
  const float x = 0.0f;
  const SampleRowParams rp;
  int32_t out = 0;
  EXPECT_TRUE(SampleCuda({.logits = nullptr, .ld = 0, .rows = 0, .cols = 8, .row_params = nullptr, .out = nullptr},
                         nullptr)
                  .ok());
  absl::Status s = SampleCuda({.logits = &x, .ld = 1, .rows = 1, .cols = 0, .row_params = &rp, .out = &out}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cols"), std::string::npos) << s;
  s = SampleCuda({.logits = &x, .ld = 1, .rows = 1, .cols = 1, .row_params = nullptr, .out = &out}, nullptr);
  EXPECT_NE(s.message().find("row_params"), std::string::npos) << s;
  const int64_t huge = int64_t{1} << 31;
  s = SampleCuda({.logits = &x, .ld = huge, .rows = 1, .cols = huge, .row_params = &rp, .out = &out}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("SampleCuda"), std::string::npos) << s;
}

}  // namespace
}  // namespace quarry
