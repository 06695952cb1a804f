// SSD scan: hand-computed recurrence, softplus threshold, chunked == recurrence over a grid, split calls.
#include "kernels/ssd_scan.h"

#include "kernels/dtype.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::MaxAbsDiff;
using testing::RandomVector;

// Inputs of one SSD problem, token-major with unpadded strides.
struct SsdCase {
  int64_t t, h, p, groups, n;
  std::vector<float> x, dt_raw, dt_bias, a, b, c, d, state, y;

  SsdCase(int64_t t_, int64_t h_, int64_t p_, int64_t g_, int64_t n_, uint32_t seed)
      : t(t_), h(h_), p(p_), groups(g_), n(n_) {
    x = RandomVector(t * h * p, seed);
    dt_raw = RandomVector(t * h, seed + 1, -3.0f, 1.0f);
    dt_bias = RandomVector(h, seed + 2, -0.5f, 0.5f);
    a = RandomVector(h, seed + 3, -1.5f, -0.1f);
    b = RandomVector(t * groups * n, seed + 4);
    c = RandomVector(t * groups * n, seed + 5);
    d = RandomVector(h, seed + 6);
    state = RandomVector(h * p * n, seed + 7);  // non-zero incoming state
    y.assign(t * h * p, NAN);
  }

  // Params for tokens [t0, t0 + len).
  SsdParams Params(int64_t t0, int64_t len, int64_t chunk) {
    SsdParams q;
    q.x = x.data() + t0 * h * p;
    q.ldx = h * p;
    q.dt_raw = dt_raw.data() + t0 * h;
    q.lddt = h;
    q.dt_bias = dt_bias.data();
    q.a = a.data();
    q.b = b.data() + t0 * groups * n;
    q.ldb = groups * n;
    q.c = c.data() + t0 * groups * n;
    q.ldc = groups * n;
    q.d = d.data();
    q.state = state.data();
    q.y = y.data() + t0 * h * p;
    q.ldy = h * p;
    q.t = len;
    q.h = h;
    q.p = p;
    q.groups = groups;
    q.n = n;
    q.chunk_size = chunk;
    return q;
  }
};

TEST(SsdTest, HandComputedTwoTokens) {
  // h = p = n = groups = 1. dt_raw = 0, dt_bias = log(e - 1) -> dt = log1p(e - 1) = 1; a = -ln 2 -> dA = 1/2.
  // x = [2, 4], b = c = [1, 1], D = 0.5, S0 = 0:
  //   S1 = 0.5*0 + 1*2*1 = 2, y1 = 2*1 + 0.5*2 = 3;  S2 = 0.5*2 + 1*4*1 = 5, y2 = 5 + 0.5*4 = 7.
  for (int chunked = 0; chunked < 2; ++chunked) {
    SsdCase s(2, 1, 1, 1, 1, 1);
    s.x = {2, 4};
    s.dt_raw = {0, 0};
    s.dt_bias = {static_cast<float>(std::log(std::exp(1.0) - 1.0))};
    s.a = {static_cast<float>(-std::log(2.0))};
    s.b = {1, 1};
    s.c = {1, 1};
    s.d = {0.5f};
    s.state = {0};
    SsdParams p = s.Params(0, 2, 256);
    ASSERT_TRUE((chunked ? SsdChunkedScanCpu(p) : SsdStateUpdateCpu(p)).ok());
    EXPECT_NEAR(s.y[0], 3.0f, 1e-6) << chunked;
    EXPECT_NEAR(s.y[1], 7.0f, 1e-6) << chunked;
    EXPECT_NEAR(s.state[0], 5.0f, 1e-6) << chunked;
  }
}

