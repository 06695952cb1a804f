// CUDA parity: every CUDA op against its CPU reference on random inputs with odd shapes.
// Skips (GTEST_SKIP) when no CUDA device is present.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda_ops.h"
#include "kernels/moe.h"
#include "kernels/moe_grouped.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::AnyNan;
using testing::OwnedMatrix;
using testing::RandomVector;
using testing::CudaParityTest;
using testing::DeviceBuffer;
using testing::DeviceMatrix;
using testing::ExpectClose;

TEST_F(CudaParityTest, Linear) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 1536, 257}, {3, 7, 5}, {70, 100, 130},
                           {130, 1536, 64}}) {
      const int64_t ldx = k + 3, ldy = n + 1;
      const std::vector<float> x = RandomVector(m * ldx, 1);
      OwnedMatrix w(RandomVector(n * k, 2), dt, n, k);
      for (bool accumulate : {false, true}) {
        std::vector<float> y = RandomVector(m * ldy, 3);
        DeviceBuffer<float> dx(x), dy(y);
        DeviceMatrix dw(w);
        LinearParams cpu{.x = x.data(), .ldx = ldx, .w = w.view, .y = y.data(), .ldy = ldy, .m = m,
                         .accumulate = accumulate};
        LinearParams gpu = cpu;
        gpu.x = dx.get(), gpu.y = dy.get(), gpu.w = dw.view;
        ASSERT_TRUE(LinearCpu(cpu).ok());
        ASSERT_TRUE(LinearCuda(gpu, nullptr).ok());
        ExpectClose(dy.Download(), y, 1e-4, DTypeName(dt));
      }
    }
  }
}

TEST_F(CudaParityTest, RmsNormAndGatedRmsNorm) {
  const int64_t n = 7, d = 1000, ld = 1003;
  const std::vector<float> x = RandomVector(n * ld, 4), z = RandomVector(n * ld, 5, -4, 4), w = RandomVector(d, 6);
  std::vector<float> y(n * ld, 0.0f);
  DeviceBuffer<float> dx(x), dz(z), dw(w), dy(y);
  RmsNormParams cpu{.x = x.data(), .ldx = ld, .weight = w.data(), .y = y.data(), .ldy = ld, .n = n, .d = d};
  RmsNormParams gpu = cpu;
  gpu.x = dx.get(), gpu.weight = dw.get(), gpu.y = dy.get();
  ASSERT_TRUE(RmsNormCpu(cpu).ok());
  ASSERT_TRUE(RmsNormCuda(gpu, nullptr).ok());
  ExpectClose(dy.Download(), y, 1e-4, "RmsNorm");
  for (int64_t group : {d, int64_t{250}}) {
    GatedRmsNormParams gc{.x = x.data(), .ldx = ld, .z = z.data(), .ldz = ld, .weight = w.data(), .y = y.data(),
                          .ldy = ld, .n = n, .d = d, .group_size = group};
    GatedRmsNormParams gg = gc;
    gg.x = dx.get(), gg.z = dz.get(), gg.weight = dw.get(), gg.y = dy.get();
    ASSERT_TRUE(GatedRmsNormCpu(gc).ok());
    ASSERT_TRUE(GatedRmsNormCuda(gg, nullptr).ok());
    ExpectClose(dy.Download(), y, 1e-4, "GatedRmsNorm");
  }
}

