// GroupedLinearTensorCoreCuda (kernels/cuda/grouped_gemm_tc.h): CPU checks of its tile scheduler and thread
// maps (the same host/device functions the kernel runs; no GPU needed), host-side argument checks, and GPU
// parity against GroupedLinearCpu (skips without a GPU): realistic prefill shapes, odd shapes, gather, F16,
// strides, misaligned bases, 256 experts and a CUDA-graph capture.
#include "kernels/cuda/grouped_gemm_tc.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda_ops.h"
#include "kernels/dtype.h"
#include "kernels/moe_grouped.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::CudaParityTest;
using testing::DeviceBuffer;
using testing::ExpectClose;
using testing::OffsetsOf;
using testing::OwnedMatrix;
using testing::RandomVector;
namespace gt = grouped_tc;

// A skewed 64-expert prefill distribution (~6000 rows): empty experts, one expert with 700 rows, tile
// boundaries (1, 64, 65, 128 rows).
std::vector<int64_t> SkewedCounts(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> counts(64);
  for (int e = 0; e < 64; ++e) counts[e] = e % 11 == 4 ? 0 : 20 + static_cast<int64_t>(rng() % 150);
  counts[7] = 700;
  counts[13] = 64;
  counts[21] = 65;
  counts[30] = 1;
  counts[31] = 128;
  return counts;
}

// ---------------------------------------------------------------------------------------------------------
// CPU: the scheduler and the thread maps.

// The Tile that block slot `target` gets, computed as the kernel's warp 0 does (lane sums, exclusive scan,
// LaneFindTile per lane); expert -1 when no lane claims it. At most one lane may claim a slot.
gt::Tile EmulateScheduler(const std::vector<int32_t>& offsets, int experts, int64_t max_rows, int32_t target) {
  int32_t tiles[32][gt::kExpertsPerLane];
  int32_t sums[32];
  for (int lane = 0; lane < 32; ++lane) {
    sums[lane] = gt::LaneTileCounts(offsets.data(), experts, max_rows, lane, tiles[lane]);
  }
  gt::Tile result;
  int finders = 0;
  int32_t base = 0;
  for (int lane = 0; lane < 32; ++lane) {
    gt::Tile t;
    if (gt::LaneFindTile(offsets.data(), experts, max_rows, lane, tiles[lane], base, target, &t)) {
      ++finders;
      result = t;
    }
    base += sums[lane];
  }
  EXPECT_LE(finders, 1) << "slot " << target;
  return result;
}

// The tiles in (expert, row tile) order, written the obvious way.
std::vector<gt::Tile> ReferenceTiles(const std::vector<int32_t>& offsets, int experts, int64_t max_rows) {
  std::vector<gt::Tile> tiles;
  for (int e = 0; e < experts; ++e) {
    const int64_t b = std::clamp<int64_t>(offsets[e], 0, max_rows);
    const int64_t en = std::clamp<int64_t>(offsets[e + 1], b, max_rows);
    for (int64_t r = b; r < en; r += gt::kBM) {
      gt::Tile t;
      t.expert = e;
      t.row_begin = static_cast<int32_t>(r);
      t.row_end = static_cast<int32_t>(std::min<int64_t>(r + gt::kBM, en));
      tiles.push_back(t);
    }
  }
  return tiles;
}

void ExpectScheduleMatches(const std::vector<int64_t>& counts, int64_t max_rows) {
  const std::vector<int32_t> offsets = OffsetsOf(counts);
  const int experts = static_cast<int>(counts.size());
  const std::vector<gt::Tile> ref = ReferenceTiles(offsets, experts, max_rows);
  const int64_t slots = gt::MaxTiles(max_rows, experts);
  ASSERT_LE(static_cast<int64_t>(ref.size()), slots) << "gridDim.y bound";
  // Every used row is covered once, by tiles of 1..64 rows of its own expert.
  std::vector<int> cover(static_cast<size_t>(max_rows), 0);
  for (const gt::Tile& t : ref) {
    ASSERT_GE(t.row_end - t.row_begin, 1);
    ASSERT_LE(t.row_end - t.row_begin, gt::kBM);
    ASSERT_GE(t.row_begin, offsets[t.expert]);
    ASSERT_LE(t.row_end, offsets[t.expert + 1]);
    for (int32_t r = t.row_begin; r < t.row_end; ++r) ++cover[r];
  }
  for (int64_t r = 0; r < max_rows; ++r) ASSERT_EQ(cover[r], r < offsets[experts] ? 1 : 0) << "row " << r;
  for (int64_t s = 0; s < slots; ++s) {
    const gt::Tile got = EmulateScheduler(offsets, experts, max_rows, static_cast<int32_t>(s));
    if (s < static_cast<int64_t>(ref.size())) {
      ASSERT_EQ(got.expert, ref[s].expert) << "slot " << s;
      ASSERT_EQ(got.row_begin, ref[s].row_begin) << "slot " << s;
      ASSERT_EQ(got.row_end, ref[s].row_end) << "slot " << s;
    } else {
      ASSERT_EQ(got.expert, -1) << "slot " << s << " past the " << ref.size() << " tiles";
    }
  }
}

