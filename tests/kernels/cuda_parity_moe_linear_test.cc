// CUDA parity of the decode matmul (LinearCuda's small-m path), CublasLinear, the grouped MoE ops
// (permute -> grouped linear -> combine) and argmax against their CPU references; plus a CUDA-graph capture of
// the MoE chain. Skips (GTEST_SKIP) when no CUDA device is present.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cublas_linear.h"
#include "kernels/cuda/grouped_gemm_tc.h"
#include "kernels/cuda/linear_tc.h"
#include "kernels/cuda_ops.h"
#include "kernels/dtype.h"
#include "kernels/moe.h"
#include "kernels/moe_grouped.h"
#include "kernels/sampling.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::AnyNan;
using testing::CudaParityTest;
using testing::DeviceBuffer;
using testing::DeviceMatrix;
using testing::ExpectClose;
using testing::LaunchesOf;
using testing::MaxAbsDiff;
using testing::OffsetsOf;
using testing::OwnedMatrix;
using testing::RandomVector;

// Device copy of a weight matrix placed `shift` elements into its allocation: shift 1 makes W's base not
// 16-byte aligned (the GEMV's scalar fallback).
struct ShiftedDeviceMatrix {
  ShiftedDeviceMatrix(const OwnedMatrix& m, int64_t shift) {
    const int64_t es = static_cast<int64_t>(DTypeSize(m.view.dtype));
    const uint8_t* src = m.view.dtype == DType::kF32 ? reinterpret_cast<const uint8_t*>(m.f32.data())
                                                     : reinterpret_cast<const uint8_t*>(m.half.data());
    std::vector<uint8_t> bytes(static_cast<size_t>(shift * es), 0);
    bytes.insert(bytes.end(), src, src + m.view.bytes());
    buf = std::make_unique<DeviceBuffer<uint8_t>>(bytes);
    view = m.view;
    view.data = buf->get() + shift * es;
  }
  std::unique_ptr<DeviceBuffer<uint8_t>> buf;
  MatrixView view;
};

// n tokens x k distinct experts out of `experts`, like a router's top-k (seeded).
std::vector<int32_t> RandomSelections(int64_t n, int64_t k, int32_t experts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> all(experts);
  std::iota(all.begin(), all.end(), 0);
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    std::shuffle(all.begin(), all.end(), rng);
    out.insert(out.end(), all.begin(), all.begin() + k);
  }
  return out;
}

// Softmax-like positive weights per token (sum 1).
std::vector<float> RandomRouterWeights(int64_t n, int64_t k, uint32_t seed) {
  std::vector<float> w = RandomVector(n * k, seed, 0.05f, 1.0f);
  for (int64_t r = 0; r < n; ++r) {
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) s += w[r * k + j];
    for (int64_t j = 0; j < k; ++j) w[r * k + j] /= s;
  }
  return w;
}

double MaxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// ---- LinearCuda, small m ----

TEST_F(CudaParityTest, LinearSmallMMatchesCpuForEveryMDtypeAndAlignment) {
  struct Case {
    int64_t k, ldx, w_shift, n;
    const char* what;
  };
  const Case cases[] = {
      {1536, 1536, 0, 67, "k 1536, x and W 16-byte aligned (vector loads)"},
      {1536, 1537, 0, 67, "k 1536, odd ldx (scalar x loads, vector W)"},
      {1536, 1536, 1, 67, "k 1536, W base misaligned (scalar W path)"},
      {40, 40, 0, 67, "k 40 (vector path, most lanes idle)"},
      {37, 37, 0, 67, "k 37 (scalar path)"},
      {37, 41, 0, 67, "k 37, ldx 41"},
      {64, 64, 0, 1, "n 1"},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      OwnedMatrix w(RandomVector(c.n * c.k, 11), dt, c.n, c.k);
      ShiftedDeviceMatrix dw(w, c.w_shift);
      const int64_t ldy = c.n + 3;
      for (int64_t m = 1; m <= 16; ++m) {
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE(absl::StrCat(c.what, ", ", DTypeName(dt), ", m ", m, ", accumulate ", accumulate));
          const std::vector<float> x = RandomVector(m * c.ldx, 100 + static_cast<uint32_t>(m));
          std::vector<float> y = RandomVector(m * ldy, 200 + static_cast<uint32_t>(m));
          DeviceBuffer<float> dx(x), dy(y);
          LinearParams cpu{.x = x.data(), .ldx = c.ldx, .w = w.view, .y = y.data(), .ldy = ldy, .m = m,
                           .accumulate = accumulate};
          LinearParams gpu = cpu;
          gpu.x = dx.get(), gpu.y = dy.get(), gpu.w = dw.view;
          ASSERT_TRUE(LinearCpu(cpu).ok());
          ASSERT_TRUE(LinearCuda(gpu, nullptr).ok());
          ExpectClose(dy.Download(), y, 1e-4, "LinearSmallM");
        }
      }
    }
  }
}

// swiglu_input: the GEMV reads gate | up and multiplies Silu(gate) * up itself. Against the CPU reference (which
// runs SwigluCpu, then the product) for the decode path (m <= 16: vector and scalar x / W loads) and the tiled
// path (m = 17, 40), every dtype; and bit for bit against SwigluCuda followed by a plain LinearCuda.
TEST_F(CudaParityTest, LinearWithSwigluInputMatchesSwigluThenLinear) {
  struct Case {
    int64_t k, ldx, n;
    const char* what;
  };
  const Case cases[] = {
      {512, 1024, 67, "k 512, ldx 2k (vector loads)"},
      {512, 1030, 67, "k 512, ldx 2k + 6 (scalar x loads)"},
      {37, 80, 33, "k 37 (scalar path, up half unaligned)"},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      OwnedMatrix w(RandomVector(c.n * c.k, 61), dt, c.n, c.k);
      DeviceMatrix dw(w);
      const int64_t ldy = c.n + 1;
      for (int64_t m : {1, 2, 3, 5, 9, 16, 17, 40}) {
        SCOPED_TRACE(absl::StrCat(c.what, ", ", DTypeName(dt), ", m ", m));
        const std::vector<float> x = RandomVector(m * c.ldx, 300 + static_cast<uint32_t>(m), -4.0f, 4.0f);
        std::vector<float> y = RandomVector(m * ldy, 400);
        DeviceBuffer<float> dx(x), dy(y), dy2(y), dact(std::vector<float>(m * c.k, 0.0f));
        LinearParams cpu{.x = x.data(), .ldx = c.ldx, .w = w.view, .y = y.data(), .ldy = ldy, .m = m,
                         .accumulate = m % 2 == 1, .swiglu_input = true};
        LinearParams gpu = cpu;
        gpu.x = dx.get(), gpu.y = dy.get(), gpu.w = dw.view;
        ASSERT_TRUE(LinearCpu(cpu).ok());
        const absl::Status st = LinearCuda(gpu, nullptr);
        ASSERT_TRUE(st.ok()) << st;
        const std::vector<float> fused = dy.Download();
        ExpectClose(fused, y, 1e-4, "Linear swiglu_input vs CPU");
        // Unfused on the GPU: the same activations, so the same products.
        ASSERT_TRUE(SwigluCuda({dx.get(), c.ldx, dact.get(), c.k, m, c.k}, nullptr).ok());
        LinearParams plain = gpu;
        plain.x = dact.get(), plain.ldx = c.k, plain.y = dy2.get(), plain.swiglu_input = false;
        ASSERT_TRUE(LinearCuda(plain, nullptr).ok());
        ExpectClose(fused, dy2.Download(), m <= 16 ? 0.0 : 1e-6, "Linear swiglu_input vs SwigluCuda + LinearCuda");
      }
    }
  }
  // ldx must hold both halves.
  LinearParams bad{.x = reinterpret_cast<const float*>(16), .ldx = 100, .w = {}, .y = nullptr, .ldy = 0, .m = 1};
  std::vector<float> wv(64 * 4, 0.0f);
  OwnedMatrix w(wv, DType::kF32, 4, 64);
  bad.w = w.view;
  std::vector<float> yb(4);
  bad.y = yb.data(), bad.ldy = 4, bad.swiglu_input = true;
  const absl::Status st = LinearCuda(bad, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find("ldx"), std::string::npos) << st;
}

// ---- CublasLinear ----

// The KV append of a stacked q|k|v product y [m, q_dim + 2 kv_dim] (row stride n): its k and v columns into
// the f32 caches, or the bf16 ones when bf16.
KvAppendParams KvColumns(float* y, int64_t n, int64_t q_dim, int64_t kv_dim, bool bf16, float* kc, float* vc,
                         uint16_t* kc16, uint16_t* vc16, const int32_t* slots, int64_t m, int64_t pool) {
  return {y + q_dim, n, y + q_dim + kv_dim, n, bf16 ? nullptr : kc, bf16 ? nullptr : vc, slots, m, kv_dim, pool,
          bf16 ? kc16 : nullptr, bf16 ? vc16 : nullptr};
}

std::vector<float> WidenBf16(const std::vector<uint16_t>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = Bf16ToFloat(h[i]);
  return f;
}

// What a q|k|v product with the KV epilogue left: y and both caches (f32 and bf16; one of them in use).
struct KvRun {
  std::vector<float> y, k32, v32;
  std::vector<uint16_t> k16, v16;
};

// got against LinearCpu with the same epilogue: x [m, k] times w ([q_dim + 2 kv_dim, k]) appended at `slots` to
// caches that started as cache0 / cache016. A bf16 cache may be one bf16 step apart (the sums round differently).
void ExpectKvRunLikeCpu(const KvRun& got, const std::vector<float>& x, int64_t k, const MatrixView& w, int64_t m,
                        int64_t q_dim, int64_t kv_dim, int64_t pool, const std::vector<int32_t>& slots,
                        const std::vector<float>& cache0, const std::vector<uint16_t>& cache016, bool bf16) {
  const int64_t n = q_dim + 2 * kv_dim;
  std::vector<float> y(m * n, 0.0f), kc = cache0, vc = cache0;
  std::vector<uint16_t> kc16 = cache016, vc16 = cache016;
  LinearParams cpu{.x = x.data(), .ldx = k, .w = w, .y = y.data(), .ldy = n, .m = m};
  cpu.kv = KvColumns(y.data(), n, q_dim, kv_dim, bf16, kc.data(), vc.data(), kc16.data(), vc16.data(),
                     slots.data(), m, pool);
  cpu.kv_k_col = q_dim, cpu.kv_v_col = q_dim + kv_dim;
  ASSERT_TRUE(LinearCpu(cpu).ok());
  ExpectClose(got.y, y, 1e-4, "y vs LinearCpu");
  if (bf16) {
    ExpectClose(WidenBf16(got.k16), WidenBf16(kc16), 1e-2, "bf16 k cache vs LinearCpu");
    ExpectClose(WidenBf16(got.v16), WidenBf16(vc16), 1e-2, "bf16 v cache vs LinearCpu");
  } else {
    ExpectClose(got.k32, kc, 1e-4, "k cache vs LinearCpu");
    ExpectClose(got.v32, vc, 1e-4, "v cache vs LinearCpu");
  }
}

