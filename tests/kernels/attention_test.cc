// Attention: hand-computed softmax, GQA vs a naive reference, chunked prefill and decode equivalence.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::MaxAbsDiff;
using testing::RandomVector;

AttentionParams Make(const float* q, const std::vector<float>& k, const std::vector<float>& v, float* out,
                     int64_t t, int64_t kv_len, int64_t q_pos0, int64_t n_q, int64_t n_kv, int64_t d_h,
                     float scale) {
  return AttentionParams{.q = q, .ldq = n_q * d_h, .k = k.data(), .ldk = n_kv * d_h, .v = v.data(),
                         .ldv = n_kv * d_h, .out = out, .ldo = n_q * d_h, .t = t, .kv_len = kv_len,
                         .q_pos0 = q_pos0, .n_q = n_q, .n_kv = n_kv, .d_h = d_h, .scale = scale};
}

TEST(AttentionTest, HandComputedTwoKeys) {
  // d_h = 1, one head. q = [1, 1], k = [0, ln 3], v = [4, 8], scale 1.
  // Row 0 sees key 0 only -> 4. Row 1: scores [0, ln 3] -> softmax [1/4, 3/4] -> 1 + 6 = 7.
  const std::vector<float> q = {1, 1}, k = {0, static_cast<float>(std::log(3.0))}, v = {4, 8};
  std::vector<float> out(2);
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, out.data(), 2, 2, 0, 1, 1, 1, 1.0f)).ok());
  EXPECT_FLOAT_EQ(out[0], 4.0f);
  EXPECT_NEAR(out[1], 7.0f, 1e-5);
  // Scale 0.5 with q = 2 gives the same scores.
  const std::vector<float> q2 = {2, 2};
  ASSERT_TRUE(AttentionCpu(Make(q2.data(), k, v, out.data(), 2, 2, 0, 1, 1, 1, 0.5f)).ok());
  EXPECT_NEAR(out[1], 7.0f, 1e-5);
}

TEST(AttentionTest, LargeScoresAreStable) {
  // Scores 1000 and 1000 + ln 3 overflow exp() without the max subtraction; the result is still 7.
  const std::vector<float> q = {1000, 1000}, k = {1, 1 + static_cast<float>(std::log(3.0)) / 1000}, v = {4, 8};
  std::vector<float> out(2);
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, out.data(), 2, 2, 0, 1, 1, 1, 1.0f)).ok());
  EXPECT_NEAR(out[1], 7.0f, 1e-3);
}

// Naive reference in double: query head hq uses KV head hq / (n_q / n_kv).
std::vector<float> Reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                             int64_t t, int64_t q_pos0, int64_t n_q, int64_t n_kv, int64_t d_h, float scale) {
  std::vector<float> out(t * n_q * d_h);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t hq = 0; hq < n_q; ++hq) {
      const int64_t hk = hq / (n_q / n_kv);
      const int64_t len = q_pos0 + i + 1;
      std::vector<double> s(len);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < len; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d_h; ++e) dot += double(q[(i * n_q + hq) * d_h + e]) * k[(j * n_kv + hk) * d_h + e];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t e = 0; e < d_h; ++e) {
        double o = 0;
        for (int64_t j = 0; j < len; ++j) o += s[j] / sum * v[(j * n_kv + hk) * d_h + e];
        out[(i * n_q + hq) * d_h + e] = static_cast<float>(o);
      }
    }
  }
  return out;
}

TEST(AttentionTest, GqaMatchesNaiveReference) {
  const int64_t t = 13, n_q = 6, n_kv = 2, d_h = 9;
  const float scale = 0.25f;
  const std::vector<float> q = RandomVector(t * n_q * d_h, 1, -2, 2), k = RandomVector(t * n_kv * d_h, 2, -2, 2),
                           v = RandomVector(t * n_kv * d_h, 3);
  std::vector<float> out(t * n_q * d_h);
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, out.data(), t, t, 0, n_q, n_kv, d_h, scale)).ok());
  EXPECT_LT(MaxAbsDiff(out, Reference(q, k, v, t, 0, n_q, n_kv, d_h, scale)), 1e-5);
}