TEST(GroupedTcSchedule, MatchesTheSequentialWalk) {
  {
    SCOPED_TRACE("skewed 64 experts");
    const std::vector<int64_t> counts = SkewedCounts(7);
    int64_t rows = 0;
    for (int64_t c : counts) rows += c;
    ExpectScheduleMatches(counts, rows + 100);
  }
  {
    SCOPED_TRACE("256 experts, random counts");
    std::mt19937 rng(3);
    std::vector<int64_t> counts(256);
    int64_t rows = 0;
    for (int64_t& c : counts) rows += (c = static_cast<int64_t>(rng() % 140));
    ExpectScheduleMatches(counts, rows);
  }
  {
    SCOPED_TRACE("256 experts of 1 row (the bound's worst case)");
    ExpectScheduleMatches(std::vector<int64_t>(256, 1), 256);
  }
  {
    SCOPED_TRACE("256 experts of 64 rows");
    ExpectScheduleMatches(std::vector<int64_t>(256, 64), 256 * 64);
  }
  for (int64_t n : {0, 1, 63, 64, 65, 128, 129, 1000}) {
    SCOPED_TRACE(absl::StrCat("one expert, ", n, " rows"));
    ExpectScheduleMatches({n}, n + 3);
  }
  {
    SCOPED_TRACE("all empty");
    ExpectScheduleMatches(std::vector<int64_t>(64, 0), 50);
  }
  {
    SCOPED_TRACE("9 experts, lane boundary at expert 8");
    ExpectScheduleMatches({3, 0, 70, 0, 0, 0, 0, 200, 5}, 300);
  }
}

TEST(GroupedTcSchedule, ClampsOffsetsToCapacity) {
  // Offsets that are not ascending or run past max_rows: every tile stays inside [0, max_rows) with 1..64 rows.
  const int64_t max_rows = 100;
  const std::vector<int32_t> offsets = {-5, 40, 30, 90, 250, 260, 70};
  const int experts = 6;
  const int64_t slots = gt::MaxTiles(max_rows, experts);
  for (int64_t s = 0; s < slots; ++s) {
    const gt::Tile t = EmulateScheduler(offsets, experts, max_rows, static_cast<int32_t>(s));
    if (t.expert < 0) continue;
    EXPECT_GE(t.row_begin, 0);
    EXPECT_LE(t.row_end, max_rows);
    EXPECT_GE(t.row_end - t.row_begin, 1);
    EXPECT_LE(t.row_end - t.row_begin, gt::kBM);
  }
}

TEST(GroupedTcLayout, StagingMapsCoverEachTileOnceAndStayAligned) {
  // A: 64 x 32 f32 -> 16-bit, 4 elements per thread and pass; 8-byte shared stores.
  std::vector<int> a(gt::kBM * gt::kBK, 0);
  for (int t = 0; t < gt::kThreads; ++t) {
    for (int i = 0; i < gt::kAPasses; ++i) {
      const int r = gt::ARow(t, i), c = gt::ACol(t);
      ASSERT_LT(r, gt::kBM);
      ASSERT_LE(c + gt::kAVec, gt::kBK);
      EXPECT_EQ(c % gt::kAVec, 0);
      EXPECT_EQ((r * gt::kLdAB + c) * 2 % 8, 0) << "uint2 store alignment";
      for (int q = 0; q < gt::kAVec; ++q) ++a[r * gt::kBK + c + q];
    }
  }
  for (int v : a) ASSERT_EQ(v, 1);
  // B: 128 x 32 16-bit, 8 elements per thread and pass; 16-byte shared stores.
  std::vector<int> b(gt::kBN * gt::kBK, 0);
  for (int t = 0; t < gt::kThreads; ++t) {
    for (int i = 0; i < gt::kBPasses; ++i) {
      const int r = gt::BRow(t, i), c = gt::BCol(t);
      ASSERT_LT(r, gt::kBN);
      ASSERT_LE(c + gt::kBVec, gt::kBK);
      EXPECT_EQ((r * gt::kLdAB + c) * 2 % 16, 0) << "uint4 store alignment";
      for (int q = 0; q < gt::kBVec; ++q) ++b[r * gt::kBK + c + q];
    }
  }
  for (int v : b) ASSERT_EQ(v, 1);
  // Epilogue: 64 x 128, one element per thread and pass; a warp writes 32 consecutive columns of one row.
  std::vector<int> e(gt::kBM * gt::kBN, 0);
  for (int t = 0; t < gt::kThreads; ++t) {
    for (int i = 0; i < gt::kEPasses; ++i) {
      ASSERT_LT(gt::ERow(t, i), gt::kBM);
      ASSERT_LT(gt::ECol(t), gt::kBN);
      ++e[gt::ERow(t, i) * gt::kBN + gt::ECol(t)];
      if (t % 32 != 0) {
        EXPECT_EQ(gt::ERow(t, i), gt::ERow(t - 1, i));
        EXPECT_EQ(gt::ECol(t), gt::ECol(t - 1) + 1);
      }
    }
  }
  for (int v : e) ASSERT_EQ(v, 1);
  // Coalescing of the global loads: 8 consecutive threads read one x row's 32 floats, 4 one W row's 32 halves.
  for (int t = 1; t < gt::kThreads; ++t) {
    if (t % 8 != 0) {
      EXPECT_EQ(gt::ACol(t), gt::ACol(t - 1) + gt::kAVec);
    }
    if (t % 4 != 0) {
      EXPECT_EQ(gt::BCol(t), gt::BCol(t - 1) + gt::kBVec);
    }
  }
}