// The KV-cache epilogue of the stacked q|k|v projection (LinearParams::kv): the GEMV path (m <= 16) writes the k
// and v columns of each row into its slot's cache row in the product's store, bit for bit what LinearCuda +
// KvAppendCuda write (f32 and bf16 caches, a padding row with slot -1 skipped), and equal to LinearCpu's; above
// 16 rows the product and KvAppendCuda run as two launches. CublasLinear and a kv epilogue with accumulate are
// refused by name.
TEST_F(CudaParityTest, LinearAppendsItsKvColumns) {
  const int64_t q_dim = 48, kv_dim = 16, n = q_dim + 2 * kv_dim, k = 96, pool = 40;
  OwnedMatrix w(RandomVector(n * k, 920), DType::kBF16, n, k);
  DeviceMatrix dw(w);
  for (int64_t m : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{17}}) {
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE(absl::StrCat("m ", m, bf16 ? ", bf16 cache" : ", f32 cache"));
      const std::vector<float> x = RandomVector(m * k, 921);
      std::vector<int32_t> slots(m);
      for (int64_t r = 0; r < m; ++r) slots[r] = static_cast<int32_t>((r * 7 + 3) % pool);
      slots[m / 2] = -1;  // a padding row
      DeviceBuffer<float> dx(x);
      DeviceBuffer<int32_t> dslots(slots);
      // Two device runs (fused, apart) and the CPU, each on caches that start as the same random values.
      const std::vector<float> cache0 = RandomVector(pool * kv_dim, 922);
      std::vector<uint16_t> cache016(cache0.size());
      for (size_t i = 0; i < cache0.size(); ++i) cache016[i] = FloatToBf16(cache0[i]);
      const auto run = [&](bool fused) {
        DeviceBuffer<float> y(std::vector<float>(m * n, 0.0f)), kc(cache0), vc(cache0);
        DeviceBuffer<uint16_t> kc16(cache016), vc16(cache016);
        LinearParams p{.x = dx.get(), .ldx = k, .w = dw.view, .y = y.get(), .ldy = n, .m = m};
        const KvAppendParams kv = KvColumns(y.get(), n, q_dim, kv_dim, bf16, kc.get(), vc.get(), kc16.get(),
                                            vc16.get(), dslots.get(), m, pool);
        absl::Status s;
        if (fused) {
          p.kv = kv, p.kv_k_col = q_dim, p.kv_v_col = q_dim + kv_dim;
          s = LinearCuda(p, nullptr);
        } else {
          s = LinearCuda(p, nullptr);
          if (s.ok()) s = KvAppendCuda(kv, nullptr);
        }
        EXPECT_TRUE(s.ok()) << s;
        return KvRun{y.Download(), kc.Download(), vc.Download(), kc16.Download(), vc16.Download()};
      };
      const KvRun fused = run(true), apart = run(false);
      EXPECT_EQ(MaxAbsDiff(fused.y, apart.y), 0.0f) << "y";
      EXPECT_EQ(MaxAbsDiff(fused.k32, apart.k32), 0.0f) << "k cache, bit for bit";
      EXPECT_EQ(MaxAbsDiff(fused.v32, apart.v32), 0.0f) << "v cache, bit for bit";
      EXPECT_EQ(fused.k16, apart.k16) << "bf16 k cache, bit for bit";
      EXPECT_EQ(fused.v16, apart.v16) << "bf16 v cache, bit for bit";
      ExpectKvRunLikeCpu(fused, x, k, w.view, m, q_dim, kv_dim, pool, slots, cache0, cache016, bf16);
    }
  }
  // Named refusals.
  std::vector<float> buf(64 * n, 0.0f);
  std::vector<int32_t> slot(1, 0);
  LinearParams bad{.x = buf.data(), .ldx = k, .w = w.view, .y = buf.data(), .ldy = n, .m = 1, .accumulate = true};
  bad.kv = {buf.data() + q_dim, n, buf.data() + q_dim + kv_dim, n, buf.data(), buf.data(), slot.data(), 1, kv_dim,
            pool, nullptr, nullptr};
  bad.kv_k_col = q_dim, bad.kv_v_col = q_dim + kv_dim;
  const absl::Status st = LinearCuda(bad, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find("kv epilogue"), std::string::npos) << st;
  bad.accumulate = false;
  ASSERT_TRUE(ValidateLinear(bad).ok());
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    absl::StatusOr<std::unique_ptr<CublasLinear>> lin = CublasLinear::Create(stream, 64 * k);
    ASSERT_TRUE(lin.ok()) << lin.status();
    const absl::Status cb = (*lin)->Run(bad);
    EXPECT_EQ(cb.code(), absl::StatusCode::kInvalidArgument) << cb;
    EXPECT_NE(std::string(cb.message()).find("kv epilogue"), std::string::npos) << cb;
  }
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// The tensor-core product for 17..32 rows (kernels/cuda/linear_tc.cu), which LinearCuda and the device ops pick
// when x comes with its 16-bit copy: against LinearCpu on the rounded input (x16 widened), for a partial last
// k group (k = 80), many groups per warp (k = 1040), f16 weights, accumulate with a scale, the conv epilogue and
// the KV append (f32 and bf16 caches) in its one launch (counted), and a NaN row that stays in its row. The switch
// off gives the tiled kernel (with the epilogue as a launch of its own). Ineligible shapes are refused by name.
TEST_F(CudaParityTest, LinearTensorCoresMatchCpuOnTheRoundedInput) {
  struct Case {
    int64_t m, n, k;
    DType dt;
    bool accumulate;
  };
  for (const Case& c : {Case{17, 48, 64, DType::kBF16, false}, Case{32, 2112, 96, DType::kBF16, false},
                        Case{24, 32, 80, DType::kF16, false}, Case{32, 64, 1040, DType::kBF16, false},
                        Case{20, 48, 64, DType::kBF16, true}}) {
    SCOPED_TRACE(absl::StrCat("m ", c.m, ", n ", c.n, ", k ", c.k, ", ", DTypeName(c.dt),
                              c.accumulate ? ", accumulate" : ""));
    OwnedMatrix w(RandomVector(c.n * c.k, 930), c.dt, c.n, c.k);
    DeviceMatrix dw(w);
    const int64_t ldx16 = c.k + 8, ldy = c.n + 3;
    const std::vector<float> x = RandomVector(c.m * c.k, 931, -2.0f, 2.0f);
    std::vector<uint16_t> x16(c.m * ldx16, 0);
    std::vector<float> xr(c.m * c.k);  // the rounded input, widened
    for (int64_t r = 0; r < c.m; ++r) {
      for (int64_t i = 0; i < c.k; ++i) {
        const uint16_t h = FloatTo16(x[r * c.k + i], c.dt);
        x16[r * ldx16 + i] = h;
        xr[r * c.k + i] = c.dt == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
      }
    }
    std::vector<float> y = RandomVector(c.m * ldy, 932);
    DeviceBuffer<float> dxr(xr), dy(y), dy_off(y);
    DeviceBuffer<uint16_t> dx16(x16);
    LinearParams cpu{.x = xr.data(), .ldx = c.k, .w = w.view, .y = y.data(), .ldy = ldy, .m = c.m,
                     .accumulate = c.accumulate};
    if (c.accumulate) cpu.scale = 0.22f;
    LinearParams gpu = cpu;
    gpu.x = dxr.get(), gpu.w = dw.view, gpu.y = dy.get(), gpu.x16 = dx16.get(), gpu.ldx16 = ldx16;
    ASSERT_TRUE(LinearTcEligible(gpu));
    EXPECT_EQ(LaunchesOf([&](cudaStream_t s) { return LinearCuda(gpu, s); }), 1);
    ASSERT_TRUE(LinearCpu(cpu).ok());
    const absl::Status st = LinearCuda(gpu, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    const std::vector<float> got = dy.Download();
    ExpectClose(got, y, 1e-4, "tensor cores vs LinearCpu on the rounded input");
    SetLinearTensorCores(false);
    EXPECT_FALSE(LinearTcEligible(gpu));
    LinearParams off = gpu;
    off.y = dy_off.get();
    const absl::Status st_off = LinearCuda(off, nullptr);
    SetLinearTensorCores(true);
    ASSERT_TRUE(st_off.ok()) << st_off;
    ExpectClose(dy_off.Download(), y, 1e-4, "switched off (the tiled kernel)");
    if (c.m == 32 && c.k == 96) {  // a NaN in one x row stays in that row's outputs
      std::vector<uint16_t> nan16 = x16;
      for (int64_t i = 0; i < c.k; i += 7) nan16[5 * ldx16 + i] = 0x7fc0;
      DeviceBuffer<uint16_t> dnan(nan16);
      DeviceBuffer<float> dyn(y);
      LinearParams pn = gpu;
      pn.x16 = dnan.get(), pn.y = dyn.get();
      ASSERT_TRUE(LinearCuda(pn, nullptr).ok());
      const std::vector<float> gn = dyn.Download();
      for (int64_t r = 0; r < c.m; ++r) {
        for (int64_t j = 0; j < c.n; ++j) {
          if (r == 5) {
            ASSERT_TRUE(std::isnan(gn[r * ldy + j])) << "row 5, column " << j;
          } else {
            ASSERT_EQ(gn[r * ldy + j], got[r * ldy + j]) << "row " << r << ", column " << j;
          }
        }
      }
    }
  }
  // The epilogues in the same launch: the conv step (in_proj) and the KV append (q|k|v).
  const int64_t m = 20, k = 64, ldx16 = k;
  const std::vector<float> x = RandomVector(m * k, 940, -2.0f, 2.0f);
  std::vector<uint16_t> x16(m * k);
  std::vector<float> xr(m * k);
  for (size_t i = 0; i < x.size(); ++i) x16[i] = FloatToBf16(x[i]), xr[i] = Bf16ToFloat(x16[i]);
  DeviceBuffer<float> dxr(xr);
  DeviceBuffer<uint16_t> dx16(x16);
  {
    SCOPED_TRACE("conv epilogue");
    const int64_t n = 208, conv_col = 37, ch = 131, kc = 4, rows = 18, ldy = n + 3;
    OwnedMatrix w(RandomVector(n * k, 941), DType::kBF16, n, k);
    DeviceMatrix dw(w);
    const std::vector<float> cw = RandomVector(ch * kc, 942), bias = RandomVector(ch, 943);
    std::vector<std::vector<float>> states;
    std::vector<float*> host_ptrs, dev_ptrs;
    std::vector<std::unique_ptr<DeviceBuffer<float>>> dstates;
    for (int64_t r = 0; r < rows; ++r) {
      states.push_back(RandomVector(ch * (kc - 1), 944 + static_cast<uint32_t>(r)));
      dstates.push_back(std::make_unique<DeviceBuffer<float>>(states.back()));
      dev_ptrs.push_back(dstates.back()->get());
    }
    for (auto& s : states) host_ptrs.push_back(s.data());
    DeviceBuffer<float*> dptrs(dev_ptrs);
    std::vector<float> y = RandomVector(m * ldy, 945), cy = RandomVector(rows * ch, 946);
    DeviceBuffer<float> dy(y), dcy(cy), dcw(cw), dbias(bias);
    LinearParams cpu{.x = xr.data(), .ldx = k, .w = w.view, .y = y.data(), .ldy = ldy, .m = m};
    cpu.conv = {.x = y.data() + conv_col, .ldx = ldy, .weight = cw.data(), .bias = bias.data(),
                .states = host_ptrs.data(), .y = cy.data(), .ldy = ch, .n = rows, .c = ch, .k = kc, .silu = true};
    cpu.conv_col = conv_col;
    LinearParams gpu = cpu;
    gpu.x = dxr.get(), gpu.w = dw.view, gpu.y = dy.get(), gpu.x16 = dx16.get(), gpu.ldx16 = ldx16;
    gpu.conv.x = dy.get() + conv_col, gpu.conv.weight = dcw.get(), gpu.conv.bias = dbias.get();
    gpu.conv.states = dptrs.get(), gpu.conv.y = dcy.get();
    EXPECT_EQ(LaunchesOf([&](cudaStream_t s) { return LinearCuda(gpu, s); }), 1) << "no ConvUpdateBatch launch";
    ASSERT_TRUE(LinearCpu(cpu).ok());
    ASSERT_TRUE(LinearCuda(gpu, nullptr).ok());
    ExpectClose(dy.Download(), y, 1e-4, "y");
    ExpectClose(dcy.Download(), cy, 1e-4, "conv output");
    for (int64_t r = 0; r < rows; ++r) ExpectClose(dstates[r]->Download(), states[r], 1e-4, "conv state");
  }
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "kv epilogue, bf16 cache" : "kv epilogue, f32 cache");
    const int64_t q_dim = 48, kv_dim = 16, n = q_dim + 2 * kv_dim, pool = 40;
    OwnedMatrix w(RandomVector(n * k, 950), DType::kBF16, n, k);
    DeviceMatrix dw(w);
    std::vector<int32_t> slots(m);
    for (int64_t r = 0; r < m; ++r) slots[r] = static_cast<int32_t>((r * 7 + 3) % pool);
    slots[4] = -1;  // a padding row
    const std::vector<float> cache0 = RandomVector(pool * kv_dim, 951);
    std::vector<uint16_t> cache016(cache0.size());
    for (size_t i = 0; i < cache0.size(); ++i) cache016[i] = FloatToBf16(cache0[i]);
    DeviceBuffer<int32_t> dslots(slots);
    DeviceBuffer<float> dy(std::vector<float>(m * n, 0.0f)), dkc(cache0), dvc(cache0);
    DeviceBuffer<uint16_t> dkc16(cache016), dvc16(cache016);
    LinearParams gpu{.x = dxr.get(), .ldx = k, .w = dw.view, .y = dy.get(), .ldy = n, .m = m};
    gpu.x16 = dx16.get(), gpu.ldx16 = ldx16;
    gpu.kv = KvColumns(dy.get(), n, q_dim, kv_dim, bf16, dkc.get(), dvc.get(), dkc16.get(), dvc16.get(),
                       dslots.get(), m, pool);
    gpu.kv_k_col = q_dim, gpu.kv_v_col = q_dim + kv_dim;
    EXPECT_EQ(LaunchesOf([&](cudaStream_t s) { return LinearCuda(gpu, s); }), 1) << "no KvAppend launch";
    ASSERT_TRUE(LinearCuda(gpu, nullptr).ok());
    ExpectKvRunLikeCpu({dy.Download(), dkc.Download(), dvc.Download(), dkc16.Download(), dvc16.Download()}, xr, k,
                       w.view, m, q_dim, kv_dim, pool, slots, cache0, cache016, bf16);
  }
  // Refusals name the requirement; ineligible products keep their other paths.
  OwnedMatrix w(RandomVector(40 * k, 960), DType::kBF16, 40, k);
  DeviceMatrix dw(w);
  DeviceBuffer<float> dy(std::vector<float>(m * 40, 0.0f));
  LinearParams p{.x = dxr.get(), .ldx = k, .w = dw.view, .y = dy.get(), .ldy = 40, .m = m};
  p.x16 = dx16.get(), p.ldx16 = ldx16;
  EXPECT_FALSE(LinearTcEligible(p)) << "n = 40";
  const absl::Status bad = LinearTcCuda(p, nullptr);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_NE(std::string(bad.message()).find("multiples of 16"), std::string::npos) << bad;
  p.w.rows = 32, p.m = 16;
  EXPECT_FALSE(LinearTcEligible(p)) << "16 rows: the GEMV's";
  p.m = 33;
  EXPECT_FALSE(LinearTcEligible(p)) << "33 rows";
  p.m = 20, p.x16 = nullptr;
  EXPECT_FALSE(LinearTcEligible(p)) << "no x16";
}

