// Self-test of the CUDA emulator (tests/cuda_emu): the semantics of the emulated intrinsics, conversions and
// API, and the misuse checks (each must abort with its message). Written as CUDA and converted like the
// kernels, so it also exercises convert_cu.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>
#include <cuda_runtime_api.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace {

template <typename T>
struct Dev {
  explicit Dev(size_t n, const T* init = nullptr) : n(n) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
    if (init != nullptr) {
      EXPECT_EQ(cudaMemcpy(p, init, n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> Get() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  T* p = nullptr;
  size_t n;
};

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- Conversions ----

TEST(EmuConversions, HalfToFloatIsExactForEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
    const float ref = quarry::HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(Bits(got), Bits(ref)) << h;
    }
#if defined(__F16C__)
    ASSERT_EQ(Bits(got), Bits(_cvtsh_ss(static_cast<unsigned short>(h)))) << h;  // NaNs: quieted, payload kept
#endif
  }
}

// Every half rounding boundary (the midpoint between consecutive halves, and one float ulp either side), plus a
// stride over all float bit patterns.
TEST(EmuConversions, FloatToHalfRoundsToNearestEven) {
  auto check = [](float f) {
    const unsigned short got = __half_as_ushort(__float2half_rn(f));
    if (std::isnan(f)) {
      ASSERT_EQ(got, 0x7fffu) << "NaN -> the canonical NaN";
      return;
    }
#if defined(__F16C__)
    ASSERT_EQ(got, _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << std::hexfloat << f;
#endif
    ASSERT_EQ(got, quarry::FloatToHalf(f)) << std::hexfloat << f;
  };
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const double lo = quarry::HalfToFloat(static_cast<uint16_t>(h));
    const double hi = h + 1 == 0x7c00 ? 65536.0 : quarry::HalfToFloat(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact in float
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f), static_cast<float>(lo)}) {
      check(f);
      check(-f);
    }
  }
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 997) check(FromBits(static_cast<uint32_t>(u)));
}

TEST(EmuConversions, FloatToBf16RoundsToNearestEven) {
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 251) {
    const float f = FromBits(static_cast<uint32_t>(u));
    const unsigned short got = __bfloat16_as_ushort(__float2bfloat16_rn(f));
    if (std::isnan(f)) {
      ASSERT_EQ(got, 0x7fffu);
    } else {
      ASSERT_EQ(got, quarry::FloatToBf16(f)) << std::hexfloat << f;
    }
  }
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint32_t up = b << 16;
    for (uint32_t u : {up + 0x8000u, up + 0x7fffu, up + 0x8001u}) {  // ties and their neighbours
      const float f = FromBits(u);
      if (!std::isnan(f)) {
        ASSERT_EQ(__bfloat16_as_ushort(__float2bfloat16_rn(f)), quarry::FloatToBf16(f)) << u;
      }
    }
    ASSERT_EQ(Bits(__bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(b)))), up);
  }
}

// ---- Warp intrinsics ----

// out[t * 16 + i]: results of the intrinsics for thread t of a 64-thread block (two warps).
__global__ void WarpIntrinsicsKernel(const int* in, int* out) {
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int v = in[t];
  int* o = out + t * 16;
  o[0] = __shfl_sync(0xffffffffu, v, (lane * 7) & 31);
  o[1] = __shfl_up_sync(0xffffffffu, v, 3);
  o[2] = __shfl_down_sync(0xffffffffu, v, 5);
  o[3] = __shfl_xor_sync(0xffffffffu, v, 9);
  o[4] = __shfl_xor_sync(0xffffffffu, v, 1, 8);   // width 8
  o[5] = __shfl_up_sync(0xffffffffu, v, 2, 16);   // width 16
  o[6] = __shfl_down_sync(0xffffffffu, v, 2, 16);
  o[7] = static_cast<int>(__ballot_sync(0xffffffffu, v % 3 == 0));
  o[8] = __any_sync(0xffffffffu, v == 1000 + t);
  o[9] = __all_sync(0xffffffffu, v >= 0);
  o[10] = static_cast<int>(__match_any_sync(0xffffffffu, v % 4));
  o[11] = __reduce_add_sync(0xffffffffu, v);
  o[12] = __reduce_max_sync(0xffffffffu, v);
  const double d = __shfl_sync(0xffffffffu, 0.5 * v, 31 - lane);  // 8-byte shuffle
  o[13] = static_cast<int>(2.0 * d);
  if (lane < 16) {  // a partial mask: the lower half-warp only
    o[14] = __shfl_xor_sync(0x0000ffffu, v, 1);
    __syncwarp(0x0000ffffu);
  } else {
    o[14] = -1;
  }
  o[15] = __popc(static_cast<unsigned>(v)) + 100 * __ffs(v) + 10000 * __clz(v);
}