TEST(GroupedTcLayout, WarpTilesCoverTheBlockAndFragmentPointersAre256BitAligned) {
  EXPECT_EQ(gt::kLdAB % 8, 0);
  EXPECT_EQ(gt::kLdC % 4, 0);
  EXPECT_EQ(gt::kBM * gt::kLdAB * 2 % 128, 0) << "second buffer of s_a / s_b";
  std::vector<int> cover(gt::kBM * gt::kBN, 0);
  for (int w = 0; w < gt::kThreads / 32; ++w) {
    for (int r = 0; r < gt::kWarpM; ++r) {
      for (int c = 0; c < gt::kWarpN; ++c) ++cover[(gt::WarpRow(w) + r) * gt::kBN + gt::WarpCol(w) + c];
    }
    for (int i = 0; i < 2; ++i) {
      for (int kk = 0; kk < gt::kBK; kk += 16) {
        EXPECT_EQ(((gt::WarpRow(w) + 16 * i) * gt::kLdAB + kk) * 2 % 32, 0) << "matrix_a pointer";
        EXPECT_EQ(((gt::WarpCol(w) + 16 * i) * gt::kLdAB + kk) * 2 % 32, 0) << "matrix_b pointer";
      }
      for (int j = 0; j < 2; ++j) {
        EXPECT_EQ(((gt::WarpRow(w) + 16 * i) * gt::kLdC + gt::WarpCol(w) + 16 * j) * 4 % 32, 0) << "accumulator";
      }
    }
  }
  for (int v : cover) ASSERT_EQ(v, 1);
}

// Host-side argument checks: they return before any CUDA call, so they run without a GPU.
TEST(GroupedTcValidation, RejectsBadArgumentsBeforeLaunching) {
  std::vector<uint16_t> w16(4 * 8 * 16, 0);
  std::vector<float> w32(4 * 8 * 16, 0.0f), x(16 * 16, 0.0f), y(16 * 8, 0.0f);
  std::vector<int32_t> offsets = {0, 4, 8, 12, 16};
  GroupedLinearParams p{.x = x.data(), .ldx = 16, .gather = nullptr,
                        .w = MatrixView{w16.data(), DType::kBF16, 4 * 8, 16}, .n_out = 8, .experts = 4,
                        .offsets = offsets.data(), .max_rows = 16, .y = y.data(), .ldy = 8};
  GroupedLinearParams q = p;
  q.w = MatrixView{w32.data(), DType::kF32, 4 * 8, 16};
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "F32 weights";
  q.max_rows = 0;
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument)
      << "F32 weights, no rows";
  q = p;
  q.ldx = 15;
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "ldx < k";
  q = p;
  q.w.rows = 5 * 8;
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "w rows";
  std::vector<uint16_t> big(257 * 2 * 16, 0);
  q = p;
  q.w = MatrixView{big.data(), DType::kBF16, 257 * 2, 16};
  q.n_out = 2;
  q.experts = 257;
  q.ldy = 2;
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "257 experts";
  q = p;
  q.max_rows = int64_t{65535} * gt::kBM;  // gridDim.y would exceed 65535
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "grid";
  q = p;
  std::vector<float> act(16 * 4, 0.0f);
  q.swiglu_out = {y.data(), 8, act.data(), 4, 16, 3};  // 2 i != n_out
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "swiglu_out i";
  q.swiglu_out.i = 4;
  q.swiglu_out.gate_up = x.data();  // not the product's rows
  EXPECT_EQ(GroupedLinearTensorCoreCuda(q, nullptr).code(), absl::StatusCode::kInvalidArgument) << "swiglu_out rows";
  q.swiglu_out.gate_up = y.data();
  q.swiglu_input = true, q.ldx = 32;  // swiglu_out goes with plain input only, on either path
  for (const absl::Status& st : {GroupedLinearCuda(q, nullptr), GroupedLinearTensorCoreCuda(q, nullptr)}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(std::string(st.message()).find("swiglu_out"), std::string::npos) << st;
  }
  q = p;
  q.max_rows = 0;  // nothing to do: OK without a launch
  EXPECT_TRUE(GroupedLinearTensorCoreCuda(q, nullptr).ok());
  q.w.dtype = DType::kF16;
  EXPECT_TRUE(GroupedLinearTensorCoreCuda(q, nullptr).ok());
}

// ---------------------------------------------------------------------------------------------------------
// GPU parity.

struct TcCase {
  std::vector<int64_t> counts;
  int64_t n_out = 0, k = 0;
  int64_t ldx_pad = 0, ldy_pad = 0;
  int64_t extra_rows = 0;  // y capacity past offsets[experts] (must stay untouched)
  bool gather = false;
  int64_t src_rows = 0;    // rows of x when gathering
  DType dt = DType::kBF16;
  float w_scale = 0.1f;     // W uniform in [-w_scale, w_scale]: keeps the bf16 rounding error of x well inside 2e-2
  int64_t w_shift = 0;     // W placed this many elements into its allocation (1: base not 16-byte aligned)
  int64_t x_shift = 0;     // x placed this many floats into its allocation (1: base not 16-byte aligned)
  uint32_t seed = 1;
};