TEST_F(CudaParityTest, CublasLinearMatchesCpuWithinInputRounding) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    const int64_t k = 1536, n = 257, ldx = k + 4, ldy = n + 3, max_m = 300;
    absl::StatusOr<std::unique_ptr<CublasLinear>> lin = CublasLinear::Create(stream, max_m * k);
    ASSERT_TRUE(lin.ok()) << lin.status();
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      OwnedMatrix w(RandomVector(n * k, 21), dt, n, k);
      DeviceMatrix dw(w);
      for (int64_t m : {1, 17, 300}) {
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", m ", m, ", accumulate ", accumulate));
          const std::vector<float> x = RandomVector(m * ldx, 22 + static_cast<uint32_t>(m));
          std::vector<float> y = RandomVector(m * ldy, 23);
          DeviceBuffer<float> dx(x), dy(y);
          LinearParams cpu{.x = x.data(), .ldx = ldx, .w = w.view, .y = y.data(), .ldy = ldy, .m = m,
                           .accumulate = accumulate};
          LinearParams gpu = cpu;
          gpu.x = dx.get(), gpu.y = dy.get(), gpu.w = dw.view;
          ASSERT_TRUE(LinearCpu(cpu).ok());
          const absl::Status s = (*lin)->Run(gpu);
          ASSERT_TRUE(s.ok()) << s;
          const std::vector<float> got = dy.Download();
          if (dt == DType::kF32) {
            ExpectClose(got, y, 1e-4, "CublasLinear F32");
          } else {
            // x rounded to bf16 (8-bit mantissa) or f16 (11-bit): error relative to the output scale.
            const double rel = dt == DType::kBF16 ? 1e-2 : 2e-3;
            EXPECT_FALSE(AnyNan(got));
            EXPECT_LE(MaxAbsDiff(got, y), rel * std::max(1.0, MaxAbs(y)));
            // x rounded by its producer (LinearParams::x16, row stride ldx16 != k): the same product, bit for bit.
            const int64_t ld16 = k + 8;
            std::vector<uint16_t> x16(static_cast<size_t>(m * ld16), 0xffff);
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t c = 0; c < k; ++c) x16[r * ld16 + c] = FloatTo16(x[r * ldx + c], dt);
            }
            DeviceBuffer<uint16_t> dx16(x16);
            DeviceBuffer<float> dy2(RandomVector(m * ldy, 23));
            LinearParams pre = gpu;
            pre.x16 = dx16.get(), pre.ldx16 = ld16, pre.y = dy2.get();  // x stays set (validated, not read)
            const absl::Status s16 = (*lin)->Run(pre);
            ASSERT_TRUE(s16.ok()) << s16;
            EXPECT_EQ(MaxAbsDiff(dy2.Download(), got), 0.0) << "x16 input vs CublasLinear's own rounding";
            // scale (cuBLAS's alpha): y (+)= 0.5 x·Wᵀ, against the CPU.
            if (m == 17) {
              std::vector<float> ys = RandomVector(m * ldy, 24);
              DeviceBuffer<float> dys(ys);
              LinearParams half_cpu = cpu, half_gpu = gpu;
              half_cpu.y = ys.data(), half_cpu.scale = 0.5f;
              half_gpu.y = dys.get(), half_gpu.scale = 0.5f;
              ASSERT_TRUE(LinearCpu(half_cpu).ok());
              ASSERT_TRUE((*lin)->Run(half_gpu).ok());
              EXPECT_LE(MaxAbsDiff(dys.Download(), ys), rel * std::max(1.0, MaxAbs(ys)));
            }
          }
        }
      }
      if (dt != DType::kF32) {  // m * k beyond the scratch is refused
        const std::vector<float> x(static_cast<size_t>((max_m + 1) * ldx), 0.0f);
        std::vector<float> y(static_cast<size_t>((max_m + 1) * ldy), 0.0f);
        DeviceBuffer<float> dx(x), dy(y);
        LinearParams gpu{.x = dx.get(), .ldx = ldx, .w = dw.view, .y = dy.get(), .ldy = ldy, .m = max_m + 1};
        EXPECT_EQ((*lin)->Run(gpu).code(), absl::StatusCode::kInvalidArgument);
      } else {  // x16 with F32 weights is refused, naming x16
        const std::vector<float> x(static_cast<size_t>(ldx), 0.0f);
        std::vector<float> y(static_cast<size_t>(ldy), 0.0f);
        DeviceBuffer<float> dx(x), dy(y);
        DeviceBuffer<uint16_t> dx16(std::vector<uint16_t>(static_cast<size_t>(k), 0));
        LinearParams gpu{.x = dx.get(), .ldx = ldx, .w = dw.view, .y = dy.get(), .ldy = ldy, .m = 1};
        gpu.x16 = dx16.get(), gpu.ldx16 = k;
        const absl::Status st = (*lin)->Run(gpu);
        EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
        EXPECT_NE(std::string(st.message()).find("x16"), std::string::npos) << st;
      }
    }
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// ---- MoePermute ----