// Every row length class of the norm kernels: register-staged (1, 2, ..., 16 elements per thread, partial last
// slice) and the looping form past 4096, for RmsNorm, AddRmsNorm (aliasing y == h's row is not allowed, so
// separate) and GatedRmsNorm with one and several groups; one row (decode) and several.
TEST_F(CudaParityTest, NormsOverEveryRowLengthClass) {
  uint32_t seed = 300;
  for (int64_t d : {int64_t{1}, int64_t{200}, int64_t{511}, int64_t{1536}, int64_t{3072}, int64_t{4096},
                    int64_t{5000}}) {
    for (int64_t n : {int64_t{1}, int64_t{3}}) {
      SCOPED_TRACE("d=" + std::to_string(d) + " n=" + std::to_string(n));
      const int64_t ld = d + 3;
      const std::vector<float> x = RandomVector(n * ld, seed++), z = RandomVector(n * ld, seed++, -4, 4),
                               w = RandomVector(d, seed++);
      std::vector<float> y(n * ld, 0.0f), h = RandomVector(n * ld, seed++);
      DeviceBuffer<float> dx(x), dz(z), dw(w), dy(y), dh(h);
      RmsNormParams rc{.x = x.data(), .ldx = ld, .weight = w.data(), .y = y.data(), .ldy = ld, .n = n, .d = d};
      RmsNormParams rg = rc;
      rg.x = dx.get(), rg.weight = dw.get(), rg.y = dy.get();
      ASSERT_TRUE(RmsNormCpu(rc).ok());
      ASSERT_TRUE(RmsNormCuda(rg, nullptr).ok());
      ExpectClose(dy.Download(), y, 1e-4, "RmsNorm");
      AddRmsNormParams ac{h.data(), ld, x.data(), ld, 0.3f, w.data(), y.data(), ld, n, d, 1e-5f};
      AddRmsNormParams ag = ac;
      ag.h = dh.get(), ag.x = dx.get(), ag.weight = dw.get(), ag.y = dy.get();
      ASSERT_TRUE(AddRmsNormCpu(ac).ok());
      ASSERT_TRUE(AddRmsNormCuda(ag, nullptr).ok());
      ExpectClose(dh.Download(), h, 1e-6, "AddRmsNorm h");
      ExpectClose(dy.Download(), y, 1e-4, "AddRmsNorm y");
      for (int64_t group : {d, d % 2 == 0 ? d / 2 : d}) {
        GatedRmsNormParams gc{.x = x.data(), .ldx = ld, .z = z.data(), .ldz = ld, .weight = w.data(), .y = y.data(),
                              .ldy = ld, .n = n, .d = d, .group_size = group};
        GatedRmsNormParams gg = gc;
        gg.x = dx.get(), gg.z = dz.get(), gg.weight = dw.get(), gg.y = dy.get();
        ASSERT_TRUE(GatedRmsNormCpu(gc).ok());
        ASSERT_TRUE(GatedRmsNormCuda(gg, nullptr).ok());
        ExpectClose(dy.Download(), y, 1e-4, "GatedRmsNorm");
      }
    }
  }
}

TEST_F(CudaParityTest, EmbeddingIncludingBadIdsAsNan) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    OwnedMatrix table(RandomVector(50 * 33, 7), dt, 50, 33);
    DeviceMatrix dtable(table);
    const std::vector<int32_t> ids = {0, 49, 7, 7, 13};
    std::vector<float> y(ids.size() * 33);
    DeviceBuffer<int32_t> dids(ids);
    DeviceBuffer<float> dy(y);
    EmbeddingParams cpu{.ids = ids.data(), .n = 5, .table = table.view, .multiplier = 12.0f, .y = y.data()};
    EmbeddingParams gpu{.ids = dids.get(), .n = 5, .table = dtable.view, .multiplier = 12.0f, .y = dy.get()};
    ASSERT_TRUE(EmbeddingCpu(cpu).ok());
    ASSERT_TRUE(EmbeddingCuda(gpu, nullptr).ok());
    ExpectClose(dy.Download(), y, 1e-6, DTypeName(dt));
    DeviceBuffer<int32_t> bad(std::vector<int32_t>{3, 50});
    gpu.ids = bad.get();
    gpu.n = 2;
    ASSERT_TRUE(EmbeddingCuda(gpu, nullptr).ok());
    const std::vector<float> out = dy.Download();
    EXPECT_FALSE(std::isnan(out[0]));
    EXPECT_TRUE(std::isnan(out[33]));
  }
}

