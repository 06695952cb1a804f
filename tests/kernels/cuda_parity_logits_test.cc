// CUDA parity of the logits processors (kernels/logits_process.h): LogitsAdjustCuda bit-identical to
// LogitsAdjustCpu over random sparse entries (bias / repetition / subtract, bans overlapping adjusted tokens,
// strided rows, rows with nothing); LogprobsCuda against LogprobsCpu (the chosen token through a token index,
// top 20 exactly, values within double-sum rounding). Skips without a GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda_ops.h"
#include "kernels/logits_process.h"
#include "tests/kernels/cuda_test_util.h"

namespace quarry {
namespace {

using testing::CudaParityTest;
using testing::DeviceBuffer;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

TEST_F(CudaParityTest, LogitsAdjustMatchesCpuBitForBit) {
  const int64_t rows = 6, cols = 3001, ld = cols + 5;
  std::mt19937 rng(77);
  std::normal_distribution<float> body(0.0f, 3.0f);
  std::vector<float> x(rows * ld);
  for (float& v : x) v = body(rng);
  std::vector<int32_t> off = {0}, ban_off = {0}, ban;
  std::vector<LogitAdjust> adjust;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    // Row r adjusts r * 300 distinct tokens (row 0 none: a long prompt's repetition set in the last rows).
    std::vector<int32_t> ids(cols);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    const int n = static_cast<int>(r * 300);
    for (int i = 0; i < n; ++i) {
      LogitAdjust a{.token = ids[i]};
      if (i % 3 == 0) a.bias = (u(rng) - 0.5f) * 20.0f;
      if (i % 2 == 0) a.repetition = 1.0f + u(rng) * 1.7f;
      if (i % 5 < 2) a.subtract = u(rng) * 1.3f + 0.7f * static_cast<float>(i % 4);
      adjust.push_back(a);
    }
    off.push_back(static_cast<int32_t>(adjust.size()));
    for (int i = 0; i < static_cast<int>(r % 3); ++i) ban.push_back(ids[i]);  // also adjusted: the ban wins
    if (r == 4) ban.push_back(ids[0]);                                        // a duplicate ban
    ban_off.push_back(static_cast<int32_t>(ban.size()));
  }
  std::vector<float> cpu = x;
  ASSERT_TRUE(LogitsAdjustCpu({cpu.data(), ld, rows, cols, off.data(), adjust.data(), ban_off.data(), ban.data()}).ok());
  DeviceBuffer<float> dx(x);
  DeviceBuffer<int32_t> doff(off), dban_off(ban_off), dban(ban);
  DeviceBuffer<LogitAdjust> dadj(adjust);
  ASSERT_TRUE(
      LogitsAdjustCuda({dx.get(), ld, rows, cols, doff.get(), dadj.get(), dban_off.get(), dban.get()}, nullptr).ok());
  const std::vector<float> gpu = dx.Download();
  int changed = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(std::memcmp(&gpu[i], &cpu[i], 4), 0) << "at " << i << ": gpu " << gpu[i] << " cpu " << cpu[i];
    changed += cpu[i] != x[i];
  }
  EXPECT_GT(changed, 3000);  // the adjustments did something (4500 entries, some of them all-neutral)
  // Bans only, and nothing at all.
  std::vector<float> y = x;
  DeviceBuffer<float> dy(y);
  ASSERT_TRUE(LogitsAdjustCuda({dy.get(), ld, rows, cols, nullptr, nullptr, dban_off.get(), dban.get()}, nullptr).ok());
  ASSERT_TRUE(LogitsAdjustCpu({y.data(), ld, rows, cols, nullptr, nullptr, ban_off.data(), ban.data()}).ok());
  EXPECT_EQ(dy.Download(), y);
  ASSERT_TRUE(LogitsAdjustCuda({dy.get(), ld, rows, cols}, nullptr).ok());
  EXPECT_EQ(dy.Download(), y);
}

TEST_F(CudaParityTest, LogprobsMatchCpu) {
  const int64_t rows = 5, cols = 4099, ld = cols + 2;
  std::mt19937 rng(5);
  std::normal_distribution<float> body(0.0f, 2.5f);
  std::vector<float> x(rows * ld, kNan);  // padding NaN: never read
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) x[r * ld + c] = body(rng);
  }
  // Row 1: ties at the top (lower id first); row 2: a NaN (normaliser NaN, NaN ranked last); row 3: -inf tokens
  // (banned), rounded-to-equal values in the top 20.
  x[1 * ld + 100] = x[1 * ld + 3000] = x[1 * ld + 7] = 20.0f;
  x[2 * ld + 55] = kNan;
  for (int c = 0; c < 40; ++c) x[3 * ld + c] = c % 2 ? -std::numeric_limits<float>::infinity() : 9.0f;
  const std::vector<int32_t> tokens = {11, 100, 55, 2, 4098, 17, -1};  // the sampler's output (device rows)
  const std::vector<int32_t> index = {0, 1, 2, 3, 4};
  for (int32_t top_n : {0, 1, 20}) {
    SCOPED_TRACE(top_n);
    std::vector<float> chosen(rows), lp(rows * top_n);
    std::vector<int32_t> ids(rows * top_n);
    ASSERT_TRUE(LogprobsCpu({x.data(), ld, rows, cols, tokens.data(), index.data(), top_n, chosen.data(),
                             ids.data(), lp.data()})
                    .ok());
    DeviceBuffer<float> dx(x), dchosen(chosen), dlp(lp);
    DeviceBuffer<int32_t> dtokens(tokens), dindex(index), dids(ids);
    ASSERT_TRUE(LogprobsCuda({dx.get(), ld, rows, cols, dtokens.get(), dindex.get(), top_n, dchosen.get(),
                              dids.get(), dlp.get()},
                             nullptr)
                    .ok());
    const std::vector<float> g_chosen = dchosen.Download(), g_lp = dlp.Download();
    EXPECT_EQ(dids.Download(), ids);
    for (int64_t r = 0; r < rows; ++r) {
      if (r == 2) {
        EXPECT_TRUE(std::isnan(g_chosen[r]));
        continue;
      }
      EXPECT_NEAR(g_chosen[r], chosen[r], 2e-5) << "row " << r;
      for (int j = 0; j < top_n; ++j) EXPECT_NEAR(g_lp[r * top_n + j], lp[r * top_n + j], 2e-5) << r << "," << j;
    }
  }
  // A chosen token outside the row gives NaN on both sides; a row narrower than top_n pads.
  const std::vector<float> small = {1.0f, 2.0f, 3.0f};
  const std::vector<int32_t> bad = {3};
  std::vector<float> chosen(1), lp(5);
  std::vector<int32_t> ids(5);
  DeviceBuffer<float> ds(small), dchosen(chosen), dlp(lp);
  DeviceBuffer<int32_t> dbad(bad), dids(ids);
  ASSERT_TRUE(LogprobsCpu({small.data(), 3, 1, 3, bad.data(), nullptr, 5, chosen.data(), ids.data(), lp.data()}).ok());
  ASSERT_TRUE(
      LogprobsCuda({ds.get(), 3, 1, 3, dbad.get(), nullptr, 5, dchosen.get(), dids.get(), dlp.get()}, nullptr).ok());
  EXPECT_TRUE(std::isnan(dchosen.Download()[0]));
  EXPECT_EQ(dids.Download(), ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 1, 0, -1, -1}));
  const std::vector<float> g = dlp.Download();
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(g[j], lp[j], 1e-6);
  for (int j = 3; j < 5; ++j) EXPECT_EQ(g[j], lp[j]);  // -inf padding
}

}  // namespace
}  // namespace quarry