void ExpectPermuteMatchesCpu(const std::vector<int32_t>& indices, int64_t n, int64_t k, int32_t begin, int32_t end) {
  const int64_t experts = end - begin, pairs = n * k;
  std::vector<int32_t> offsets(experts + 1, -7), row_token(pairs + 1, -7), pair_row(pairs + 1, -7);
  DeviceBuffer<int32_t> di(indices.empty() ? std::vector<int32_t>{0} : indices);
  DeviceBuffer<int32_t> doff(offsets), drt(row_token), dpr(pair_row);
  MoePermuteParams cpu{.indices = indices.data(), .n = n, .k = k, .expert_begin = begin, .expert_end = end,
                       .offsets = offsets.data(), .row_token = row_token.data(), .pair_row = pair_row.data()};
  MoePermuteParams gpu{.indices = di.get(), .n = n, .k = k, .expert_begin = begin, .expert_end = end,
                       .offsets = doff.get(), .row_token = drt.get(), .pair_row = dpr.get()};
  ASSERT_TRUE(MoePermuteCpu(cpu).ok());
  const absl::Status s = MoePermuteCuda(gpu, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(doff.Download(), offsets);
  EXPECT_EQ(dpr.Download(), pair_row);
  const std::vector<int32_t> got_rt = drt.Download();
  for (int32_t i = 0; i < offsets[experts]; ++i) ASSERT_EQ(got_rt[i], row_token[i]) << "row " << i;
}

TEST_F(CudaParityTest, MoePermuteMatchesCpuExactly) {
  {
    SCOPED_TRACE("n 1, k 6, 64 experts");
    ExpectPermuteMatchesCpu(RandomSelections(1, 6, 64, 31), 1, 6, 0, 64);
  }
  {
    SCOPED_TRACE("n 37, k 6, 64 experts");
    ExpectPermuteMatchesCpu(RandomSelections(37, 6, 64, 32), 37, 6, 0, 64);
  }
  {
    SCOPED_TRACE("n 37, k 6, EP slice [16, 32)");
    ExpectPermuteMatchesCpu(RandomSelections(37, 6, 64, 33), 37, 6, 16, 32);
  }
  {
    SCOPED_TRACE("n 16384, k 6 (96 placement steps)");
    ExpectPermuteMatchesCpu(RandomSelections(16384, 6, 64, 34), 16384, 6, 0, 64);
  }
  {
    SCOPED_TRACE("n 300, k 8, 256 experts (the limit), slice [0, 256) of 300");
    ExpectPermuteMatchesCpu(RandomSelections(300, 8, 300, 35), 300, 8, 0, 256);
  }
  {
    SCOPED_TRACE("every selection on one expert (whole warps in one group)");
    const std::vector<int32_t> same(200 * 6, 3);
    ExpectPermuteMatchesCpu(same, 200, 6, 0, 64);
  }
  {
    SCOPED_TRACE("n 0: offsets all zero");
    ExpectPermuteMatchesCpu({}, 0, 6, 0, 64);
  }
}

// ---- MoeRoute (top-k + permute, one launch up to 64 rows) ----

TEST_F(CudaParityTest, MoeRouteMatchesTopKThenPermuteExactly) {
  const int64_t e = 64, k = 6, ld = e + 5;
  for (int64_t n : {1, 7, 64, 65, 200}) {  // 65 and 200: the two-kernel form
    SCOPED_TRACE(absl::StrCat("n ", n));
    std::vector<float> logits = RandomVector(n * ld, 600 + static_cast<uint32_t>(n));
    if (n > 1) logits[ld + 3] = logits[ld + 9];  // a tie: the lower id first
    DeviceBuffer<float> dlogits(logits);
    std::vector<int32_t> idx(n * k), offsets(e + 1), row_token(n * k), pair_row(n * k);
    std::vector<float> gates(n * k);
    DeviceBuffer<int32_t> didx(idx), doff(offsets), drow(row_token), dpair(pair_row);
    DeviceBuffer<float> dgates(gates);
    TopKSoftmaxParams tc{logits.data(), n, e, k, idx.data(), gates.data(), ld};
    MoePermuteParams pc{idx.data(), n, k, 0, static_cast<int32_t>(e), offsets.data(), row_token.data(), pair_row.data()};
    ASSERT_TRUE(MoeRouteCpu(tc, pc).ok());
    TopKSoftmaxParams tg{dlogits.get(), n, e, k, didx.get(), dgates.get(), ld};
    MoePermuteParams pg{didx.get(), n, k, 0, static_cast<int32_t>(e), doff.get(), drow.get(), dpair.get()};
    const absl::Status st = MoeRouteCuda(tg, pg, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(didx.Download(), idx);
    EXPECT_EQ(doff.Download(), offsets);
    EXPECT_EQ(dpair.Download(), pair_row);
    const std::vector<int32_t> rows = drow.Download();
    for (int64_t i = 0; i < offsets[e]; ++i) EXPECT_EQ(rows[i], row_token[i]) << "row " << i;
    ExpectClose(dgates.Download(), gates, 1e-6, "MoeRoute gates");
    pg.indices = nullptr;  // must read the top-k's indices
    const absl::Status bad = MoeRouteCuda(tg, pg, nullptr);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// ---- GroupedLinear ----

TEST_F(CudaParityTest, GroupedLinearMatchesCpuWithAndWithoutGather) {
  // Empty experts, 1 row, chunk boundaries (7, 8, 9, 16) and one expert with 300 rows (38 chunks, 4 splits).
  const std::vector<int64_t> counts = {0, 1, 7, 300, 0, 9, 2, 8, 16};
  const int64_t experts = static_cast<int64_t>(counts.size());
  const std::vector<int32_t> offsets = OffsetsOf(counts);
  const int64_t rows = offsets[experts];
  const int64_t max_rows = rows + 5;  // capacity beyond the used rows: left untouched
  const int64_t n_out = 37;
  DeviceBuffer<int32_t> doff(offsets);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (auto [k, ldx] : {std::pair<int64_t, int64_t>{1536, 1536}, {1536, 1539}, {37, 40}}) {
      OwnedMatrix w(RandomVector(experts * n_out * k, 41), dt, experts * n_out, k);
      DeviceMatrix dw(w);
      for (bool use_gather : {false, true}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", k ", k, ", ldx ", ldx, ", gather ", use_gather));
        const int64_t src_rows = use_gather ? 50 : max_rows;
        const std::vector<float> x = RandomVector(src_rows * ldx, 42);
        std::vector<int32_t> gather(static_cast<size_t>(max_rows));
        std::mt19937 rng(43);
        for (int32_t& g : gather) g = static_cast<int32_t>(rng() % src_rows);
        const int64_t ldy = n_out + 2;
        std::vector<float> y = RandomVector(max_rows * ldy, 44);
        DeviceBuffer<float> dx(x), dy(y);
        DeviceBuffer<int32_t> dg(gather);
        GroupedLinearParams cpu{.x = x.data(), .ldx = ldx, .gather = use_gather ? gather.data() : nullptr,
                                .w = w.view, .n_out = n_out, .experts = experts, .offsets = offsets.data(),
                                .max_rows = max_rows, .y = y.data(), .ldy = ldy};
        GroupedLinearParams gpu = cpu;
        gpu.x = dx.get(), gpu.gather = use_gather ? dg.get() : nullptr, gpu.w = dw.view, gpu.offsets = doff.get(),
        gpu.y = dy.get();
        ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
        const absl::Status s = GroupedLinearCuda(gpu, nullptr);
        ASSERT_TRUE(s.ok()) << s;
        ExpectClose(dy.Download(), y, 1e-4, "GroupedLinear");
      }
    }
  }
}

// The expert down projection with swiglu_input (decode): gate | up rows of 2k, with and without gather, against
// the CPU reference; the tensor-core path refuses it.
TEST_F(CudaParityTest, GroupedLinearWithSwigluInputMatchesCpu) {
  const std::vector<int64_t> counts = {0, 1, 3, 0, 9, 2};
  const int64_t experts = static_cast<int64_t>(counts.size());
  const std::vector<int32_t> offsets = OffsetsOf(counts);
  const int64_t rows = offsets[experts], n_out = 45;
  DeviceBuffer<int32_t> doff(offsets);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (auto [k, ldx] : {std::pair<int64_t, int64_t>{256, 512}, {37, 77}}) {
      OwnedMatrix w(RandomVector(experts * n_out * k, 71), dt, experts * n_out, k);
      DeviceMatrix dw(w);
      for (bool use_gather : {false, true}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", k ", k, ", ldx ", ldx, ", gather ", use_gather));
        const std::vector<float> x = RandomVector(rows * ldx, 72, -4.0f, 4.0f);
        std::vector<int32_t> gather(static_cast<size_t>(rows));
        for (int64_t i = 0; i < rows; ++i) gather[i] = static_cast<int32_t>((i * 7) % rows);
        std::vector<float> y = RandomVector(rows * n_out, 73);
        DeviceBuffer<float> dx(x), dy(y);
        DeviceBuffer<int32_t> dg(gather);
        GroupedLinearParams cpu{.x = x.data(), .ldx = ldx, .gather = use_gather ? gather.data() : nullptr,
                                .w = w.view, .n_out = n_out, .experts = experts, .offsets = offsets.data(),
                                .max_rows = rows, .y = y.data(), .ldy = n_out, .swiglu_input = true};
        GroupedLinearParams gpu = cpu;
        gpu.x = dx.get(), gpu.gather = use_gather ? dg.get() : nullptr, gpu.w = dw.view, gpu.offsets = doff.get(),
        gpu.y = dy.get();
        ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
        const absl::Status s = GroupedLinearCuda(gpu, nullptr);
        ASSERT_TRUE(s.ok()) << s;
        ExpectClose(dy.Download(), y, 1e-4, "GroupedLinear swiglu_input");
        if (dt == DType::kBF16) {
          const absl::Status tc = GroupedLinearTensorCoreCuda(gpu, nullptr);
          EXPECT_EQ(tc.code(), absl::StatusCode::kInvalidArgument) << tc;
        }
      }
    }
  }
}