// The first layer's input norm in the embedding's pass (EmbeddingParams::norm_weight): bit for bit what
// EmbeddingCuda + RmsNormCuda give (rows of 33, 1536 and 5000 columns: RmsNormCuda's register and looping forms),
// close to the CPU's; a bad id's row is NaN in both outputs; norm_y aliasing y is refused by name.
TEST_F(CudaParityTest, EmbeddingRunsTheFirstNorm) {
  for (int64_t d : {int64_t{33}, int64_t{1536}, int64_t{5000}}) {
    SCOPED_TRACE(absl::StrCat("d ", d));
    OwnedMatrix table(RandomVector(20 * d, 930), DType::kBF16, 20, d);
    DeviceMatrix dtable(table);
    const std::vector<int32_t> ids = {0, 19, 7, 7, 13, 25};  // 25: outside the vocabulary
    const int64_t n = static_cast<int64_t>(ids.size()), ld = d + 3;
    const std::vector<float> nw = RandomVector(d, 931, 0.5f, 1.5f);
    DeviceBuffer<int32_t> dids(ids);
    DeviceBuffer<float> dnw(nw), dh(std::vector<float>(n * d)), du(std::vector<float>(n * ld)),
        dh2(std::vector<float>(n * d)), du2(std::vector<float>(n * ld));
    EmbeddingParams gpu{.ids = dids.get(), .n = n, .table = dtable.view, .multiplier = 12.0f, .y = dh.get()};
    gpu.norm_weight = dnw.get(), gpu.norm_eps = 1e-5f, gpu.norm_y = du.get(), gpu.ld_norm_y = ld;
    ASSERT_TRUE(EmbeddingCuda(gpu, nullptr).ok());
    EmbeddingParams apart = gpu;
    apart.norm_weight = nullptr, apart.y = dh2.get();
    ASSERT_TRUE(EmbeddingCuda(apart, nullptr).ok());
    ASSERT_TRUE(RmsNormCuda({dh2.get(), d, dnw.get(), du2.get(), ld, n, d, 1e-5f}, nullptr).ok());
    const std::vector<float> u = du.Download(), u2 = du2.Download();
    for (size_t i = 0; i < u.size(); ++i) {
      const bool nan = std::isnan(u[i]);
      ASSERT_EQ(nan, std::isnan(u2[i])) << i;
      if (!nan) ASSERT_EQ(u[i], u2[i]) << "fused vs EmbeddingCuda + RmsNormCuda at " << i;
    }
    for (int64_t c = 0; c < d; ++c) EXPECT_TRUE(std::isnan(u[5 * ld + c])) << "the bad id's normalised row";
    // CPU (valid ids only).
    std::vector<float> h(5 * d), uc(5 * ld, 0.0f);
    EmbeddingParams cpu{.ids = ids.data(), .n = 5, .table = table.view, .multiplier = 12.0f, .y = h.data()};
    cpu.norm_weight = nw.data(), cpu.norm_eps = 1e-5f, cpu.norm_y = uc.data(), cpu.ld_norm_y = ld;
    ASSERT_TRUE(EmbeddingCpu(cpu).ok());
    const std::vector<float> got(u.begin(), u.begin() + 5 * ld);
    for (int64_t r = 0; r < 5; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        ASSERT_NEAR(got[r * ld + c], uc[r * ld + c], 1e-4 * std::max(1.0f, std::fabs(uc[r * ld + c])));
      }
    }
    EmbeddingParams bad = gpu;
    bad.norm_y = bad.y, bad.ld_norm_y = d;
    const absl::Status st = EmbeddingCuda(bad, nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(std::string(st.message()).find("norm_y"), std::string::npos) << st;
  }
}