TEST(EmuWarp, IntrinsicsFollowCudaSemantics) {
  std::mt19937 rng(5);
  std::vector<int> in(64);
  for (int& x : in) x = static_cast<int>(rng() % 50);
  Dev<int> din(64, in.data()), dout(64 * 16);
  WarpIntrinsicsKernel<<<1, 64>>>(din.p, dout.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> out = dout.Get();
  for (int t = 0; t < 64; ++t) {
    const int lane = t & 31, w = t & ~31;
    const int* o = &out[t * 16];
    auto at = [&](int l) { return in[w + l]; };
    EXPECT_EQ(o[0], at((lane * 7) & 31)) << t;
    EXPECT_EQ(o[1], lane >= 3 ? at(lane - 3) : at(lane)) << t;
    EXPECT_EQ(o[2], lane + 5 < 32 ? at(lane + 5) : at(lane)) << t;
    EXPECT_EQ(o[3], at(lane ^ 9)) << t;
    EXPECT_EQ(o[4], at(lane ^ 1)) << t;
    EXPECT_EQ(o[5], (lane & 15) >= 2 ? at(lane - 2) : at(lane)) << t;
    EXPECT_EQ(o[6], (lane & 15) + 2 < 16 ? at(lane + 2) : at(lane)) << t;
    unsigned ballot = 0, match = 0;
    int sum = 0, mx = 0;
    for (int l = 0; l < 32; ++l) {
      ballot |= (at(l) % 3 == 0 ? 1u : 0u) << l;
      match |= (at(l) % 4 == at(lane) % 4 ? 1u : 0u) << l;
      sum += at(l);
      mx = std::max(mx, at(l));
    }
    EXPECT_EQ(static_cast<unsigned>(o[7]), ballot) << t;
    EXPECT_EQ(o[8], 0) << t;
    EXPECT_EQ(o[9], 1) << t;
    EXPECT_EQ(static_cast<unsigned>(o[10]), match) << t;
    EXPECT_EQ(o[11], sum) << t;
    EXPECT_EQ(o[12], mx) << t;
    EXPECT_EQ(o[13], at(31 - lane)) << t;
    EXPECT_EQ(o[14], lane < 16 ? at(lane ^ 1) : -1) << t;
    const unsigned u = static_cast<unsigned>(at(lane));
    EXPECT_EQ(o[15], __builtin_popcount(u) + 100 * __builtin_ffs(at(lane)) + 10000 * (u ? __builtin_clz(u) : 32)) << t;
  }
}

// ---- Barriers, 3-D blocks, shared memory ----

__global__ void BarrierKernel(int* out) {
  __shared__ int tile[4][8][8];
  const int x = threadIdx.x, y = threadIdx.y, z = threadIdx.z;
  tile[z][y][x] = (z * 8 + y) * 8 + x;
  __syncthreads();
  const int mirrored = tile[3 - z][7 - y][7 - x];  // written by another warp
  const int count = __syncthreads_count(x == 0);
  const int all = __syncthreads_and(mirrored >= 0);
  const int any = __syncthreads_or(mirrored == 255);
  const int t = (z * blockDim.y + y) * blockDim.x + x;
  out[blockIdx.x * 256 + t] = mirrored + 1000 * count + 100000 * all + 1000000 * any;
}

TEST(EmuBlock, BarriersAndSharedMemoryAcross3dBlocks) {
  Dev<int> dout(2 * 256);
  BarrierKernel<<<2, dim3(8, 8, 4)>>>(dout.p);
  const std::vector<int> out = dout.Get();
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 256; ++t) EXPECT_EQ(out[b * 256 + t], (255 - t) + 1000 * 32 + 100000 + 1000000) << t;
  }
}