// swiglu_out on the small-m path (the experts' up projection at decode writing its SwiGLU activations): each warp
// pairs two gate rows with their up rows and stores Silu(gate) * up, bit for bit the plain product followed by
// SwigluCuda (every dot product is the same sum in the same lane order) and its 16-bit copy exactly; close to
// GroupedLinearCpu + SwigluCpu. Experts with 0, 1, 7, 8, 9 and 20 rows (chunk boundaries, MR 1 / 2 / 4 / 8), an
// odd number of activation columns (37: the last warp's second column is padding), with gather, with the routing
// in the launch (and the norm prologue), f32 / bf16 weights and a misaligned W (the scalar path). Every activation
// of an expert row is written (the outputs start NaN); rows past offsets[experts] are not.
TEST_F(CudaParityTest, GroupedLinearWritesSwigluActivations) {
  const std::vector<int64_t> counts = {0, 1, 7, 8, 0, 9, 2, 20};
  const int64_t experts = static_cast<int64_t>(counts.size());
  const std::vector<int32_t> offsets = OffsetsOf(counts);
  const int64_t rows = offsets[experts], max_rows = rows + 3, k = 96, ldx = 100;
  DeviceBuffer<int32_t> doff(offsets);
  struct Case {
    DType dt;
    int64_t half;
    int64_t shift;  // W placed this many elements into its buffer (1: not 16-byte aligned)
    bool gather;
  };
  for (const Case& c : {Case{DType::kBF16, 37, 0, true}, Case{DType::kBF16, 64, 0, false},
                        Case{DType::kF32, 37, 0, true}, Case{DType::kBF16, 37, 1, true}}) {
    SCOPED_TRACE(absl::StrCat(DTypeName(c.dt), ", i ", c.half, ", shift ", c.shift, ", gather ", c.gather));
    const int64_t n_out = 2 * c.half;
    OwnedMatrix w(RandomVector(experts * n_out * k, 74), c.dt, experts * n_out, k);
    ShiftedDeviceMatrix dw(w, c.shift);
    const int64_t src_rows = c.gather ? 23 : max_rows;
    const std::vector<float> x = RandomVector(src_rows * ldx, 75, -2.0f, 2.0f);
    std::vector<int32_t> gather(static_cast<size_t>(max_rows));
    for (int64_t i = 0; i < max_rows; ++i) gather[i] = static_cast<int32_t>((i * 5 + 3) % src_rows);
    DeviceBuffer<float> dx(x);
    DeviceBuffer<int32_t> dg(gather);
    // The plain product, then SwigluCuda: the reference bits.
    DeviceBuffer<float> dgu(std::vector<float>(max_rows * n_out, 0.0f));
    GroupedLinearParams gpu{.x = dx.get(), .ldx = ldx, .gather = c.gather ? dg.get() : nullptr, .w = dw.view,
                            .n_out = n_out, .experts = experts, .offsets = doff.get(), .max_rows = max_rows,
                            .y = dgu.get(), .ldy = n_out};
    ASSERT_TRUE(GroupedLinearCuda(gpu, nullptr).ok());
    DeviceBuffer<float> want(std::vector<float>(max_rows * c.half, NAN));
    DeviceBuffer<uint16_t> want16(std::vector<uint16_t>(max_rows * c.half, 0));
    ASSERT_TRUE(SwigluCuda({dgu.get(), n_out, want.get(), c.half, rows, c.half, {want16.get(), c.half, DType::kBF16}},
                           nullptr)
                    .ok());
    // CPU: the product, then SwigluCpu (GroupedLinearCpu runs swiglu_out after the product).
    std::vector<float> gu(max_rows * n_out, 0.0f), act_cpu(max_rows * c.half, NAN);
    GroupedLinearParams cpu{.x = x.data(), .ldx = ldx, .gather = c.gather ? gather.data() : nullptr, .w = w.view,
                            .n_out = n_out, .experts = experts, .offsets = offsets.data(), .max_rows = max_rows,
                            .y = gu.data(), .ldy = n_out};
    cpu.swiglu_out = {gu.data(), n_out, act_cpu.data(), c.half, rows, c.half};
    ASSERT_TRUE(GroupedLinearCpu(cpu).ok());

    DeviceBuffer<float> act(std::vector<float>(max_rows * c.half, NAN)), gu2(std::vector<float>(max_rows * n_out));
    DeviceBuffer<uint16_t> act16(std::vector<uint16_t>(max_rows * c.half, 0));
    GroupedLinearParams fused = gpu;
    fused.y = gu2.get();
    fused.swiglu_out = {gu2.get(), n_out, act.get(), c.half, max_rows, c.half, {act16.get(), c.half, DType::kBF16}};
    EXPECT_EQ(LaunchesOf([&](cudaStream_t s) { return GroupedLinearCuda(fused, s); }), 1) << "no SwiGLU launch";
    const absl::Status st = GroupedLinearCuda(fused, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    const std::vector<float> got = act.Download();
    const std::vector<float> ref = want.Download();
    EXPECT_EQ(MaxAbsDiff(std::vector<float>(got.begin(), got.begin() + rows * c.half),
                         std::vector<float>(ref.begin(), ref.begin() + rows * c.half)),
              0.0f)
        << "activations vs product + SwigluCuda, bit for bit";
    EXPECT_FALSE(AnyNan(std::vector<float>(got.begin(), got.begin() + rows * c.half))) << "every activation written";
    for (int64_t i = rows * c.half; i < max_rows * c.half; ++i) ASSERT_TRUE(std::isnan(got[i])) << "row past the end";
    const std::vector<uint16_t> got16 = act16.Download(), ref16 = want16.Download();
    EXPECT_TRUE(std::equal(got16.begin(), got16.begin() + rows * c.half, ref16.begin())) << "16-bit copy";
    ExpectClose(std::vector<float>(got.begin(), got.begin() + rows * c.half),
                std::vector<float>(act_cpu.begin(), act_cpu.begin() + rows * c.half), 1e-4, "activations vs CPU");
  }
  // With the routing (and the norm prologue) in the launch: 3 tokens, k = 6 over 64 experts.
  const int64_t e = 64, n = 3, topk = 6, half = 40, n_out = 2 * half, sel = n * topk;
  const std::vector<float> logits = RandomVector(n * e, 76);
  const std::vector<float> xr = RandomVector(n * k, 77, -2.0f, 2.0f), nw = RandomVector(k, 78, 0.5f, 1.5f);
  OwnedMatrix w(RandomVector(e * n_out * k, 79), DType::kBF16, e * n_out, k);
  DeviceMatrix dw(w);
  DeviceBuffer<float> dlogits(logits), dxr(xr), dnw(nw);
  for (bool norm : {false, true}) {
    SCOPED_TRACE(norm ? "route + norm" : "route");
    std::vector<int32_t> idx(sel), offs(e + 1), row_token(sel), pair_row(sel);
    std::vector<float> gates(sel), gu(sel * n_out), act_cpu(sel * half);
    GroupedLinearParams cpu{.x = xr.data(), .ldx = k, .gather = row_token.data(), .w = w.view, .n_out = n_out,
                            .experts = e, .offsets = offs.data(), .max_rows = sel, .y = gu.data(), .ldy = n_out};
    cpu.route = {{logits.data(), n, e, topk, idx.data(), gates.data(), e},
                 {idx.data(), n, topk, 0, static_cast<int32_t>(e), offs.data(), row_token.data(), pair_row.data()}};
    cpu.swiglu_out = {gu.data(), n_out, act_cpu.data(), half, sel, half};
    if (norm) cpu.norm_weight = nw.data();
    ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
    DeviceBuffer<int32_t> didx(idx), doffs(offs), drow(row_token), dpair(pair_row);
    DeviceBuffer<float> dgates(gates), dgu(gu), dact(std::vector<float>(sel * half, NAN));
    GroupedLinearParams gpu{.x = dxr.get(), .ldx = k, .gather = drow.get(), .w = dw.view, .n_out = n_out,
                            .experts = e, .offsets = doffs.get(), .max_rows = sel, .y = dgu.get(), .ldy = n_out};
    gpu.route = {{dlogits.get(), n, e, topk, didx.get(), dgates.get(), e},
                 {didx.get(), n, topk, 0, static_cast<int32_t>(e), doffs.get(), drow.get(), dpair.get()}};
    gpu.swiglu_out = {dgu.get(), n_out, dact.get(), half, sel, half};
    if (norm) gpu.norm_weight = dnw.get();
    ASSERT_TRUE(GroupedRouteFuses(gpu.route.topk, e, false));
    EXPECT_EQ(LaunchesOf([&](cudaStream_t s) { return GroupedLinearCuda(gpu, s); }), 1) << "one launch";
    const absl::Status st = GroupedLinearCuda(gpu, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    const std::vector<float> got = dact.Download();
    EXPECT_FALSE(AnyNan(got));
    ExpectClose(got, act_cpu, 1e-4, "routed activations vs CPU");
    EXPECT_EQ(doffs.Download(), offs);
  }
}

// Decode shapes: far fewer rows than experts, so each block row walks several experts (and, with 100 experts
// over 2 block rows, more than one warp-wide batch of 32 offsets).
TEST_F(CudaParityTest, GroupedLinearWithFewerRowsThanExperts) {
  struct Case {
    int64_t experts;
    std::vector<int64_t> active;  // expert ids with one row each (the last one gets two)
  };
  const std::vector<Case> cases = {{64, {3, 17, 18, 40, 63}}, {100, {0, 99}}, {40, {39}}};
  for (const Case& c : cases) {
    std::vector<int64_t> counts(c.experts, 0);
    for (int64_t e : c.active) counts[e] = 1;
    counts[c.active.back()] = 2;
    const std::vector<int32_t> offsets = OffsetsOf(counts);
    const int64_t rows = offsets[c.experts], n_out = 40, k = 256;
    OwnedMatrix w(RandomVector(c.experts * n_out * k, 51), DType::kBF16, c.experts * n_out, k);
    DeviceMatrix dw(w);
    const std::vector<float> x = RandomVector(rows * k, 52);
    std::vector<float> y = RandomVector(rows * n_out, 53);
    DeviceBuffer<float> dx(x), dy(y);
    DeviceBuffer<int32_t> doff(offsets);
    GroupedLinearParams cpu{.x = x.data(), .ldx = k, .w = w.view, .n_out = n_out, .experts = c.experts,
                            .offsets = offsets.data(), .max_rows = rows, .y = y.data(), .ldy = n_out};
    GroupedLinearParams gpu = cpu;
    gpu.x = dx.get(), gpu.w = dw.view, gpu.offsets = doff.get(), gpu.y = dy.get();
    ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
    ASSERT_TRUE(GroupedLinearCuda(gpu, nullptr).ok());
    ExpectClose(dy.Download(), y, 1e-4, ("GroupedLinear few rows, experts " + std::to_string(c.experts)).c_str());
  }
}

// The dense companion (the shared expert's down projection at decode) computed by the grouped call: in the
// same launch it is bit-identical to LinearCuda's small-m path (same lane order of the dot products) for up to
// 16 rows and equal to LinearCpu for every row count. It joins beside plain-input experts (the down projection
// reading the activations of an up projection with swiglu_out); cases that cannot join (more rows than
// kGroupedDenseRows, accumulate, another dtype, plain dense input, swiglu_input experts) still give LinearCpu's
// result through their own launch (counted: one launch joined, two apart); a misaligned W joins on the scalar
// path, and no expert rows at all still computes it. The experts' rows are unaffected either way.
TEST_F(CudaParityTest, GroupedLinearComputesItsDenseCompanion) {
  struct Case {
    int64_t m;
    bool swiglu;       // the grouped problem's input form
    bool d_swiglu;     // the dense one's
    DType d_dt;
    bool accumulate;
    int64_t shift;     // dense W placed this many elements into its buffer (1: not 16-byte aligned)
    bool no_expert_rows;
  };
  const std::vector<Case> cases = {
      {1, false, true, DType::kBF16, false, 0, false},   {5, false, true, DType::kBF16, false, 0, false},
      {16, false, false, DType::kBF16, false, 0, false}, {33, false, true, DType::kBF16, false, 0, false},
      {64, false, true, DType::kBF16, false, 0, false},  {65, false, true, DType::kBF16, false, 0, false},
      {3, true, true, DType::kBF16, false, 0, false},    {3, false, true, DType::kF32, false, 0, false},
      {3, false, true, DType::kBF16, true, 0, false},    {3, false, true, DType::kBF16, false, 1, false},
      {2, false, true, DType::kBF16, false, 0, true}};
  const int64_t experts = 8, n_out = 72, k = 128, dn = 100, dk = 192;
  const std::vector<int64_t> counts = {0, 1, 3, 0, 2, 0, 0, 6};
  const std::vector<int32_t> offsets = OffsetsOf(counts);
  const int64_t rows = offsets[experts];
  const std::vector<int32_t> no_offsets(experts + 1, 0);
  OwnedMatrix w(RandomVector(experts * n_out * k, 81), DType::kBF16, experts * n_out, k);
  DeviceMatrix dw(w);
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("m ", c.m, ", swiglu ", c.swiglu, "/", c.d_swiglu, ", dense ", DTypeName(c.d_dt),
                              ", accumulate ", c.accumulate, ", shift ", c.shift, ", no expert rows ",
                              c.no_expert_rows));
    const int64_t ldx = c.swiglu ? 2 * k : k, dldx = (c.d_swiglu ? 2 * dk : dk) + 4;
    const std::vector<float> x = RandomVector(rows * ldx, 82, -3.0f, 3.0f);
    const std::vector<float> dxv = RandomVector(c.m * dldx, 83, -3.0f, 3.0f);
    OwnedMatrix dwm(RandomVector(dn * dk, 84), c.d_dt, dn, dk);
    ShiftedDeviceMatrix ddw(dwm, c.shift);
    std::vector<float> y = RandomVector(rows * n_out, 85), dy = RandomVector(c.m * dn, 86);
    DeviceBuffer<float> gx(x), gdx(dxv), gy(y), gdy(dy), gdy_alone(dy);
    const std::vector<int32_t>& offs = c.no_expert_rows ? no_offsets : offsets;
    DeviceBuffer<int32_t> doff(offs);
    GroupedLinearParams cpu{.x = x.data(), .ldx = ldx, .w = w.view, .n_out = n_out, .experts = experts,
                            .offsets = offs.data(), .max_rows = rows, .y = y.data(), .ldy = n_out,
                            .swiglu_input = c.swiglu};
    cpu.dense = {dxv.data(), dldx, dwm.view, dy.data(), dn, c.m, c.accumulate};
    cpu.dense.swiglu_input = c.d_swiglu;
    GroupedLinearParams gpu = cpu;
    gpu.x = gx.get(), gpu.w = dw.view, gpu.offsets = doff.get(), gpu.y = gy.get();
    gpu.dense.x = gdx.get(), gpu.dense.w = ddw.view, gpu.dense.y = gdy.get();
    ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
    const bool joins = c.m <= kGroupedDenseRows && !c.accumulate && c.d_swiglu && !c.swiglu && c.d_dt == DType::kBF16;
    EXPECT_EQ(LaunchesOf([&](cudaStream_t st) { return GroupedLinearCuda(gpu, st); }), joins ? 1 : 2);
    const absl::Status s = GroupedLinearCuda(gpu, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ExpectClose(gy.Download(), y, 1e-4, "experts beside the dense companion");
    const std::vector<float> got = gdy.Download();
    EXPECT_FALSE(AnyNan(got));
    ExpectClose(got, dy, 1e-4, "dense companion vs LinearCpu");
    if (c.m <= 16) {
      LinearParams alone = gpu.dense;
      alone.y = gdy_alone.get();
      ASSERT_TRUE(LinearCuda(alone, nullptr).ok());
      EXPECT_EQ(MaxAbsDiff(got, gdy_alone.Download()), 0.0f) << "dense companion vs LinearCuda, bit for bit";
    }
  }
  // A bad companion is named; the tensor-core path refuses one.
  std::vector<float> y(rows * n_out);
  GroupedLinearParams bad{.x = nullptr, .ldx = k, .w = dw.view, .n_out = n_out, .experts = experts,
                          .offsets = offsets.data(), .max_rows = 0, .y = y.data(), .ldy = n_out};
  bad.dense = {nullptr, dk, w.view, y.data(), n_out, 2, false};
  const absl::Status st = GroupedLinearCuda(bad, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find("dense companion"), std::string::npos) << st;
  GroupedLinearParams with_dense = bad;  // valid (nothing is read: the refusal comes first)
  with_dense.dense = {y.data(), k, w.view, y.data(), w.view.rows, 1, false};
  ASSERT_TRUE(ValidateGroupedLinear(with_dense).ok());
  const absl::Status tc = GroupedLinearTensorCoreCuda(with_dense, nullptr);
  EXPECT_EQ(tc.code(), absl::StatusCode::kInvalidArgument) << tc;
}

// The routing run by the experts' first product (GroupedLinearParams::route): inside the launch up to 64
// selections and 64 experts (n = 1, 3, 10 with k = 6; a tie between two logits), as MoeRouteCuda + launch beyond
// (n = 11: 66 selections; 100 experts). The product equals the CPU's (MoeRouteCpu, then GroupedLinearCpu), and the
// routing outputs the later ops read (indices, gates, offsets, row_token, pair_row) equal MoeRouteCpu's exactly.
// With the norm prologue too (GroupedLinearParams::norm_weight: the experts normalising the residual rows
// themselves), which needs the routing inside the launch: refused otherwise.
TEST_F(CudaParityTest, GroupedLinearRunsItsRouting) {
  const int64_t k = 6, n_out = 40, kin = 96;
  const std::vector<float> nw = RandomVector(kin, 804, 0.5f, 1.5f);
  DeviceBuffer<float> dnw(nw);
  for (auto [e, n] : {std::pair<int64_t, int64_t>{64, 1}, {64, 3}, {64, 10}, {40, 7}, {64, 11}, {100, 4}})
  for (bool norm : {false, true}) {
    SCOPED_TRACE(absl::StrCat("experts ", e, ", n ", n, norm ? ", norm" : ""));
    const int64_t ld = e + 3;
    std::vector<float> logits = RandomVector(n * ld, 800 + static_cast<uint32_t>(n * e));
    if (n > 1) logits[ld + 5] = logits[ld + 2];  // a tie: the lower id first
    const std::vector<float> x = RandomVector(n * kin, 801);
    OwnedMatrix w(RandomVector(e * n_out * kin, 802), DType::kBF16, e * n_out, kin);
    DeviceMatrix dw(w);
    const int64_t rows = n * k;
    std::vector<int32_t> idx(rows, -1), offsets(e + 1, -1), row_token(rows, -1), pair_row(rows, -1);
    std::vector<float> gates(rows, -1.0f), y = RandomVector(rows * n_out, 803);
    DeviceBuffer<float> dlogits(logits), dx(x), dgates(gates), dy(y);
    DeviceBuffer<int32_t> didx(idx), doff(offsets), drow(row_token), dpair(pair_row);
    GroupedLinearParams cpu{.x = x.data(), .ldx = kin, .gather = row_token.data(), .w = w.view, .n_out = n_out,
                            .experts = e, .offsets = offsets.data(), .max_rows = rows, .y = y.data(), .ldy = n_out};
    cpu.route = {{logits.data(), n, e, k, idx.data(), gates.data(), ld},
                 {idx.data(), n, k, 0, static_cast<int32_t>(e), offsets.data(), row_token.data(), pair_row.data()}};
    GroupedLinearParams gpu{.x = dx.get(), .ldx = kin, .gather = drow.get(), .w = dw.view, .n_out = n_out,
                            .experts = e, .offsets = doff.get(), .max_rows = rows, .y = dy.get(), .ldy = n_out};
    gpu.route = {{dlogits.get(), n, e, k, didx.get(), dgates.get(), ld},
                 {didx.get(), n, k, 0, static_cast<int32_t>(e), doff.get(), drow.get(), dpair.get()}};
    if (norm) {
      cpu.norm_weight = nw.data(), gpu.norm_weight = dnw.get();
      if (!GroupedRouteFuses(gpu.route.topk, e, false)) {
        const absl::Status st = GroupedLinearCuda(gpu, nullptr);
        EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
        continue;
      }
    }
    ASSERT_TRUE(GroupedLinearCpu(cpu).ok());
    const absl::Status st = GroupedLinearCuda(gpu, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    ExpectClose(dy.Download(), y, 1e-4, "experts after their routing");
    EXPECT_EQ(didx.Download(), idx);
    EXPECT_EQ(doff.Download(), offsets);
    EXPECT_EQ(dpair.Download(), pair_row);
    EXPECT_EQ(drow.Download(), row_token);
    ExpectClose(dgates.Download(), gates, 1e-6, "routing gates");
    if (e == 64 && n == 3) {  // a route that does not produce this product's offsets is refused
      GroupedLinearParams bad = gpu;
      bad.offsets = drow.get();
      const absl::Status b = GroupedLinearCuda(bad, nullptr);
      EXPECT_EQ(b.code(), absl::StatusCode::kInvalidArgument) << b;
      EXPECT_NE(std::string(b.message()).find("route"), std::string::npos) << b;
    }
  }
}

// GroupedLinearParams::after: the MoE block's combine + residual add + next norm run by the down projection.
// Inside the launch (the block completing a token normalises it, counted per token) the residual rows and the
// normalised rows are bit for bit those of the product followed by AddRmsNormCuda, and close to the CPU's; the
// counts are left zero, so a second launch (as a graph replays it) gives the same again. Cases it does not fuse
// (a row wider than kGroupedAfterMaxD, a dense companion that cannot join, experts reading gate|up) give the same
// through AddRmsNormCuda's own launch. The launches are counted (the fusion must save them).
TEST_F(CudaParityTest, GroupedLinearRunsItsAfterNorm) {
  struct Case {
    int64_t n;
    int64_t hidden;
    int dense;  // 0: none, 1: joined (the shared expert's down projection), 2: accumulate (a launch of its own)
    bool experts_swiglu = false;  // the experts read gate|up (swiglu_input): the tail gets a launch of its own
  };
  // hidden 4: one warp per row's columns, so every completion of a token comes from another block (in the
  // emulator a token completed early would miss a later block's columns).
  const std::vector<Case> cases = {{1, 96, 1}, {3, 96, 1}, {10, 96, 1}, {3, 4, 1},
                                   {4, 96, 0}, {5, 96, 2}, {2, 2056, 1}, {3, 96, 1, true}};
  const int64_t experts = 16, k = 4, inter = 64, shared_inter = 48;
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("n ", c.n, ", hidden ", c.hidden, ", dense ", c.dense, ", experts swiglu ",
                              c.experts_swiglu));
    const int64_t n = c.n, H = c.hidden, rows = n * k;
    const std::vector<int32_t> indices = RandomSelections(n, k, static_cast<int32_t>(experts), 900);
    const std::vector<float> gates = RandomRouterWeights(n, k, 901);
    std::vector<int32_t> offsets(experts + 1), row_token(rows), pair_row(rows);
    ASSERT_TRUE(MoePermuteCpu({.indices = indices.data(), .n = n, .k = k, .expert_begin = 0,
                               .expert_end = static_cast<int32_t>(experts), .offsets = offsets.data(),
                               .row_token = row_token.data(), .pair_row = pair_row.data()})
                    .ok());
    const std::vector<float> gu = RandomVector(rows * 2 * inter, 902, -2.0f, 2.0f);
    const std::vector<float> sgu = RandomVector(n * 2 * shared_inter, 903, -2.0f, 2.0f);
    OwnedMatrix w(RandomVector(experts * H * inter, 904, -0.2f, 0.2f), DType::kBF16, experts * H, inter);
    OwnedMatrix sw(RandomVector(H * shared_inter, 905, -0.2f, 0.2f), DType::kBF16, H, shared_inter);
    const std::vector<float> nw = RandomVector(H, 906, 0.5f, 1.5f);
    const std::vector<float> h0 = RandomVector(n * H, 907, -3.0f, 3.0f);
    // Without a dense companion the branch rows come from earlier work (the shared expert's output).
    const std::vector<float> mix0 = RandomVector(n * H, 908, -1.0f, 1.0f);
    DeviceMatrix dw(w), dsw(sw);
    DeviceBuffer<float> dgu(gu), dsgu(sgu), dnw(nw), dgates(gates);
    DeviceBuffer<int32_t> didx(indices), doff(offsets), drow(row_token), dpair(pair_row);
    DeviceBuffer<uint32_t> dcounts(std::vector<uint32_t>(n, 0u));

    struct Out {
      std::vector<float> y, mix, h, u;
    };
    const auto params = [&](float* y, float* mix, float* h, float* u, const float* xgu, const float* xsgu,
                            const MatrixView& wv, const MatrixView& swv, const int32_t* off, const int32_t* idx,
                            const int32_t* pr, const float* g, const float* nwp, uint32_t* counts,
                            const int32_t* rt) {
      // The experts read activations [rows, inter] (the buffer's first rows * inter values) or gate|up.
      GroupedLinearParams p{.x = xgu, .ldx = c.experts_swiglu ? 2 * inter : inter, .w = wv, .n_out = H,
                            .experts = experts, .offsets = off, .max_rows = rows, .y = y, .ldy = H,
                            .swiglu_input = c.experts_swiglu};
      if (c.dense != 0) {
        p.dense = {xsgu, 2 * shared_inter, swv, mix, H, n, c.dense == 2};
        p.dense.swiglu_input = true;
      }
      p.after = {h, H, mix, H, 0.22f, nwp, u, H, n, H, 1e-5f};
      p.after.moe_y = y, p.after.ld_moe_y = H, p.after.moe_indices = idx, p.after.moe_pair_row = pr;
      p.after.moe_weights = g, p.after.moe_k = k;
      p.after_counts = counts, p.after_row_token = rt;
      return p;
    };
    Out cpu{std::vector<float>(rows * H, 0.0f), mix0, h0, std::vector<float>(n * H, 0.0f)};
    ASSERT_TRUE(GroupedLinearCpu(params(cpu.y.data(), cpu.mix.data(), cpu.h.data(), cpu.u.data(), gu.data(),
                                        sgu.data(), w.view, sw.view, offsets.data(), indices.data(),
                                        pair_row.data(), gates.data(), nw.data(), dcounts.get(), row_token.data()))
                    .ok());
    const auto run = [&](bool fused, int launches) {
      DeviceBuffer<float> y(std::vector<float>(rows * H, 0.0f)), mix(mix0), h(h0), u(std::vector<float>(n * H));
      for (int i = 0; i < launches; ++i) {
        GroupedLinearParams p = params(y.get(), mix.get(), h.get(), u.get(), dgu.get(), dsgu.get(), dw.view,
                                       dsw.view, doff.get(), didx.get(), dpair.get(), dgates.get(), dnw.get(),
                                       dcounts.get(), drow.get());
        if (fused) {
          const absl::Status s = GroupedLinearCuda(p, nullptr);
          EXPECT_TRUE(s.ok()) << s;
        } else {
          const AddRmsNormParams after = p.after;
          p.after = {}, p.after_counts = nullptr, p.after_row_token = nullptr;
          absl::Status s = GroupedLinearCuda(p, nullptr);
          EXPECT_TRUE(s.ok()) << s;
          s = AddRmsNormCuda(after, nullptr);
          EXPECT_TRUE(s.ok()) << s;
        }
      }
      return Out{y.Download(), mix.Download(), h.Download(), u.Download()};
    };
    {
      const bool dense_apart = c.dense == 2 || (c.dense == 1 && c.experts_swiglu);
      const bool after_fused = !c.experts_swiglu && H <= kGroupedAfterMaxD && !dense_apart;
      DeviceBuffer<float> y(std::vector<float>(rows * H, 0.0f)), mix(mix0), h(h0), u(std::vector<float>(n * H));
      const GroupedLinearParams p = params(y.get(), mix.get(), h.get(), u.get(), dgu.get(), dsgu.get(), dw.view,
                                           dsw.view, doff.get(), didx.get(), dpair.get(), dgates.get(), dnw.get(),
                                           dcounts.get(), drow.get());
      EXPECT_EQ(LaunchesOf([&](cudaStream_t st) { return GroupedLinearCuda(p, st); }),
                1 + (after_fused ? 0 : 1) + (dense_apart ? 1 : 0));
    }
    const Out fused = run(true, 1), apart = run(false, 1);
    SetGroupedAfterFusion(false);  // the switch (QUARRY_CUDA_FUSE_AFTER=0): its own launch, the same bits
    const Out switched_off = run(true, 1);
    SetGroupedAfterFusion(true);
    EXPECT_EQ(MaxAbsDiff(switched_off.u, apart.u), 0.0f) << "fusion switched off";
    EXPECT_EQ(MaxAbsDiff(switched_off.h, apart.h), 0.0f) << "fusion switched off";
    EXPECT_EQ(dcounts.Download(), std::vector<uint32_t>(n, 0u)) << "counts left zero";
    EXPECT_EQ(MaxAbsDiff(fused.h, apart.h), 0.0f) << "residual rows vs product + AddRmsNormCuda, bit for bit";
    EXPECT_EQ(MaxAbsDiff(fused.u, apart.u), 0.0f) << "normalised rows vs product + AddRmsNormCuda, bit for bit";
    EXPECT_EQ(MaxAbsDiff(fused.y, apart.y), 0.0f) << "expert rows";
    ExpectClose(fused.h, cpu.h, 1e-4, "residual rows vs GroupedLinearCpu");
    ExpectClose(fused.u, cpu.u, 1e-4, "normalised rows vs GroupedLinearCpu");
    ExpectClose(fused.mix, cpu.mix, 1e-4, "dense companion vs GroupedLinearCpu");
    // Twice in a row (graph replays): the second launch adds the branch again, as two apart would.
    const Out fused2 = run(true, 2), apart2 = run(false, 2);
    EXPECT_EQ(MaxAbsDiff(fused2.h, apart2.h), 0.0f) << "second launch";
    EXPECT_EQ(MaxAbsDiff(fused2.u, apart2.u), 0.0f) << "second launch";
    EXPECT_EQ(dcounts.Download(), std::vector<uint32_t>(n, 0u)) << "counts left zero after two launches";
  }
  // Named refusals: no counts; the tensor-core path.
  std::vector<float> buf(64 * 64, 0.0f);
  const std::vector<int32_t> offsets(experts + 1, 0);
  OwnedMatrix w(RandomVector(experts * 32 * 32, 910), DType::kBF16, experts * 32, 32);
  GroupedLinearParams p{.x = buf.data(), .ldx = 32, .w = w.view, .n_out = 32, .experts = experts,
                        .offsets = offsets.data(), .max_rows = 0, .y = buf.data(), .ldy = 32};
  std::vector<float> h(32, 0.0f), u(32, 0.0f);
  p.after = {h.data(), 32, buf.data(), 32, 1.0f, buf.data(), u.data(), 32, 1, 32, 1e-5f};
  const absl::Status st = GroupedLinearCuda(p, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find("after_counts"), std::string::npos) << st;
  uint32_t counts = 0;
  const int32_t token = 0;
  p.after_counts = &counts, p.after_row_token = &token;
  ASSERT_TRUE(ValidateGroupedLinear(p).ok());
  const absl::Status tc = GroupedLinearTensorCoreCuda(p, nullptr);
  EXPECT_EQ(tc.code(), absl::StatusCode::kInvalidArgument) << tc;
  EXPECT_NE(std::string(tc.message()).find("after"), std::string::npos) << tc;
}