TEST_F(CudaParityTest, SwigluTopKScaledAddScale) {
  const int64_t n = 9, i = 37, e = 64, k = 6;
  const std::vector<float> gu = RandomVector(n * 2 * i, 8, -3, 3);
  std::vector<float> y(n * i);
  DeviceBuffer<float> dgu(gu), dy(y);
  ASSERT_TRUE(SwigluCpu({.gate_up = gu.data(), .ld_in = 2 * i, .y = y.data(), .ldy = i, .n = n, .i = i}).ok());
  ASSERT_TRUE(SwigluCuda({.gate_up = dgu.get(), .ld_in = 2 * i, .y = dy.get(), .ldy = i, .n = n, .i = i}, nullptr).ok());
  ExpectClose(dy.Download(), y, 1e-5, "Swiglu");

  std::vector<float> logits = RandomVector(n * e, 9);
  logits[5] = logits[6] = 10.0f;  // a tie at the top of row 0: expert 5 first
  std::vector<int32_t> idx(n * k);
  std::vector<float> w(n * k);
  DeviceBuffer<float> dl(logits), dw(w);
  DeviceBuffer<int32_t> didx(idx);
  ASSERT_TRUE(TopKSoftmaxCpu({.logits = logits.data(), .n = n, .e = e, .k = k, .indices = idx.data(),
                              .weights = w.data()}).ok());
  ASSERT_TRUE(TopKSoftmaxCuda({.logits = dl.get(), .n = n, .e = e, .k = k, .indices = didx.get(),
                               .weights = dw.get()}, nullptr).ok());
  EXPECT_EQ(didx.Download(), idx);
  EXPECT_EQ(idx[0], 5);
  EXPECT_EQ(idx[1], 6);
  ExpectClose(dw.Download(), w, 1e-5, "TopKSoftmax");

  std::vector<float> acc = RandomVector(1001, 10);
  const std::vector<float> x = RandomVector(1001, 11);
  DeviceBuffer<float> dacc(acc), dx(x);
  ASSERT_TRUE(ScaledAddCpu({.y = acc.data(), .x = x.data(), .count = 1001, .scale = 0.22f}).ok());
  ASSERT_TRUE(ScaledAddCuda({.y = dacc.get(), .x = dx.get(), .count = 1001, .scale = 0.22f}, nullptr).ok());
  ASSERT_TRUE(ScaleCpu({.y = acc.data(), .count = 1001, .scale = 1.0f / 6}).ok());
  ASSERT_TRUE(ScaleCuda({.y = dacc.get(), .count = 1001, .scale = 1.0f / 6}, nullptr).ok());
  ExpectClose(dacc.Download(), acc, 1e-6, "ScaledAdd+Scale");
}