TEST(SsdTest, SoftplusFollowsTorchThreshold) {
  // a = 0 (dA = 1), x = b = 1, S0 = 0, D = 0: one step leaves S = dt, so y = dt * c = dt.
  struct Case {
    float raw, dt;
  };
  // 25 > 20 -> identity; 0 -> ln 2; -30 -> log1p(e^-30) = 9.357623e-14 (not flushed to 0); 20 -> log1p(e^20).
  for (const Case& cs : {Case{25.0f, 25.0f}, Case{0.0f, 0.6931472f}, Case{-30.0f, 9.357623e-14f},
                         Case{20.0f, static_cast<float>(std::log1p(std::exp(20.0)))}}) {
    SsdCase s(1, 1, 1, 1, 1, 2);
    s.x = {1};
    s.dt_raw = {cs.raw};
    s.dt_bias = {0};
    s.a = {0};
    s.b = {1};
    s.c = {1};
    s.d = {0};
    s.state = {0};
    SsdParams p = s.Params(0, 1, 1);
    ASSERT_TRUE(SsdStateUpdateCpu(p).ok());
    EXPECT_FLOAT_EQ(s.state[0], cs.dt) << cs.raw;
    EXPECT_FLOAT_EQ(s.y[0], cs.dt) << cs.raw;
  }
}

TEST(SsdTest, ChunkedEqualsRecurrence) {
  uint32_t seed = 10;
  for (int64_t t : {1, 2, 7, 8, 9, 45, 70}) {
    for (int64_t chunk : {1, 3, 8, 16, 256}) {
      for (int64_t groups : {1, 2}) {
        SsdCase rec(t, 4, 5, groups, 6, seed);
        SsdCase chk(t, 4, 5, groups, 6, seed);
        seed += 11;
        ASSERT_TRUE(SsdStateUpdateCpu(rec.Params(0, t, chunk)).ok());
        ASSERT_TRUE(SsdChunkedScanCpu(chk.Params(0, t, chunk)).ok());
        EXPECT_LT(MaxAbsDiff(rec.y, chk.y), 1e-4) << "t=" << t << " chunk=" << chunk << " groups=" << groups;
        EXPECT_LT(MaxAbsDiff(rec.state, chk.state), 1e-4) << "t=" << t << " chunk=" << chunk << " groups=" << groups;
      }
    }
  }
}

TEST(SsdTest, GroupMappingUsesConsecutiveHeadBlocks) {
  // 4 heads, 2 groups: heads 0,1 use group 0, heads 2,3 group 1. Give group 1 zero B: heads 2,3 then
  // only decay their state and their output is exp(dt*a)*S·C + D*x.
  SsdCase s(1, 4, 1, 2, 1, 3);
  s.b = {1.0f, 0.0f};
  s.c = {1.0f, 1.0f};
  s.state = {0, 0, 0, 0};
  ASSERT_TRUE(SsdStateUpdateCpu(s.Params(0, 1, 1)).ok());
  for (int hd = 0; hd < 4; ++hd) {
    const double dt = std::log1p(std::exp(static_cast<double>(s.dt_raw[hd]) + s.dt_bias[hd]));
    const double expect_state = hd < 2 ? dt * s.x[hd] : 0.0;
    EXPECT_NEAR(s.state[hd], expect_state, 1e-6) << hd;
    EXPECT_NEAR(s.y[hd], expect_state + s.d[hd] * s.x[hd], 1e-6) << hd;
  }
}

TEST(SsdTest, SplitSequenceEqualsOneCall) {
  for (int chunked = 0; chunked < 2; ++chunked) {
    for (int64_t split : {1, 5, 16, 29}) {
      SsdCase whole(37, 3, 4, 1, 8, 77);
      SsdCase parts(37, 3, 4, 1, 8, 77);
      auto run = [&](SsdCase& s, int64_t t0, int64_t len) {
        SsdParams p = s.Params(t0, len, 8);
        return chunked ? SsdChunkedScanCpu(p) : SsdStateUpdateCpu(p);
      };
      ASSERT_TRUE(run(whole, 0, 37).ok());
      ASSERT_TRUE(run(parts, 0, split).ok());
      ASSERT_TRUE(run(parts, split, 37 - split).ok());
      EXPECT_LT(MaxAbsDiff(whole.y, parts.y), 1e-4) << chunked << " split " << split;
      EXPECT_LT(MaxAbsDiff(whole.state, parts.state), 1e-4) << chunked << " split " << split;
      EXPECT_FALSE(testing::AnyNan(parts.y));
    }
  }
}