__global__ void UnwrittenSharedKernel(float* out, int* iout) {
  __shared__ float never_written[4];
  __shared__ int never_written_int[4];
  extern __shared__ float dyn[];
  if (threadIdx.x == 0) {
    out[0] = never_written[1];
    out[1] = dyn[3];
    iout[0] = never_written_int[2];
  }
}

TEST(EmuBlock, UnwrittenSharedMemoryReadsAsNanOrMinusOne) {
  Dev<float> dout(2);
  Dev<int> diout(1);
  UnwrittenSharedKernel<<<3, 32, 64>>>(dout.p, diout.p);
  const std::vector<float> out = dout.Get();
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(diout.Get()[0], -1);
}

// Asynchronous copies land at the wait that covers their batch, zero-filled past the bytes copied.
__global__ void PipelineKernel(const float* src, float* out) {
  __shared__ __align__(16) float buf[2][4 * 32];
  const int t = threadIdx.x;
  __pipeline_memcpy_async(&buf[0][4 * t], src + 4 * t, 16);  // batch 0
  __pipeline_commit();
  __pipeline_memcpy_async(&buf[1][4 * t], src + 4 * t, 16, 8);  // batch 1: 8 bytes copied, 8 zero-filled
  __pipeline_commit();
  __pipeline_wait_prior(1);  // batch 0 only
  out[t] = buf[0][4 * t + 1];
  out[32 + t] = buf[1][4 * t];  // not landed yet: still unwritten shared memory (NaN)
  __pipeline_wait_prior(0);
  out[64 + t] = buf[1][4 * t + 1];
  out[96 + t] = buf[1][4 * t + 2];  // zero-filled
}

TEST(EmuBlock, AsyncCopiesLandAtTheirWait) {
  std::vector<float> src(128);
  for (int i = 0; i < 128; ++i) src[i] = static_cast<float>(i) + 0.5f;
  Dev<float> dsrc(128, src.data()), dout(128);
  PipelineKernel<<<2, 32>>>(dsrc.p, dout.p);
  const std::vector<float> out = dout.Get();
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(out[t], src[4 * t + 1]) << t;
    EXPECT_TRUE(std::isnan(out[32 + t])) << t;
    EXPECT_EQ(out[64 + t], src[4 * t + 1]) << t;
    EXPECT_EQ(out[96 + t], 0.0f) << t;
  }
}

__global__ void MisalignedAsyncCopyKernel(const float* src) {
  __shared__ __align__(16) float buf[8];
  __pipeline_memcpy_async(&buf[1], src, 16);
  __pipeline_commit();
  __pipeline_wait_prior(0);
}

__global__ void AtomicKernel(int* counter, float* fsum, unsigned* mx) {
  __shared__ int local;
  if (threadIdx.x == 0) local = 0;
  __syncthreads();
  atomicAdd(&local, 1);
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(counter, local);
  atomicAdd(fsum, 0.5f);
  atomicMax(mx, blockIdx.x * 1000u + threadIdx.x);
}

TEST(EmuBlock, Atomics) {
  const int zero = 0;
  const float fzero = 0.0f;
  const unsigned uzero = 0;
  Dev<int> c(1, &zero);
  Dev<float> f(1, &fzero);
  Dev<unsigned> m(1, &uzero);
  AtomicKernel<<<5, 96>>>(c.p, f.p, m.p);
  EXPECT_EQ(c.Get()[0], 5 * 96);
  EXPECT_EQ(f.Get()[0], 5 * 96 * 0.5f);
  EXPECT_EQ(m.Get()[0], 4 * 1000u + 95);
}

// ---- WMMA ----

template <typename T, typename LA, typename LB>
__global__ void WmmaKernel(const T* a, const T* b, const float* c, float* d, bool store_col_major) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, store_col_major ? wmma::mem_col_major : wmma::mem_row_major);
}