TEST_F(CudaParityTest, ConvUpdateAndSsdUpdateOverSeveralTokens) {
  const int64_t c = 333, kc = 4, steps = 5;
  const std::vector<float> x = RandomVector(steps * c, 12), w = RandomVector(c * kc, 13), bias = RandomVector(c, 14);
  std::vector<float> st = RandomVector(c * (kc - 1), 15), y(c);
  DeviceBuffer<float> dw(w), dbias(bias), dst(st), dy(y);
  for (int64_t s = 0; s < steps; ++s) {
    DeviceBuffer<float> dx(std::vector<float>(x.begin() + s * c, x.begin() + (s + 1) * c));
    CausalConv1dParams cpu{.x = x.data() + s * c, .ldx = c, .weight = w.data(), .bias = bias.data(),
                           .state = st.data(), .y = y.data(), .ldy = c, .t = 1, .c = c, .k = kc};
    CausalConv1dParams gpu = cpu;
    gpu.x = dx.get(), gpu.weight = dw.get(), gpu.bias = dbias.get(), gpu.state = dst.get(), gpu.y = dy.get();
    ASSERT_TRUE(CausalConv1dUpdateCpu(cpu).ok());
    ASSERT_TRUE(CausalConv1dUpdateCuda(gpu, nullptr).ok());
    ExpectClose(dy.Download(), y, 1e-5, "conv y");
  }
  ExpectClose(dst.Download(), st, 1e-6, "conv state");

  // SSD: h = 6, p = 5, groups = 2, n = 130 (more than one pass of 128 threads), 3 tokens in one call.
  const int64_t t = 3, h = 6, p = 5, g = 2, n = 130;
  const std::vector<float> sx = RandomVector(t * h * p, 16), dtr = RandomVector(t * h, 17, -3, 1),
                           dtb = RandomVector(h, 18), a = RandomVector(h, 19, -1.5f, -0.1f),
                           b = RandomVector(t * g * n, 20), cc = RandomVector(t * g * n, 21), d = RandomVector(h, 22);
  std::vector<float> state = RandomVector(h * p * n, 23), sy(t * h * p);
  DeviceBuffer<float> dsx(sx), ddtr(dtr), ddtb(dtb), da(a), db(b), dcc(cc), dd(d), dstate(state), dsy(sy);
  SsdParams cpu{.x = sx.data(), .ldx = h * p, .dt_raw = dtr.data(), .lddt = h, .dt_bias = dtb.data(), .a = a.data(),
                .b = b.data(), .ldb = g * n, .c = cc.data(), .ldc = g * n, .d = d.data(), .state = state.data(),
                .y = sy.data(), .ldy = h * p, .t = t, .h = h, .p = p, .groups = g, .n = n};
  SsdParams gpu = cpu;
  gpu.x = dsx.get(), gpu.dt_raw = ddtr.get(), gpu.dt_bias = ddtb.get(), gpu.a = da.get(), gpu.b = db.get();
  gpu.c = dcc.get(), gpu.d = dd.get(), gpu.state = dstate.get(), gpu.y = dsy.get();
  ASSERT_TRUE(SsdStateUpdateCpu(cpu).ok());
  ASSERT_TRUE(SsdStateUpdateCuda(gpu, nullptr).ok());
  ExpectClose(dsy.Download(), sy, 1e-4, "ssd y");
  ExpectClose(dstate.Download(), state, 1e-4, "ssd state");
}