// ---- MoeCombine ----

TEST_F(CudaParityTest, MoeCombineMatchesCpuInExpertOrder) {
  const int64_t n = 37, k = 6, hidden = 300, ldy = 303, ldo = 301;
  for (auto [begin, end] : {std::pair<int32_t, int32_t>{0, 64}, {16, 32}}) {
    const std::vector<int32_t> indices = RandomSelections(n, k, 64, 51);
    std::vector<int32_t> offsets(end - begin + 1), row_token(n * k), pair_row(n * k);
    ASSERT_TRUE(MoePermuteCpu({.indices = indices.data(), .n = n, .k = k, .expert_begin = begin, .expert_end = end,
                               .offsets = offsets.data(), .row_token = row_token.data(),
                               .pair_row = pair_row.data()})
                    .ok());
    const std::vector<float> y = RandomVector(n * k * ldy, 52, -2.0f, 2.0f);
    const std::vector<float> weights = RandomRouterWeights(n, k, 53);
    DeviceBuffer<float> dy(y), dw(weights);
    DeviceBuffer<int32_t> di(indices), dpr(pair_row);
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(absl::StrCat("experts [", begin, ", ", end, "), accumulate ", accumulate));
      std::vector<float> out = RandomVector(n * ldo, 54);
      DeviceBuffer<float> dout(out);
      MoeCombineParams cpu{.y = y.data(), .ldy = ldy, .indices = indices.data(), .pair_row = pair_row.data(),
                           .weights = weights.data(), .n = n, .k = k, .hidden = hidden, .out = out.data(),
                           .ldo = ldo, .accumulate = accumulate};
      MoeCombineParams gpu = cpu;
      gpu.y = dy.get(), gpu.indices = di.get(), gpu.pair_row = dpr.get(), gpu.weights = dw.get(),
      gpu.out = dout.get();
      ASSERT_TRUE(MoeCombineCpu(cpu).ok());
      const absl::Status s = MoeCombineCuda(gpu, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      // Same order, fused multiply-adds on both sides: equal up to contraction differences.
      ExpectClose(dout.Download(), out, 2e-6, "MoeCombine");
    }
  }
}