template <typename T, typename LA, typename LB>
void CheckWmma(bool store_col_major) {
  constexpr bool a_col = std::is_same_v<LA, nvcuda::wmma::col_major>;
  constexpr bool b_col = std::is_same_v<LB, nvcuda::wmma::col_major>;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<T> a(256), b(256);
  std::vector<float> af(256), bf(256), c(256);
  for (int i = 0; i < 256; ++i) {
    a[i] = T(dist(rng));
    b[i] = T(dist(rng));
    af[i] = static_cast<float>(a[i]);
    bf[i] = static_cast<float>(b[i]);
    c[i] = dist(rng);
  }
  Dev<T> da(256, a.data()), db(256, b.data());
  Dev<float> dc(256, c.data()), dd(256);
  WmmaKernel<T, LA, LB><<<1, 32>>>(da.p, db.p, dc.p, dd.p, store_col_major);
  const std::vector<float> d = dd.Get();
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 16; ++n) {
      double ref = c[r * 16 + n];
      for (int k = 0; k < 16; ++k) {
        ref += static_cast<double>(af[a_col ? k * 16 + r : r * 16 + k]) * bf[b_col ? n * 16 + k : k * 16 + n];
      }
      const float got = store_col_major ? d[n * 16 + r] : d[r * 16 + n];
      EXPECT_NEAR(got, ref, 1e-4) << r << "," << n;
    }
  }
}

TEST(EmuWmma, MmaMatchesAReferenceForEveryLayout) {
  namespace wmma = nvcuda::wmma;
  CheckWmma<__nv_bfloat16, wmma::row_major, wmma::col_major>(false);
  CheckWmma<__nv_bfloat16, wmma::col_major, wmma::row_major>(true);
  CheckWmma<__half, wmma::row_major, wmma::row_major>(false);
  CheckWmma<__half, wmma::col_major, wmma::col_major>(true);
}

// ---- Launch configuration, capture and graphs ----

__global__ void AddKernel(float* x, float v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += v;
}

TEST(EmuApi, CaptureRecordsAndGraphReplays) {
  std::vector<float> h(100, 1.0f);
  Dev<float> d(100, h.data());
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  AddKernel<<<4, 32, 0, s>>>(d.p, 2.0f, 100);
  ASSERT_EQ(cudaMemsetAsync(d.p, 0, 4 * sizeof(float), s), cudaSuccess);
  AddKernel<<<4, 32, 0, s>>>(d.p, 0.5f, 100);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  EXPECT_EQ(d.Get()[50], 1.0f) << "captured work does not run";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  const std::vector<float> out = d.Get();
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[50], 1.0f + 2 * 2.5f);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  // The legacy default stream during a global-mode capture invalidates it; so does a synchronous copy.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  AddKernel<<<1, 32>>>(d.p, 1.0f, 100);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(h.data(), d.p, 4, cudaMemcpyDeviceToHost), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

__global__ void BigSmemKernel(float* out) {
  extern __shared__ float big[];
  big[threadIdx.x + 16000] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = big[16031];
}