TEST(CudaValidationTest, ValidationRunsBeforeAnyCudaCall) {
  LinearParams p;
  const absl::Status s = LinearCuda(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

// Top-k over odd expert counts (not multiples of the warp), rows not a multiple of the block's four, ties, NaN
// logits (ranked after every number, lower id first, as TopKSoftmaxCpu) and k == e.
TEST_F(CudaParityTest, TopKSoftmaxOddShapesTiesAndNan) {
  for (auto [n, e, k] : {std::tuple<int64_t, int64_t, int64_t>{5, 100, 8}, {7, 3, 3}, {1, 64, 6}, {6, 33, 33}}) {
    std::vector<float> logits = RandomVector(n * e, static_cast<uint32_t>(n * 100 + e));
    logits[1] = logits[e - 1] = 7.5f;                        // row 0: a tie at the top
    if (n > 1) logits[e + 0] = std::numeric_limits<float>::quiet_NaN();
    if (n > 2) {
      for (int64_t c = 0; c < e; ++c) logits[2 * e + c] = c % 2 ? std::numeric_limits<float>::quiet_NaN() : 0.25f;
    }
    std::vector<int32_t> idx(n * k, -7);
    std::vector<float> w(n * k);
    DeviceBuffer<float> dl(logits), dw(w);
    DeviceBuffer<int32_t> didx(idx);
    ASSERT_TRUE(TopKSoftmaxCpu({.logits = logits.data(), .n = n, .e = e, .k = k, .indices = idx.data(),
                                .weights = w.data()}).ok());
    ASSERT_TRUE(TopKSoftmaxCuda({.logits = dl.get(), .n = n, .e = e, .k = k, .indices = didx.get(),
                                 .weights = dw.get()}, nullptr).ok());
    EXPECT_EQ(didx.Download(), idx) << "n=" << n << " e=" << e << " k=" << k;
    const std::vector<float> gw = dw.Download();
    for (size_t i = 0; i < w.size(); ++i) {
      if (std::isnan(w[i])) {
        EXPECT_TRUE(std::isnan(gw[i])) << i;
      } else {
        EXPECT_NEAR(gw[i], w[i], 1e-5) << i;
      }
    }
  }
}

// AddRmsNorm with the MoE combine fused in front: against the CPU reference, and bit for bit against
// MoeCombineCuda (accumulating into the branch) followed by the plain AddRmsNormCuda; k = 6 with a repeated
// expert id (slot order breaks the tie) and a skipped selection (pair_row -1); a register-staged row length
// and the looping form (d > 4096).
TEST_F(CudaParityTest, AddRmsNormWithFusedMoeCombine) {
  const int64_t n = 3, k = 6;
  const std::vector<int32_t> indices = {5, 1, 9, 1, 0, 7, /**/ 3, 2, 1, 0, 8, 4, /**/ 63, 0, 6, 2, 1, 5};
  const std::vector<int32_t> pair_row = {0, 1, 2, 3, -1, 4, /**/ 5, 6, 7, 8, 9, 10, /**/ 11, 12, 13, 14, 15, 16};
  const int64_t rows = 17;
  for (int64_t d : {int64_t{1536}, int64_t{5000}}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const int64_t ld = d + 2, ldm = d + 5;
    const std::vector<float> x = RandomVector(n * ld, 900), w = RandomVector(d, 901),
                             moe_y = RandomVector(rows * ldm, 902), gates = RandomVector(n * k, 903, 0.0f, 1.0f);
    std::vector<float> h = RandomVector(n * ld, 904), y(n * ld, 0.0f);
    DeviceBuffer<float> dx(x), dw(w), dmoe(moe_y), dgates(gates), dh(h), dy(y), dx2(x), dh2(h), dy2(y);
    DeviceBuffer<int32_t> dind(indices), dpair(pair_row);
    AddRmsNormParams cpu{h.data(), ld, x.data(), ld, 0.22f, w.data(), y.data(), ld, n, d, 1e-5f};
    cpu.moe_y = moe_y.data(), cpu.ld_moe_y = ldm, cpu.moe_indices = indices.data(), cpu.moe_pair_row = pair_row.data();
    cpu.moe_weights = gates.data(), cpu.moe_k = k;
    AddRmsNormParams gpu = cpu;
    gpu.h = dh.get(), gpu.x = dx.get(), gpu.weight = dw.get(), gpu.y = dy.get(), gpu.moe_y = dmoe.get();
    gpu.moe_indices = dind.get(), gpu.moe_pair_row = dpair.get(), gpu.moe_weights = dgates.get();
    ASSERT_TRUE(AddRmsNormCpu(cpu).ok());
    const absl::Status st = AddRmsNormCuda(gpu, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    ExpectClose(dh.Download(), h, 1e-6, "fused h vs CPU");
    ExpectClose(dy.Download(), y, 1e-4, "fused y vs CPU");
    ExpectClose(dx.Download(), x, 0.0, "the branch x is not written");
    // Unfused on the GPU: the same float steps.
    ASSERT_TRUE(MoeCombineCuda({dmoe.get(), ldm, dind.get(), dpair.get(), dgates.get(), n, k, d, dx2.get(), ld, true},
                               nullptr).ok());
    AddRmsNormParams plain = gpu;
    plain.h = dh2.get(), plain.x = dx2.get(), plain.y = dy2.get(), plain.moe_y = nullptr;
    ASSERT_TRUE(AddRmsNormCuda(plain, nullptr).ok());
    ExpectClose(dh.Download(), dh2.Download(), 0.0, "fused h vs MoeCombine + AddRmsNorm");
    ExpectClose(dy.Download(), dy2.Download(), 0.0, "fused y vs MoeCombine + AddRmsNorm");
  }
  AddRmsNormParams bad{reinterpret_cast<float*>(16), 4, reinterpret_cast<const float*>(32), 4, 1.0f,
                       reinterpret_cast<const float*>(48), reinterpret_cast<float*>(64), 4, 1, 4, 1e-5f};
  bad.moe_y = reinterpret_cast<const float*>(80), bad.ld_moe_y = 4, bad.moe_k = 17;
  const absl::Status st = AddRmsNormCuda(bad, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

// The optional 16-bit copies (Copy16) of Swiglu's, AddRmsNorm's and GatedRmsNorm's outputs: each element the f32 output
// rounded to nearest even (BF16 and F16), on the GPU exactly its own f32 output rounded, on the CPU its own;
// a copy with an F32 dtype is INVALID_ARGUMENT.
TEST_F(CudaParityTest, SixteenBitOutputCopies) {
  for (DType dt : {DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(DTypeName(dt));
    const int64_t n = 3, i = 300, ld_in = 2 * i + 3, ldy = i + 1, ld16 = i + 5;
    const std::vector<float> gu = RandomVector(n * ld_in, 950, -4.0f, 4.0f);
    std::vector<float> y(n * ldy, 0.0f);
    std::vector<uint16_t> y16(n * ld16, 0);
    DeviceBuffer<float> dgu(gu), dy(y);
    DeviceBuffer<uint16_t> dy16(y16);
    SwigluParams cpu{gu.data(), ld_in, y.data(), ldy, n, i};
    cpu.y16 = {y16.data(), ld16, dt};
    SwigluParams gpu{dgu.get(), ld_in, dy.get(), ldy, n, i};
    gpu.y16 = {dy16.get(), ld16, dt};
    ASSERT_TRUE(SwigluCpu(cpu).ok());
    ASSERT_TRUE(SwigluCuda(gpu, nullptr).ok());
    const std::vector<float> gy = dy.Download();
    const std::vector<uint16_t> g16 = dy16.Download();
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < i; ++c) {
        ASSERT_EQ(g16[r * ld16 + c], FloatTo16(gy[r * ldy + c], dt)) << "swiglu gpu " << r << "," << c;
        ASSERT_EQ(y16[r * ld16 + c], FloatTo16(y[r * ldy + c], dt)) << "swiglu cpu " << r << "," << c;
      }
    }
    for (int64_t d : {int64_t{1536}, int64_t{5000}}) {  // register-staged and looping forms
      const int64_t ld = d + 1, l16 = d + 8;
      const std::vector<float> x = RandomVector(n * ld, 960), w = RandomVector(d, 961);
      std::vector<float> h = RandomVector(n * ld, 962), yn(n * ld, 0.0f);
      std::vector<uint16_t> n16(n * l16, 0);
      DeviceBuffer<float> dx(x), dw(w), dh(h), dyn(yn);
      DeviceBuffer<uint16_t> dn16(n16);
      AddRmsNormParams ac{h.data(), ld, x.data(), ld, 0.5f, w.data(), yn.data(), ld, n, d, 1e-5f};
      ac.y16 = {n16.data(), l16, dt};
      AddRmsNormParams ag{dh.get(), ld, dx.get(), ld, 0.5f, dw.get(), dyn.get(), ld, n, d, 1e-5f};
      ag.y16 = {dn16.get(), l16, dt};
      ASSERT_TRUE(AddRmsNormCpu(ac).ok());
      ASSERT_TRUE(AddRmsNormCuda(ag, nullptr).ok());
      const std::vector<float> gyn = dyn.Download();
      const std::vector<uint16_t> gn16 = dn16.Download();
      ExpectClose(gyn, yn, 1e-4, "AddRmsNorm y");
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < d; ++c) {
          ASSERT_EQ(gn16[r * l16 + c], FloatTo16(gyn[r * ld + c], dt)) << "norm gpu d=" << d << " " << r << "," << c;
          ASSERT_EQ(n16[r * l16 + c], FloatTo16(yn[r * ld + c], dt)) << "norm cpu d=" << d << " " << r << "," << c;
        }
      }
      // The gated norm (Mamba's, before out_proj), one group and groups of d / 4; y aliasing x as in the model.
      for (int64_t groups : {1, 4}) {
        std::vector<float> gx = RandomVector(n * ld, 963, -3.0f, 3.0f);
        const std::vector<float> z = RandomVector(n * ld, 964, -3.0f, 3.0f);
        std::vector<uint16_t> g16c(n * l16, 0);
        DeviceBuffer<float> dgx(gx), dz(z);
        DeviceBuffer<uint16_t> dg16(g16c);
        GatedRmsNormParams gc{gx.data(), ld, z.data(), ld, w.data(), gx.data(), ld, n, d, d / groups, 1e-5f};
        gc.y16 = {g16c.data(), l16, dt};
        GatedRmsNormParams gg{dgx.get(), ld, dz.get(), ld, dw.get(), dgx.get(), ld, n, d, d / groups, 1e-5f};
        gg.y16 = {dg16.get(), l16, dt};
        ASSERT_TRUE(GatedRmsNormCpu(gc).ok());
        ASSERT_TRUE(GatedRmsNormCuda(gg, nullptr).ok());
        const std::vector<float> gy2 = dgx.Download();
        const std::vector<uint16_t> gg16 = dg16.Download();
        ExpectClose(gy2, gx, 1e-4, "GatedRmsNorm y");
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = 0; c < d; ++c) {
            ASSERT_EQ(gg16[r * l16 + c], FloatTo16(gy2[r * ld + c], dt)) << "gated gpu " << r << "," << c;
            ASSERT_EQ(g16c[r * l16 + c], FloatTo16(gx[r * ld + c], dt)) << "gated cpu " << r << "," << c;
          }
        }
      }
    }
  }
  std::vector<float> gu(8, 0.0f), y(4, 0.0f);
  std::vector<uint16_t> y16(4, 0);
  SwigluParams bad{gu.data(), 8, y.data(), 4, 1, 4};
  bad.y16 = {y16.data(), 4, DType::kF32};
  const absl::Status st = SwigluCuda(bad, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

TEST_F(CudaParityTest, AddRmsNormAndStridedTopK) {
  const int64_t n = 6, d = 1536, ldh = 1540, ldx = 1537, ldy = 1536;
  std::vector<float> h = RandomVector(n * ldh, 30), x = RandomVector(n * ldx, 31);
  const std::vector<float> w = RandomVector(d, 32);
  std::vector<float> y(n * ldy, 0.0f);
  DeviceBuffer<float> dh(h), dx(x), dw(w), dy(y);
  AddRmsNormParams cpu{h.data(), ldh, x.data(), ldx, 0.22f, w.data(), y.data(), ldy, n, d, 1e-5f};
  AddRmsNormParams gpu = cpu;
  gpu.h = dh.get(), gpu.x = dx.get(), gpu.weight = dw.get(), gpu.y = dy.get();
  ASSERT_TRUE(AddRmsNormCpu(cpu).ok());
  ASSERT_TRUE(AddRmsNormCuda(gpu, nullptr).ok());
  ExpectClose(dh.Download(), h, 1e-6, "AddRmsNorm h");
  ExpectClose(dy.Download(), y, 1e-4, "AddRmsNorm y");

  const int64_t rows = 7, e = 64, k = 6, ld = 2048 + 64;
  const std::vector<float> wide = RandomVector(rows * ld, 33);
  std::vector<int32_t> idx(rows * k);
  std::vector<float> g(rows * k);
  DeviceBuffer<float> dwide(wide), dg(g);
  DeviceBuffer<int32_t> didx(idx);
  TopKSoftmaxParams tc{wide.data() + 2048, rows, e, k, idx.data(), g.data()};
  tc.ld = ld;
  TopKSoftmaxParams tg = tc;
  tg.logits = dwide.get() + 2048, tg.indices = didx.get(), tg.weights = dg.get();
  ASSERT_TRUE(TopKSoftmaxCpu(tc).ok());
  ASSERT_TRUE(TopKSoftmaxCuda(tg, nullptr).ok());
  EXPECT_EQ(didx.Download(), idx);
  ExpectClose(dg.Download(), g, 1e-5, "strided TopKSoftmax");
}

}  // namespace
}  // namespace quarry