std::vector<float> RoundedTo(const std::vector<float>& v, DType dt) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    r[i] = dt == DType::kBF16 ? Bf16ToFloat(FloatToBf16(v[i])) : HalfToFloat(FloatToHalf(v[i]));
  }
  return r;
}

// Everything one case needs on the host and the device.
struct TcSetup {
  explicit TcSetup(const TcCase& c)
      : offsets(OffsetsOf(c.counts)),
        experts(static_cast<int64_t>(c.counts.size())),
        max_rows(offsets.back() + c.extra_rows),
        ldx(c.k + c.ldx_pad),
        ldy(c.n_out + c.ldy_pad),
        src_rows(c.gather ? c.src_rows : max_rows),
        x(RandomVector(src_rows * ldx, c.seed)),
        w(RandomVector(experts * c.n_out * c.k, c.seed + 1, -c.w_scale, c.w_scale), c.dt, experts * c.n_out, c.k),
        y0(RandomVector(max_rows * ldy, c.seed + 3, 5.0f, 6.0f)) {
    std::mt19937 rng(c.seed + 2);
    gather.resize(static_cast<size_t>(std::max<int64_t>(max_rows, 1)));
    for (int32_t& g : gather) g = static_cast<int32_t>(rng() % std::max<int64_t>(src_rows, 1));
    std::vector<float> xs(static_cast<size_t>(c.x_shift), 0.0f);
    xs.insert(xs.end(), x.begin(), x.end());
    dx = std::make_unique<DeviceBuffer<float>>(xs);
    if (c.w_shift == 0) {
      dw = std::make_unique<DeviceBuffer<uint16_t>>(w.half);
    } else {
      std::vector<uint16_t> ws(static_cast<size_t>(c.w_shift), 0);
      ws.insert(ws.end(), w.half.begin(), w.half.end());
      dw = std::make_unique<DeviceBuffer<uint16_t>>(ws);
    }
    dg = std::make_unique<DeviceBuffer<int32_t>>(gather);
    doff = std::make_unique<DeviceBuffer<int32_t>>(offsets);
    cpu = GroupedLinearParams{.x = x.data(), .ldx = ldx, .gather = c.gather ? gather.data() : nullptr, .w = w.view,
                              .n_out = c.n_out, .experts = experts, .offsets = offsets.data(),
                              .max_rows = max_rows, .y = nullptr, .ldy = ldy};
    gpu = cpu;
    gpu.x = dx->get() + c.x_shift;
    gpu.gather = c.gather ? dg->get() : nullptr;
    gpu.w.data = dw->get() + c.w_shift;
    gpu.offsets = doff->get();
  }

  // GroupedLinearCpu on y0 with x as given (rounded = false) or rounded to the weight type first.
  std::vector<float> Reference(bool rounded) const {
    std::vector<float> y = y0;
    const std::vector<float> xr = rounded ? RoundedTo(x, w.view.dtype) : std::vector<float>();
    GroupedLinearParams p = cpu;
    if (rounded) p.x = xr.data();
    p.y = y.data();
    const absl::Status s = GroupedLinearCpu(p);
    EXPECT_TRUE(s.ok()) << s;
    return y;
  }

  std::vector<int32_t> offsets;
  int64_t experts, max_rows, ldx, ldy, src_rows;
  std::vector<float> x;
  OwnedMatrix w;
  std::vector<float> y0;
  std::vector<int32_t> gather;
  std::unique_ptr<DeviceBuffer<float>> dx;
  std::unique_ptr<DeviceBuffer<uint16_t>> dw;
  std::unique_ptr<DeviceBuffer<int32_t>> dg, doff;
  GroupedLinearParams cpu, gpu;
};

// Runs the kernel on a fresh copy of y0 and returns y.
std::vector<float> RunTc(const TcSetup& s, cudaStream_t stream = nullptr) {
  DeviceBuffer<float> dy(s.y0);
  GroupedLinearParams p = s.gpu;
  p.y = dy.get();
  const absl::Status st = GroupedLinearTensorCoreCuda(p, stream);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return dy.Download();
}