TEST(EmuApi, DynamicSharedMemoryAboveDefaultNeedsTheAttribute) {
  Dev<float> d(1);
  EXPECT_EQ(cudaFuncSetAttribute(BigSmemKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
            cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cudaFuncSetAttribute(BigSmemKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
            cudaSuccess);
  BigSmemKernel<<<1, 32, 100 * 1024>>>(d.p);
  EXPECT_EQ(d.Get()[0], 1.0f);
}

// ---- Misuse is detected loudly (each aborts with a message) ----

__global__ void EarlyExitBarrierKernel(int* out) {
  if (threadIdx.x >= 64) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void DivergentShuffleKernel(int* out) {
  int v = threadIdx.x;
  if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void TwoBarrierSitesKernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void TwoShuffleSitesKernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x & 1) {
    v = __shfl_xor_sync(0xffffffffu, v, 2);
  } else {
    v = __shfl_xor_sync(0xffffffffu, v, 2);
  }
  out[threadIdx.x] = v;
}

__global__ void ExitedLaneShuffleKernel(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

__global__ void SharedOverflowKernel(int* out) {
  __shared__ int small[8];
  small[threadIdx.x] = 1;  // 32 threads write 8 slots
  __syncthreads();
  out[threadIdx.x] = small[0];
}

__global__ void __launch_bounds__(64) BoundedKernel(int* out) { out[threadIdx.x] = 1; }

__global__ void HalfWarpWmmaKernel(const __half* a) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  if (threadIdx.x < 16) wmma::load_matrix_sync(fa, a, 16);
}

__global__ void MisalignedLdgKernel(const float* x, float* out) {
  out[0] = __ldg(reinterpret_cast<const float4*>(x + 1)).x;
}

#if defined(__SANITIZE_ADDRESS__)
__global__ void OneTooFarKernel(float* x, int n) {
  const int i = threadIdx.x;
  if (i <= n) x[i] = 1.0f;  // bug: i == n is past the end
}
#endif

TEST(EmuDeathTest, MisuseAbortsWithAMessage) {
  Dev<int> d(256);
  Dev<float> f(64);
  Dev<__half> h(256);
  EXPECT_DEATH(EarlyExitBarrierKernel<<<1, 128>>>(d.p), "__syncthreads at .* was reached by 64 of the block's 128");
  // Which check fires first depends on the run order (QUARRY_EMU_ORDER): arrival with exited lanes in the
  // mask, or a lane exiting while the others wait.
  EXPECT_DEATH(DivergentShuffleKernel<<<1, 32>>>(d.p),
               "__shfl_xor_sync .*(reached by lanes \\{[0-9,-]+\\} only|of the mask have exited)");
  EXPECT_DEATH(TwoBarrierSitesKernel<<<1, 64>>>(d.p), "wait at different barriers");
  EXPECT_DEATH(TwoShuffleSitesKernel<<<1, 32>>>(d.p), "divergent warp-wide operations");
  EXPECT_DEATH(ExitedLaneShuffleKernel<<<1, 32>>>(d.p), "lane 5 exited without reaching it|lanes \\{5\\} of the mask have exited");
  EXPECT_DEATH(SharedOverflowKernel<<<1, 32>>>(d.p), "shared memory written out of bounds");
  EXPECT_DEATH(BoundedKernel<<<1, 128>>>(d.p), "__launch_bounds__ allow 64");
  EXPECT_DEATH(HalfWarpWmmaKernel<<<1, 32>>>(h.p),
               "wmma::load_matrix_sync .*(reached by lanes \\{[0-9,-]+\\} only|of the mask have exited)");
  EXPECT_DEATH(MisalignedLdgKernel<<<1, 32>>>(f.p, f.p), "__ldg: address .* is not aligned to 16 bytes");
  EXPECT_DEATH(MisalignedAsyncCopyKernel<<<1, 32>>>(f.p), "__pipeline_memcpy_async: addresses .* are not 16-byte aligned");
  EXPECT_DEATH(AddKernel<<<1, 2048>>>(f.p, 1.0f, 1), "exceeds 1024 threads");
  EXPECT_DEATH(AddKernel<<<dim3(1, 70000), 32>>>(f.p, 1.0f, 1), "exceeds the limits");
  EXPECT_DEATH(BigSmemKernel<<<1, 32, 300 * 1024>>>(f.p), "dynamic shared memory, but the kernel allows");
  EXPECT_DEATH(cudaMemcpy(d.p, f.p, 2000, cudaMemcpyDeviceToDevice), "past the end of its device allocation");
  std::vector<int> host(4);
  EXPECT_DEATH(cudaMemcpy(host.data(), host.data() + 2, 8, cudaMemcpyHostToDevice), "not inside any cudaMalloc");
#if defined(__SANITIZE_ADDRESS__)
  // With -fsanitize=address, device memory overruns inside kernels are reported too.
  Dev<float> ten(10);
  EXPECT_DEATH(OneTooFarKernel<<<1, 32>>>(ten.p, 10), "heap-buffer-overflow");
#endif
}

}  // namespace