TEST(AttentionTest, ChunkedPrefillAndDecodeEqualOnePass) {
  // Big enough to take the parallel path: 12 heads, 4 KV heads, d_h 128, 70 tokens.
  const int64_t t = 70, n_q = 12, n_kv = 4, d_h = 128, split = 33;
  const float scale = 1.0f / 128;
  const std::vector<float> q = RandomVector(t * n_q * d_h, 4, -3, 3), k = RandomVector(t * n_kv * d_h, 5, -3, 3),
                           v = RandomVector(t * n_kv * d_h, 6);
  std::vector<float> full(t * n_q * d_h), chunked(t * n_q * d_h);
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, full.data(), t, t, 0, n_q, n_kv, d_h, scale)).ok());
  EXPECT_LT(MaxAbsDiff(full, Reference(q, k, v, t, 0, n_q, n_kv, d_h, scale)), 1e-5);
  // Chunk 1: queries [0, split) with the cache holding keys [0, split). Chunk 2: the rest, full cache.
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, chunked.data(), split, split, 0, n_q, n_kv, d_h, scale)).ok());
  const int64_t row = n_q * d_h;
  ASSERT_TRUE(AttentionCpu(Make(q.data() + split * row, k, v, chunked.data() + split * row, t - split, t, split, n_q,
                                n_kv, d_h, scale))
                  .ok());
  EXPECT_LT(MaxAbsDiff(full, chunked), 1e-6);
  // Decode: t = 1, q_pos0 = kv_len - 1 equals the last row of the full pass.
  std::vector<float> dec(row);
  ASSERT_TRUE(AttentionCpu(Make(q.data() + (t - 1) * row, k, v, dec.data(), 1, t, t - 1, n_q, n_kv, d_h, scale)).ok());
  EXPECT_LT(MaxAbsDiff(dec, std::vector<float>(full.end() - row, full.end())), 1e-6);
}

TEST(AttentionTest, PagedEqualsContiguous) {
  // 37 positions in pages of 5 scattered over a pool of 12 pages (page order shuffled).
  const int64_t t = 37, n_q = 6, n_kv = 2, d_h = 16, bs = 5, pool_pages = 12;
  const float scale = 0.25f;
  const std::vector<float> q = RandomVector(t * n_q * d_h, 7, -2, 2), k = RandomVector(t * n_kv * d_h, 8, -2, 2),
                           v = RandomVector(t * n_kv * d_h, 9);
  const std::vector<int32_t> table = {9, 2, 11, 0, 5, 7, 3, 10};  // ceil(37 / 5) = 8 pages
  const int64_t row = n_kv * d_h;
  std::vector<float> kp(pool_pages * bs * row, NAN), vp(pool_pages * bs * row, NAN);
  for (int64_t j = 0; j < t; ++j) {
    const int64_t dst = (table[j / bs] * bs + j % bs) * row;
    std::copy_n(k.data() + j * row, row, kp.data() + dst);
    std::copy_n(v.data() + j * row, row, vp.data() + dst);
  }
  std::vector<float> contiguous(t * n_q * d_h), paged(t * n_q * d_h);
  ASSERT_TRUE(AttentionCpu(Make(q.data(), k, v, contiguous.data(), t, t, 0, n_q, n_kv, d_h, scale)).ok());
  AttentionParams p = Make(q.data(), kp, vp, paged.data(), t, t, 0, n_q, n_kv, d_h, scale);
  p.block_table = table.data();
  p.block_size = bs;
  ASSERT_TRUE(AttentionCpu(p).ok());
  EXPECT_EQ(MaxAbsDiff(contiguous, paged), 0.0);  // same arithmetic, only addressing differs
  // Decode of the last position through the pages.
  std::vector<float> dec(n_q * d_h);
  p.q = q.data() + (t - 1) * n_q * d_h;
  p.out = dec.data();
  p.t = 1;
  p.q_pos0 = t - 1;
  ASSERT_TRUE(AttentionCpu(p).ok());
  EXPECT_EQ(MaxAbsDiff(dec, std::vector<float>(contiguous.end() - n_q * d_h, contiguous.end())), 0.0);
  p.block_size = 0;
  EXPECT_EQ(AttentionCpu(p).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