// x rounded to bf16 on the GPU: ~2e-2 of the output scale against f32 x; against a reference that rounds x
// itself only the summation order differs.
void ExpectMatchesCpu(const TcCase& c) {
  SetGroupedTcSmall(false);  // the 64-row tiles (GroupedTcSmall* below test the small-tile kernel)
  struct Restore {
    ~Restore() { SetGroupedTcSmall(true); }
  } restore;
  TcSetup s(c);
  const std::vector<float> got = RunTc(s);
  ExpectClose(got, s.Reference(/*rounded=*/false), c.dt == DType::kBF16 ? 2e-2 : 2e-3, "vs GroupedLinearCpu");
  ExpectClose(got, s.Reference(/*rounded=*/true), 1e-4, "vs GroupedLinearCpu on rounded x");
  // With x16 (x rounded on the host; 16-byte rows, so k % 8 == 0 takes the 16-bit A loads, other k the f32 x):
  // the same 16-bit values reach the MMAs, so the result is bit-identical. (Small cases only: the emulator
  // takes ~30 s per realistic-size run.)
  if (s.max_rows * c.k > (int64_t{1} << 20)) return;
  const int64_t ld16 = (c.k + 7) / 8 * 8;
  std::vector<uint16_t> x16(static_cast<size_t>(std::max<int64_t>(s.src_rows * ld16, 1)), 0);
  for (int64_t r = 0; r < s.src_rows; ++r) {
    for (int64_t col = 0; col < c.k; ++col) x16[r * ld16 + col] = FloatTo16(s.x[r * s.ldx + col], c.dt);
  }
  DeviceBuffer<uint16_t> dx16(x16);
  // Both main loops of the x16 path: pipelined through asynchronous copies (the default) and double-buffered
  // through registers.
  for (bool pipelined : {true, false}) {
    SetGroupedTcPipeline(pipelined);
    DeviceBuffer<float> dy(s.y0);
    GroupedLinearParams p = s.gpu;
    p.y = dy.get(), p.x16 = dx16.get(), p.ldx16 = ld16;
    const absl::Status st = GroupedLinearTensorCoreCuda(p, nullptr);
    SetGroupedTcPipeline(true);
    ASSERT_TRUE(st.ok()) << st;
    ExpectClose(dy.Download(), got, 0.0, pipelined ? "x16 (pipelined) vs x" : "x16 (registers) vs x");
  }
  // swiglu_out (the SwiGLU up projection writing its activations): bit for bit SwigluCuda over the product's rows,
  // fused into the epilogue on the x16 path (both main loops; every element written: the outputs start NaN) and
  // as the product then SwigluCuda on the f32 path.
  const int64_t n = s.offsets.back();
  if (c.n_out % 2 != 0 || n == 0) return;
  const int64_t half = c.n_out / 2;
  DeviceBuffer<float> dgot(got), want(std::vector<float>(n * half, NAN));
  DeviceBuffer<uint16_t> want16(std::vector<uint16_t>(n * half, 0));
  ASSERT_TRUE(SwigluCuda({dgot.get(), s.ldy, want.get(), half, n, half, {want16.get(), half, c.dt}}, nullptr).ok());
  for (int mode = 0; mode < 3; ++mode) {  // 0: f32 x, 1: x16 pipelined, 2: x16 through registers
    SCOPED_TRACE(mode == 0 ? "swiglu_out, f32 x" : mode == 1 ? "swiglu_out, x16 pipelined" : "swiglu_out, x16 registers");
    SetGroupedTcPipeline(mode != 2);
    DeviceBuffer<float> dy(s.y0), act(std::vector<float>(n * half, NAN));
    DeviceBuffer<uint16_t> act16(std::vector<uint16_t>(n * half, 0));
    GroupedLinearParams p = s.gpu;
    p.y = dy.get();
    if (mode > 0) p.x16 = dx16.get(), p.ldx16 = ld16;
    p.swiglu_out = {dy.get(), s.ldy, act.get(), half, n, half, {act16.get(), half, c.dt}};
    const absl::Status st = GroupedLinearTensorCoreCuda(p, nullptr);
    SetGroupedTcPipeline(true);
    ASSERT_TRUE(st.ok()) << st;
    ExpectClose(act.Download(), want.Download(), 0.0, "activations");
    EXPECT_EQ(act16.Download(), want16.Download());
  }
}

TEST_F(CudaParityTest, GroupedTcRealisticPrefill) {
  const std::vector<int64_t> counts = SkewedCounts(11);
  int64_t rows = 0;
  for (int64_t c : counts) rows += c;
  const int64_t extra = std::max<int64_t>(6144 - rows, 0) + 16;
  {
    SCOPED_TRACE("gate_up: n_out 1024, k 1536, gather from 1024 tokens");
    ExpectMatchesCpu({.counts = counts, .n_out = 1024, .k = 1536, .extra_rows = extra, .gather = true,
                      .src_rows = 1024, .w_scale = 0.05f, .seed = 100});
  }
  {
    SCOPED_TRACE("down: n_out 1536, k 512");
    ExpectMatchesCpu({.counts = counts, .n_out = 1536, .k = 512, .extra_rows = extra, .w_scale = 0.05f,
                      .seed = 200});
  }
}