// ---- The MoE chain vs MoeExpertsCpu (eagerly and as a captured CUDA graph) ----

struct MoeChainCase {
  int64_t n = 37, k = 4, hidden = 256, inter = 128;
  int32_t total_experts = 16, begin = 0, end = 16;
  DType dt = DType::kBF16;
};

// Runs permute -> grouped(gate_up, gather) -> Swiglu -> grouped(down) -> combine on `stream` (optionally
// inside a graph capture) and compares with MoeExpertsCpu.
void RunMoeChain(const MoeChainCase& c, bool capture) {
  const int64_t local = c.end - c.begin, pairs = c.n * c.k, i2 = 2 * c.inter;
  const std::vector<float> x = RandomVector(c.n * c.hidden, 61);
  const std::vector<int32_t> indices = RandomSelections(c.n, c.k, c.total_experts, 62);
  const std::vector<float> weights = RandomRouterWeights(c.n, c.k, 63);
  OwnedMatrix up(RandomVector(local * i2 * c.hidden, 64, -0.1f, 0.1f), c.dt, local * i2, c.hidden);
  OwnedMatrix down(RandomVector(local * c.hidden * c.inter, 65, -0.1f, 0.1f), c.dt, local * c.hidden, c.inter);
  const std::vector<float> y0 = RandomVector(c.n * c.hidden, 66);

  std::vector<float> y = y0;
  ASSERT_TRUE(MoeExpertsCpu({.x = x.data(), .n = c.n, .hidden = c.hidden, .intermediate = c.inter,
                             .indices = indices.data(), .weights = weights.data(), .k = c.k,
                             .input_linear = up.view, .output_linear = down.view, .expert_begin = c.begin,
                             .expert_end = c.end, .y = y.data()})
                  .ok());

  DeviceBuffer<float> dx(x), dwts(weights), dy(y0);
  DeviceBuffer<int32_t> didx(indices);
  DeviceMatrix dup(up), ddown(down);
  DeviceBuffer<int32_t> doff(std::vector<int32_t>(local + 1, 0)), drt(std::vector<int32_t>(pairs, 0)),
      dpr(std::vector<int32_t>(pairs, 0));
  DeviceBuffer<float> dgu(std::vector<float>(pairs * i2, 0.0f)), dact(std::vector<float>(pairs * c.inter, 0.0f)),
      dout(std::vector<float>(pairs * c.hidden, 0.0f));

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  if (capture) {
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  }
  absl::Status s = MoePermuteCuda({.indices = didx.get(), .n = c.n, .k = c.k, .expert_begin = c.begin,
                                   .expert_end = c.end, .offsets = doff.get(), .row_token = drt.get(),
                                   .pair_row = dpr.get()},
                                  stream);
  EXPECT_TRUE(s.ok()) << s;
  s = GroupedLinearCuda({.x = dx.get(), .ldx = c.hidden, .gather = drt.get(), .w = dup.view, .n_out = i2,
                         .experts = local, .offsets = doff.get(), .max_rows = pairs, .y = dgu.get(), .ldy = i2},
                        stream);
  EXPECT_TRUE(s.ok()) << s;
  s = SwigluCuda({.gate_up = dgu.get(), .ld_in = i2, .y = dact.get(), .ldy = c.inter, .n = pairs, .i = c.inter},
                 stream);
  EXPECT_TRUE(s.ok()) << s;
  s = GroupedLinearCuda({.x = dact.get(), .ldx = c.inter, .gather = nullptr, .w = ddown.view, .n_out = c.hidden,
                         .experts = local, .offsets = doff.get(), .max_rows = pairs, .y = dout.get(),
                         .ldy = c.hidden},
                        stream);
  EXPECT_TRUE(s.ok()) << s;
  s = MoeCombineCuda({.y = dout.get(), .ldy = c.hidden, .indices = didx.get(), .pair_row = dpr.get(),
                      .weights = dwts.get(), .n = c.n, .k = c.k, .hidden = c.hidden, .out = dy.get(),
                      .ldo = c.hidden, .accumulate = true},
                     stream);
  EXPECT_TRUE(s.ok()) << s;
  if (capture) {
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaStreamDestroy(stream);
  ExpectClose(dy.Download(), y, 1e-4, "MoE chain vs MoeExpertsCpu");
}

TEST_F(CudaParityTest, MoeChainMatchesMoeExpertsCpu) {
  for (DType dt : {DType::kBF16, DType::kF32}) {
    for (auto [begin, end] : {std::pair<int32_t, int32_t>{0, 16}, {4, 12}}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", experts [", begin, ", ", end, ")"));
      MoeChainCase c;
      c.dt = dt, c.begin = begin, c.end = end;
      RunMoeChain(c, /*capture=*/false);
    }
  }
  {
    SCOPED_TRACE("one token (decode), k 6 of 64");
    MoeChainCase c;
    c.n = 1, c.k = 6, c.total_experts = 64, c.end = 64;
    RunMoeChain(c, /*capture=*/false);
  }
}