TEST(SsdTest, StridedInputsMatchPacked) {
  // The model passes x, B, C as column slices of the conv output (token stride = conv width).
  SsdCase packed(9, 2, 3, 1, 4, 5);
  const int64_t w = 40;  // padded token stride for every input and y
  std::vector<float> x(9 * w), b(9 * w), c(9 * w), dt(9 * w), y(9 * w, 0.0f);
  for (int64_t i = 0; i < 9; ++i) {
    for (int64_t j = 0; j < 6; ++j) x[i * w + 1 + j] = packed.x[i * 6 + j];
    for (int64_t j = 0; j < 4; ++j) b[i * w + 2 + j] = packed.b[i * 4 + j];
    for (int64_t j = 0; j < 4; ++j) c[i * w + 3 + j] = packed.c[i * 4 + j];
    for (int64_t j = 0; j < 2; ++j) dt[i * w + 4 + j] = packed.dt_raw[i * 2 + j];
  }
  std::vector<float> state2 = packed.state;
  ASSERT_TRUE(SsdChunkedScanCpu(packed.Params(0, 9, 4)).ok());
  SsdParams q = packed.Params(0, 9, 4);
  q.x = x.data() + 1, q.ldx = w, q.b = b.data() + 2, q.ldb = w, q.c = c.data() + 3, q.ldc = w;
  q.dt_raw = dt.data() + 4, q.lddt = w, q.y = y.data() + 5, q.ldy = w, q.state = state2.data();
  ASSERT_TRUE(SsdChunkedScanCpu(q).ok());
  for (int64_t i = 0; i < 9; ++i) {
    for (int64_t j = 0; j < 6; ++j) EXPECT_FLOAT_EQ(y[i * w + 5 + j], packed.y[i * 6 + j]);
  }
  EXPECT_LT(MaxAbsDiff(state2, packed.state), 1e-6);
}

TEST(SsdScanTest, Bf16StateStorageEqualsF32MathRoundedOnce) {
  for (int64_t t : {1, 9}) {
    SsdCase f32(t, 4, 8, 2, 16, 40);
    for (float& v : f32.state) v = Bf16ToFloat(FloatToBf16(v));  // a state bf16 can hold exactly
    SsdCase bf(t, 4, 8, 2, 16, 40);
    std::vector<uint16_t> stored(bf.state.size());
    for (size_t i = 0; i < stored.size(); ++i) stored[i] = FloatToBf16(bf.state[i]);
    SsdParams pf = f32.Params(0, t, 4);
    SsdParams pb = bf.Params(0, t, 4);
    pb.state = nullptr;
    pb.state_bf16 = stored.data();
    if (t == 1) {
      ASSERT_TRUE(SsdStateUpdateCpu(pf).ok());
      ASSERT_TRUE(SsdStateUpdateCpu(pb).ok());
    } else {
      ASSERT_TRUE(SsdChunkedScanCpu(pf).ok());
      ASSERT_TRUE(SsdChunkedScanCpu(pb).ok());
    }
    EXPECT_EQ(MaxAbsDiff(f32.y, bf.y), 0.0) << "t " << t;  // same f32 math on the same values
    for (size_t i = 0; i < stored.size(); ++i) ASSERT_EQ(stored[i], FloatToBf16(f32.state[i])) << i;
  }
  SsdCase both(2, 2, 4, 1, 8, 1);
  SsdParams q = both.Params(0, 2, 2);
  std::vector<uint16_t> extra(both.state.size());
  q.state_bf16 = extra.data();  // both set: refused
  EXPECT_EQ(SsdChunkedScanCpu(q).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