TEST_F(CudaParityTest, GroupedTcOddShapes) {
  const std::vector<int64_t> counts = {1, 0, 65, 64, 3, 0, 130};
  for (DType dt : {DType::kBF16, DType::kF16}) {
    // (k, n_out, ldx pad, gather): vector / scalar x loads (ldx % 4), vector / scalar W loads (k % 8).
    struct Shape {
      int64_t k, n_out, ldx_pad;
      bool gather;
    };
    for (const Shape& sh : {Shape{40, 70, 0, false}, Shape{40, 70, 3, true}, Shape{33, 70, 3, true},
                            Shape{33, 70, 0, false}, Shape{200, 130, 8, true}, Shape{7, 3, 1, false},
                            Shape{64, 64, 0, false}, Shape{16, 1, 0, true}}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", k ", sh.k, ", n_out ", sh.n_out, ", ldx pad ", sh.ldx_pad,
                                ", gather ", sh.gather));
      ExpectMatchesCpu({.counts = counts, .n_out = sh.n_out, .k = sh.k, .ldx_pad = sh.ldx_pad, .ldy_pad = 5,
                        .extra_rows = 9, .gather = sh.gather, .src_rows = 50, .dt = dt, .seed = 300});
    }
  }
  {
    SCOPED_TRACE("misaligned W and x bases (scalar paths with k % 8 == 0)");
    ExpectMatchesCpu({.counts = counts, .n_out = 70, .k = 64, .ldy_pad = 1, .extra_rows = 2, .w_shift = 1,
                      .x_shift = 1, .seed = 400});
  }
  {
    SCOPED_TRACE("one expert, one row");
    ExpectMatchesCpu({.counts = {1}, .n_out = 70, .k = 33, .extra_rows = 4, .seed = 500});
  }
  {
    SCOPED_TRACE("one expert, 65 rows, gather");
    ExpectMatchesCpu({.counts = {65}, .n_out = 64, .k = 32, .gather = true, .src_rows = 20, .seed = 600});
  }
  {
    SCOPED_TRACE("all experts empty: y untouched");
    ExpectMatchesCpu({.counts = {0, 0, 0}, .n_out = 16, .k = 16, .extra_rows = 10, .seed = 700});
  }
  {
    SCOPED_TRACE("256 experts");
    std::mt19937 rng(8);
    std::vector<int64_t> many(256);
    for (int64_t& c : many) c = rng() % 5 == 0 ? 0 : static_cast<int64_t>(rng() % 90);
    ExpectMatchesCpu({.counts = many, .n_out = 24, .k = 48, .ldy_pad = 3, .extra_rows = 7, .gather = true,
                      .src_rows = 300, .seed = 800});
  }
}

TEST_F(CudaParityTest, GroupedTcInsideStreamCaptureMatchesEager) {
  const TcCase c{.counts = {100, 0, 37, 300, 64, 1}, .n_out = 256, .k = 512, .ldx_pad = 4, .ldy_pad = 4,
                 .extra_rows = 11, .gather = true, .src_rows = 200, .w_scale = 0.05f, .seed = 900};
  TcSetup s(c);
  const std::vector<float> eager = RunTc(s);
  ExpectClose(eager, s.Reference(/*rounded=*/true), 1e-4, "eager vs rounded-x reference");

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  DeviceBuffer<float> dy(s.y0);
  GroupedLinearParams p = s.gpu;
  p.y = dy.get();
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  const absl::Status st = GroupedLinearTensorCoreCuda(p, stream);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(st.ok()) << st;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int rep = 0; rep < 2; ++rep) ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  EXPECT_EQ(dy.Download(), eager) << "the graph computes the same bits as the eager launch";
}

// ---------------------------------------------------------------------------------------------------------
// GroupedTcSmallCuda (kernels/cuda/grouped_tc_small.cu): a few to ~32 rows per expert, taken by
// GroupedLinearTensorCoreCuda when eligible.

// x rounded to the case's 16-bit type, rows of `ld16` elements (the padding zero).
std::vector<uint16_t> X16Of(const TcSetup& s, const TcCase& c, int64_t ld16) {
  std::vector<uint16_t> x16(static_cast<size_t>(std::max<int64_t>(s.src_rows * ld16, 1)), 0);
  for (int64_t r = 0; r < s.src_rows; ++r) {
    for (int64_t col = 0; col < c.k; ++col) x16[r * ld16 + col] = FloatTo16(s.x[r * s.ldx + col], c.dt);
  }
  return x16;
}