TEST_F(CudaParityTest, MoeChainAndCublasLinearAreGraphCapturable) {
  {
    SCOPED_TRACE("MoE chain in a CUDA graph");
    RunMoeChain(MoeChainCase{}, /*capture=*/true);
  }
  // CublasLinear::Run (cast kernel + GEMM) inside a capture, replayed twice with accumulate.
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    const int64_t m = 17, k = 512, n = 96;
    absl::StatusOr<std::unique_ptr<CublasLinear>> lin = CublasLinear::Create(stream, m * k);
    ASSERT_TRUE(lin.ok()) << lin.status();
    OwnedMatrix w(RandomVector(n * k, 71), DType::kBF16, n, k);
    DeviceMatrix dw(w);
    const std::vector<float> x = RandomVector(m * k, 72);
    std::vector<float> y = RandomVector(m * n, 73);
    DeviceBuffer<float> dx(x), dy(y);
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    const absl::Status s = (*lin)->Run(
        {.x = dx.get(), .ldx = k, .w = dw.view, .y = dy.get(), .ldy = n, .m = m, .accumulate = true});
    EXPECT_TRUE(s.ok()) << s;
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    LinearParams cpu{.x = x.data(), .ldx = k, .w = w.view, .y = y.data(), .ldy = n, .m = m, .accumulate = true};
    ASSERT_TRUE(LinearCpu(cpu).ok());
    ASSERT_TRUE(LinearCpu(cpu).ok());
    const std::vector<float> got = dy.Download();
    EXPECT_FALSE(AnyNan(got));
    EXPECT_LE(MaxAbsDiff(got, y), 1e-2 * std::max(1.0, MaxAbs(y)));
  }
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// ---- Argmax ----

TEST_F(CudaParityTest, ArgmaxTiesNansAndInfinities) {
  const int64_t cols = 2000, ldx = 2003;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> expected;
  auto row = [&](uint32_t seed) { return RandomVector(cols, seed, -5.0f, 5.0f); };
  {  // ties: the lowest index of the maximum
    std::vector<float> r = row(81);
    r[1500] = r[17] = r[1999] = 9.0f;
    rows.push_back(r), expected.push_back(17);
  }
  {  // NaNs never win
    std::vector<float> r = row(82);
    r[0] = r[5] = r[1998] = nan;
    r[1234] = 7.0f;
    rows.push_back(r), expected.push_back(1234);
  }
  rows.push_back(std::vector<float>(cols, nan)), expected.push_back(0);    // all NaN -> 0
  rows.push_back(std::vector<float>(cols, -inf)), expected.push_back(0);   // all -inf: tie at 0
  rows.push_back(std::vector<float>(cols, 1.0f)), expected.push_back(0);   // all equal
  {  // maximum in the last column
    std::vector<float> r = row(83);
    r[cols - 1] = 6.0f;
    rows.push_back(r), expected.push_back(static_cast<int32_t>(cols - 1));
  }
  {  // a single number among NaNs
    std::vector<float> r(cols, nan);
    r[1777] = -3.0f;
    rows.push_back(r), expected.push_back(1777);
  }
  {  // +inf next to NaN
    std::vector<float> r = row(84);
    r[899] = nan;
    r[900] = inf;
    rows.push_back(r), expected.push_back(900);
  }
  {  // -inf and NaN only: -inf is a number
    std::vector<float> r(cols, nan);
    r[3] = -inf;
    r[1000] = -inf;
    rows.push_back(r), expected.push_back(3);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> x(n * ldx, 0.0f);
  for (int64_t r = 0; r < n; ++r) std::copy(rows[r].begin(), rows[r].end(), x.begin() + r * ldx);
  std::vector<int32_t> out(n, -1);
  DeviceBuffer<float> dx(x);
  DeviceBuffer<int32_t> dout(out);
  ASSERT_TRUE(ArgmaxCpu({.x = x.data(), .ldx = ldx, .rows = n, .cols = cols, .out = out.data()}).ok());
  ASSERT_TRUE(ArgmaxCuda({.x = dx.get(), .ldx = ldx, .rows = n, .cols = cols, .out = dout.get()}, nullptr).ok());
  EXPECT_EQ(out, expected);
  EXPECT_EQ(dout.Download(), expected);
}

TEST_F(CudaParityTest, ArgmaxVocabSizedAndSingleColumnRows) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{3, 100352}, {5, 1}, {2, 1025}}) {
    SCOPED_TRACE(absl::StrCat(rows, " x ", cols));
    const std::vector<float> x = RandomVector(rows * cols, 91);
    std::vector<int32_t> out(rows, -1);
    DeviceBuffer<float> dx(x);
    DeviceBuffer<int32_t> dout(out);
    ASSERT_TRUE(ArgmaxCpu({.x = x.data(), .ldx = cols, .rows = rows, .cols = cols, .out = out.data()}).ok());
    ASSERT_TRUE(ArgmaxCuda({.x = dx.get(), .ldx = cols, .rows = rows, .cols = cols, .out = dout.get()}, nullptr).ok());
    EXPECT_EQ(dout.Download(), out);
  }
}

// ---- Copy bandwidth ----

TEST_F(CudaParityTest, MeasureCopyBandwidthReportsAPositiveRate) {
  double gbps = 0.0;
  const absl::Status s = MeasureCopyBandwidthCuda(size_t{64} << 20, 5, nullptr, &gbps);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(gbps, 10.0);
  std::printf("device-to-device copy: %.0f GB/s\n", gbps);
}

// ---- Limits refused before any CUDA call (runs without a GPU) ----

TEST(CudaMoeLimitsTest, RefusedBeforeLaunch) {
  std::vector<int32_t> indices(6, 0), offsets(301), rows(6);
  const absl::Status s = MoePermuteCuda({.indices = indices.data(), .n = 1, .k = 6, .expert_begin = 0,
                                         .expert_end = 300, .offsets = offsets.data(), .row_token = rows.data(),
                                         .pair_row = rows.data()},
                                        nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("MoePermuteCuda"), std::string::npos) << s;
  double gbps = 0.0;
  EXPECT_EQ(MeasureCopyBandwidthCuda(0, 5, nullptr, &gbps).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureCopyBandwidthCuda(1024, 0, nullptr, &gbps).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