// The small-tile kernel through GroupedLinearTensorCoreCuda against GroupedLinearCpu on the rounded x (only the
// summation order differs) and on x itself (the bf16 rounding of x); rows past offsets[experts] untouched (y
// starts at y0); the 64-row-tile kernel (switch off) within the same tolerance; and swiglu_out from its epilogue
// bit for bit SwigluCuda on its own product, in one launch.
void ExpectSmallMatchesCpu(const TcCase& c) {
  TcSetup s(c);
  const int64_t ld16 = c.k + 8;
  DeviceBuffer<uint16_t> dx16(X16Of(s, c, ld16));
  GroupedLinearParams p = s.gpu;
  p.x16 = dx16.get(), p.ldx16 = ld16;
  ASSERT_TRUE(GroupedTcSmallEligible(p));
  DeviceBuffer<float> dy(s.y0);
  p.y = dy.get();
  ASSERT_TRUE(GroupedLinearTensorCoreCuda(p, nullptr).ok());
  const std::vector<float> got = dy.Download();
  ExpectClose(got, s.Reference(/*rounded=*/true), 1e-4, "small tiles vs GroupedLinearCpu on rounded x");
  ExpectClose(got, s.Reference(/*rounded=*/false), c.dt == DType::kBF16 ? 2e-2 : 2e-3, "vs GroupedLinearCpu");
  {
    DeviceBuffer<float> direct(s.y0);
    GroupedLinearParams q = p;
    q.y = direct.get();
    ASSERT_TRUE(GroupedTcSmallCuda(q, nullptr).ok());
    EXPECT_EQ(direct.Download(), got) << "GroupedTcSmallCuda itself computes the same bits";
  }
  {
    SetGroupedTcSmall(false);
    DeviceBuffer<float> big(s.y0);
    GroupedLinearParams q = p;
    q.y = big.get();
    EXPECT_FALSE(GroupedTcSmallEligible(q));
    const absl::Status st = GroupedLinearTensorCoreCuda(q, nullptr);
    SetGroupedTcSmall(true);
    ASSERT_TRUE(st.ok()) << st;
    ExpectClose(big.Download(), got, 1e-4, "64-row tiles vs small tiles");
  }
  const int64_t n = s.offsets.back();
  if (n == 0) return;
  const int64_t half = c.n_out / 2;
  DeviceBuffer<float> dgot(got), want(std::vector<float>(n * half, NAN));
  DeviceBuffer<uint16_t> want16(std::vector<uint16_t>(n * half, 0));
  ASSERT_TRUE(SwigluCuda({dgot.get(), s.ldy, want.get(), half, n, half, {want16.get(), half, c.dt}}, nullptr).ok());
  DeviceBuffer<float> scratch(s.y0), act(std::vector<float>(n * half, NAN));
  DeviceBuffer<uint16_t> act16(std::vector<uint16_t>(n * half, 0));
  GroupedLinearParams q = p;
  q.y = scratch.get();
  q.swiglu_out = {scratch.get(), s.ldy, act.get(), half, n, half, {act16.get(), half, c.dt}};
  ASSERT_TRUE(GroupedTcSmallEligible(q));
  EXPECT_EQ(testing::LaunchesOf([&](cudaStream_t st) { return GroupedLinearTensorCoreCuda(q, st); }), 1)
      << "the activations from the product's own launch";
  ASSERT_TRUE(GroupedLinearTensorCoreCuda(q, nullptr).ok());
  ExpectClose(act.Download(), want.Download(), 0.0, "swiglu_out activations");
  EXPECT_EQ(act16.Download(), want16.Download()) << "swiglu_out 16-bit copy";
}

TEST_F(CudaParityTest, GroupedTcSmallMatchesCpuOnTheRoundedInput) {
  // Empty experts, 1 row, the 16 / 17 boundary of the second M tile, 32 / 33 (a second chunk), 70 (three).
  const std::vector<int64_t> counts = {12, 0, 1, 16, 17, 32, 33, 70, 3};
  for (DType dt : {DType::kBF16, DType::kF16}) {
    struct Shape {
      int64_t n_out, k;
      bool gather;
    };
    // k: one partial group (48 = 3 steps), 13 steps, 65 steps (33 groups: up to 5 per warp, both W buffers).
    for (const Shape& sh : {Shape{64, 48, true}, Shape{96, 208, false}, Shape{32, 1040, true}}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dt), ", n_out ", sh.n_out, ", k ", sh.k, ", gather ", sh.gather));
      ExpectSmallMatchesCpu({.counts = counts, .n_out = sh.n_out, .k = sh.k, .ldy_pad = 3, .extra_rows = 5,
                             .gather = sh.gather, .src_rows = 40, .dt = dt, .w_scale = 0.05f, .seed = 1100});
    }
  }
  {
    SCOPED_TRACE("decode batch 128 of a Granite-4.0-H-Tiny down projection: 768 rows over 64 experts");
    std::mt19937 rng(12);
    std::vector<int64_t> decode(64, 0);
    for (int i = 0; i < 768; ++i) ++decode[rng() % 64];
    ExpectSmallMatchesCpu({.counts = decode, .n_out = 1536, .k = 512, .w_scale = 0.05f, .seed = 1200});
  }
}

TEST_F(CudaParityTest, GroupedTcSmallEligibility) {
  const TcCase c{.counts = {5, 0, 20}, .n_out = 64, .k = 32, .gather = true, .src_rows = 10, .seed = 1300};
  TcSetup s(c);
  DeviceBuffer<uint16_t> dx16(X16Of(s, c, c.k));
  GroupedLinearParams p = s.gpu;
  p.x16 = dx16.get(), p.ldx16 = c.k;
  EXPECT_TRUE(GroupedTcSmallEligible(p));
  auto rejects = [&](GroupedLinearParams q, const char* why) {
    EXPECT_FALSE(GroupedTcSmallEligible(q)) << why;
    const absl::Status st = GroupedTcSmallCuda(q, nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << why << ": " << st;
  };
  GroupedLinearParams q = p;
  q.x16 = nullptr;
  rejects(q, "no x16");
  q = p, q.ldx16 = c.k + 4;
  rejects(q, "ldx16 not a multiple of 8");
  q = p, q.max_rows = 33 * q.experts;
  rejects(q, "more than 32 rows per expert on average");
  q = p, q.n_out = 48, q.w.rows = 3 * 48;
  rejects(q, "n_out not a multiple of 32");
  q = p, q.w.cols = 24, q.ldx = 24;
  rejects(q, "k not a multiple of 16");
  SetGroupedTcSmall(false);
  rejects(p, "switched off");
  SetGroupedTcSmall(true);
}

// Milliseconds per call of `run` (one warm-up call, then `reps` timed between two events); -1 after a failure.
template <typename Run>
double MsPerCall(Run&& run, int reps) {
  cudaEvent_t start = nullptr, stop = nullptr;
  double per = -1.0;
  if (cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess && run().ok() &&
      cudaEventRecord(start, nullptr) == cudaSuccess) {
    bool ok = true;
    for (int i = 0; i < reps && ok; ++i) ok = run().ok();
    float ms = 0.0f;
    if (ok && cudaEventRecord(stop, nullptr) == cudaSuccess && cudaEventSynchronize(stop) == cudaSuccess &&
        cudaEventElapsedTime(&ms, start, stop) == cudaSuccess) {
      per = ms / reps;
    }
  }
  if (start != nullptr) cudaEventDestroy(start);
  if (stop != nullptr) cudaEventDestroy(stop);
  EXPECT_GE(per, 0.0) << "a timed call failed";
  return per;
}

// Informational: time of the realistic gate_up shape next to the CUDA-core GroupedLinearCuda.
TEST_F(CudaParityTest, GroupedTcTiming) {
  const std::vector<int64_t> counts = SkewedCounts(11);
  const TcCase c{.counts = counts, .n_out = 1024, .k = 1536, .extra_rows = 16, .gather = true, .src_rows = 1024,
                 .w_scale = 0.05f, .seed = 1000};
  TcSetup s(c);
  DeviceBuffer<float> dy(s.y0);
  GroupedLinearParams p = s.gpu;
  p.y = dy.get();
  const double flops = 2.0 * static_cast<double>(s.offsets.back()) * c.n_out * c.k;
  // x as 16-bit rows (the prefill path: the norm before the experts writes them).
  DeviceBuffer<uint16_t> dx16(X16Of(s, c, c.k));
  const char* names[] = {"GroupedLinearTensorCoreCuda (f32 x)", "GroupedLinearTensorCoreCuda (x16, registers)",
                         "GroupedLinearTensorCoreCuda (x16, pipelined)", "GroupedLinearCuda"};
  for (int which = 0; which < 4; ++which) {
    GroupedLinearParams q = p;
    if (which == 1 || which == 2) q.x16 = dx16.get(), q.ldx16 = c.k;
    SetGroupedTcPipeline(which != 1);
    const double per = MsPerCall(
        [&] { return which < 3 ? GroupedLinearTensorCoreCuda(q, nullptr) : GroupedLinearCuda(q, nullptr); }, 10);
    SetGroupedTcPipeline(true);
    std::printf("[timing] %s: %lld rows x %lld x %lld: %.3f ms, %.1f TFLOP/s\n", names[which],
                static_cast<long long>(s.offsets.back()), static_cast<long long>(c.n_out),
                static_cast<long long>(c.k), per, flops / (per * 1e-3) / 1e12);
  }
  // Decode batch 128 of Granite-4.0-H-Tiny (768 expert rows over 64 experts, ~12 each): the 16-row-tile kernel
  // (GroupedTcSmallCuda), the 64-row tiles and the GEMV, on the up projection (with the SwiGLU activations) and the
  // down projection; W bytes per call over the time give the bandwidth reached.
  std::mt19937 rng(13);
  std::vector<int64_t> decode(64, 0);
  for (int i = 0; i < 768; ++i) ++decode[rng() % 64];
  for (const bool up : {true, false}) {
    const TcCase d{.counts = decode, .n_out = up ? 1024 : 1536, .k = up ? 1536 : 512, .gather = up,
                   .src_rows = 128, .w_scale = 0.05f, .seed = 1400};
    TcSetup ds(d);
    DeviceBuffer<uint16_t> d16(X16Of(ds, d, d.k));
    DeviceBuffer<float> out(ds.y0), act(std::vector<float>(768 * 512, 0.0f));
    DeviceBuffer<uint16_t> act16(std::vector<uint16_t>(768 * 512, 0));
    GroupedLinearParams q = ds.gpu;
    q.y = out.get(), q.x16 = d16.get(), q.ldx16 = d.k;
    if (up) q.swiglu_out = {out.get(), ds.ldy, act.get(), 512, 768, 512, {act16.get(), 512, d.dt}};
    const double w_bytes = 2.0 * 64 * d.n_out * d.k;
    const char* kinds[] = {"16-row tiles", "64-row tiles", "GEMV (GroupedLinearCuda)"};
    for (int which = 0; which < 3; ++which) {
      SetGroupedTcSmall(which == 0);
      const double per = MsPerCall(
          [&] { return which < 2 ? GroupedLinearTensorCoreCuda(q, nullptr) : GroupedLinearCuda(q, nullptr); }, 20);
      SetGroupedTcSmall(true);
      std::printf("[timing] decode batch 128 experts %s, %s: 768 rows x %lld x %lld: %.3f ms, W at %.0f GB/s\n",
                  up ? "up (+SwiGLU)" : "down", kinds[which], static_cast<long long>(d.n_out),
                  static_cast<long long>(d.k), per, w_bytes / (per * 1e-3) / 1e9);
    }
  }
}

}  // namespace
}  // namespace quarry
