// LinearCpu: y[m, n] (+)= x[m, k] · W[n, k]ᵀ with AVX2/FMA register-blocked dot products and OpenMP over W rows.
//
// Work decomposition:
//   * OpenMP splits W into blocks of kRowBlock rows, so every weight byte is read from memory by exactly one
//     thread, once per call (decode is bandwidth-bound). The schedule is dynamic (one block at a time): on a
//     shared 2-core machine a preempted thread then delays the call by one block, not by half the matrix.
//   * Inside a row block: k is tiled by kc (only when m is large), then m by kMc rows, then the micro-kernel
//     computes an MR (x rows) × NR (W rows) tile of dot products over the k range with MR·NR __m256
//     accumulators, reducing horizontally at the end. A W row slice (NR × kc) stays in L1 while the x tile
//     (kMc × kc f32) stays in L2.
//   * W elements are widened to f32 in registers: bf16 by zero-extension + shift left 16, f16 by vcvtph2ps.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/linear.h"
#include "kernels/rms_norm.h"

namespace quarry {
namespace {

constexpr int64_t kRowBlock = 48;          // W rows per OpenMP work item (multiple of 3 and 4)
constexpr int64_t kMc = 64;                // x rows per L2 tile
constexpr int64_t kKc = 512;               // k per tile when m is large
constexpr int64_t kSmallM = 16;            // m <= this: no k tiling (each W byte touched once)
constexpr int64_t kMinParallelMacs = 1 << 16;

template <DType DT>
inline __m256 LoadW8(const void* base, int64_t i) {
  if constexpr (DT == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else if constexpr (DT == DType::kBF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_cvtph_ps(h);
  }
}

template <DType DT>
inline float LoadW1(const void* base, int64_t i) {
  if constexpr (DT == DType::kF32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (DT == DType::kBF16) {
    return Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  } else {
    return _cvtsh_ss(static_cast<const uint16_t*>(base)[i]);
  }
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Tile y[0:MR, 0:NR] (+)= x[0:MR, k0:k1] · w[0:NR, k0:k1]ᵀ.
// x: row r at x + r*ldx; w: row j starts at element j*ldw of `w` (dtype DT); y: row r at y + r*ldy.
template <DType DT, int MR, int NR>
void MicroKernel(const float* x, int64_t ldx, const void* w, int64_t ldw, int64_t k0, int64_t k1, float* y,
                 int64_t ldy, bool add) {
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  const int64_t kv = k0 + ((k1 - k0) & ~int64_t{7});
  for (int64_t kk = k0; kk < kv; kk += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = LoadW8<DT>(w, j * ldw + kk);
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + kk);
      for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) {
      float s = HorizontalSum(acc[r][j]);
      for (int64_t kk = kv; kk < k1; ++kk) s += x[r * ldx + kk] * LoadW1<DT>(w, j * ldw + kk);
      float* out = y + r * ldy + j;
      *out = add ? *out + s : s;
    }
  }
}

template <DType DT>
using MicroFn = void (*)(const float*, int64_t, const void*, int64_t, int64_t, int64_t, float*, int64_t, bool);

// kTable[MR-1][NR-1]: MR in 1..4, NR in 1..4 (the big tile is 4 x rows × 3 W rows; 4×4 would spill).
template <DType DT>
constexpr MicroFn<DT> kTable[4][4] = {
    {MicroKernel<DT, 1, 1>, MicroKernel<DT, 1, 2>, MicroKernel<DT, 1, 3>, MicroKernel<DT, 1, 4>},
    {MicroKernel<DT, 2, 1>, MicroKernel<DT, 2, 2>, MicroKernel<DT, 2, 3>, MicroKernel<DT, 2, 4>},
    {MicroKernel<DT, 3, 1>, MicroKernel<DT, 3, 2>, MicroKernel<DT, 3, 3>, MicroKernel<DT, 3, 4>},
    {MicroKernel<DT, 4, 1>, MicroKernel<DT, 4, 2>, MicroKernel<DT, 4, 3>, MicroKernel<DT, 4, 4>},
};

// BF16 fast path for small m (decode): a 256-bit load holds 16 bf16 weights; as 32-bit lanes, shifting left
// by 16 yields the even elements as f32 and masking the low half yields the odd ones, so widening costs one
// ALU op per 8 weights and no shuffles. x is permuted once per call to match: per 16 elements, the 8 even
// ones then the 8 odd ones (xp). Sums over k are reassociated, as in every blocked kernel.
template <int MR, int NR>
void MicroKernelBf16EvenOdd(const float* xp, int64_t ldxp, const uint16_t* w, int64_t ldw, int64_t kv,
                            float* out /* [MR][NR] */) {
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t kk = 0; kk < kv; kk += 16) {
    __m256 we[NR], wo[NR];
    for (int j = 0; j < NR; ++j) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * ldw + kk));
      we[j] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      wo[j] = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
    }
    for (int r = 0; r < MR; ++r) {
      const __m256 xe = _mm256_loadu_ps(xp + r * ldxp + kk);
      const __m256 xo = _mm256_loadu_ps(xp + r * ldxp + kk + 8);
      for (int j = 0; j < NR; ++j) {
        acc[r][j] = _mm256_fmadd_ps(we[j], xe, acc[r][j]);
        acc[r][j] = _mm256_fmadd_ps(wo[j], xo, acc[r][j]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) out[r * NR + j] = HorizontalSum(acc[r][j]);
  }
}

using EvenOddFn = void (*)(const float*, int64_t, const uint16_t*, int64_t, int64_t, float*);
constexpr EvenOddFn kEvenOdd[4][4] = {
    {MicroKernelBf16EvenOdd<1, 1>, MicroKernelBf16EvenOdd<1, 2>, MicroKernelBf16EvenOdd<1, 3>,
     MicroKernelBf16EvenOdd<1, 4>},
    {MicroKernelBf16EvenOdd<2, 1>, MicroKernelBf16EvenOdd<2, 2>, MicroKernelBf16EvenOdd<2, 3>,
     MicroKernelBf16EvenOdd<2, 4>},
    {MicroKernelBf16EvenOdd<3, 1>, MicroKernelBf16EvenOdd<3, 2>, MicroKernelBf16EvenOdd<3, 3>,
     MicroKernelBf16EvenOdd<3, 4>},
    {MicroKernelBf16EvenOdd<4, 1>, MicroKernelBf16EvenOdd<4, 2>, MicroKernelBf16EvenOdd<4, 3>,
     MicroKernelBf16EvenOdd<4, 4>},
};

// Rows [n0, n1) of a BF16 W against m <= kSmallM rows of x, with xp = x permuted even/odd over [0, kv).
void RowBlockBf16EvenOdd(const LinearParams& p, const float* xp, int64_t kv, int64_t n0, int64_t n1) {
  const int64_t k = p.w.cols, m = p.m;
  const uint16_t* wbase = static_cast<const uint16_t*>(p.w.data);
  const int64_t nr = m == 1 ? 2 : 3;
  float tile[4 * 4];
  for (int64_t nb = n0; nb < n1; nb += nr) {
    const int64_t nrows = std::min(nr, n1 - nb);
    const uint16_t* w = wbase + nb * k;
    for (int64_t mb = 0; mb < m; mb += 4) {
      const int64_t mrows = std::min<int64_t>(4, m - mb);
      kEvenOdd[mrows - 1][nrows - 1](xp + mb * kv, kv, w, k, kv, tile);
      for (int64_t r = 0; r < mrows; ++r) {
        const float* xr = p.x + (mb + r) * p.ldx;
        for (int64_t j = 0; j < nrows; ++j) {
          float s = tile[r * nrows + j];
          for (int64_t kk = kv; kk < k; ++kk) s += xr[kk] * Bf16ToFloat(w[j * k + kk]);
          float* out = p.y + (mb + r) * p.ldy + nb + j;
          *out = p.accumulate ? *out + s : s;
        }
      }
    }
  }
}

// Rows [n0, n1) of W against all m rows of x.
template <DType DT>
void RowBlock(const LinearParams& p, int64_t n0, int64_t n1) {
  const int64_t k = p.w.cols;
  const int64_t m = p.m;
  const int64_t esize = static_cast<int64_t>(DTypeSize(DT));
  const char* wbase = static_cast<const char*>(p.w.data);
  const int64_t kc_step = m <= kSmallM ? k : kKc;
  // With few x rows, 4 W rows per tile (more independent accumulators per x load); otherwise 3 W × 4 x.
  const int64_t nr = m <= 2 ? 4 : 3;
  for (int64_t kc = 0; kc < k; kc += kc_step) {
    const int64_t kend = std::min(k, kc + kc_step);
    const bool add = p.accumulate || kc > 0;
    for (int64_t mc = 0; mc < m; mc += kMc) {
      const int64_t mend = std::min(m, mc + kMc);
      for (int64_t nb = n0; nb < n1; nb += nr) {
        const int64_t nrows = std::min(nr, n1 - nb);
        const void* w = wbase + nb * k * esize;
        for (int64_t mb = mc; mb < mend; mb += 4) {
          const int64_t mrows = std::min<int64_t>(4, mend - mb);
          kTable<DT>[mrows - 1][nrows - 1](p.x + mb * p.ldx, p.ldx, w, k, kc, kend, p.y + mb * p.ldy + nb, p.ldy,
                                           add);
        }
      }
    }
  }
}

template <DType DT>
void LinearImpl(const LinearParams& p) {
  const int64_t n = p.w.rows;
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  const double macs = static_cast<double>(p.m) * static_cast<double>(n) * static_cast<double>(p.w.cols);
  const bool parallel = macs >= kMinParallelMacs && blocks > 1 && !omp_in_parallel();
  const int64_t k = p.w.cols, kv = k & ~int64_t{15};
  if (DT == DType::kBF16 && p.m <= kSmallM && kv > 0) {
    // x permuted even/odd per 16 elements, shared read-only by all threads: [m, kv].
    thread_local std::vector<float> xp;
    xp.resize(p.m * kv);
    for (int64_t r = 0; r < p.m; ++r) {
      const float* xr = p.x + r * p.ldx;
      float* dst = xp.data() + r * kv;
      for (int64_t kk = 0; kk < kv; kk += 16) {
        for (int i = 0; i < 8; ++i) {
          dst[kk + i] = xr[kk + 2 * i];
          dst[kk + 8 + i] = xr[kk + 2 * i + 1];
        }
      }
    }
    const float* xpp = xp.data();
    // One contiguous range of rows per thread: each thread streams a single sequential region.
    if (!parallel) {
      RowBlockBf16EvenOdd(p, xpp, kv, 0, n);
      return;
    }
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t per = ((n + nt - 1) / nt + 5) / 6 * 6;
      const int64_t r0 = std::min(n, t * per), r1 = std::min(n, r0 + per);
      if (r0 < r1) RowBlockBf16EvenOdd(p, xpp, kv, r0, r1);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    RowBlock<DT>(p, b * kRowBlock, std::min(n, (b + 1) * kRowBlock));
  }
}

}  // namespace

absl::Status LinearCpu(const LinearParams& p) {
  if (absl::Status s = ValidateLinear(p); !s.ok()) return s;
  if (p.m == 0) return absl::OkStatus();
  if (p.kv.t != 0) {  // the product, then the KV append of its k and v columns
    LinearParams q = p;
    q.kv = {};
    if (absl::Status s = LinearCpu(q); !s.ok()) return s;
    return KvAppendCpu(p.kv);
  }
  if (p.swiglu_input) {  // the SwiGLU rows first (SwigluCpu's values), then the plain product
    const int64_t k = p.w.cols;
    std::vector<float> act(p.m * k);
    for (int64_t r = 0; r < p.m; ++r) cpu::SiluMul(p.x + r * p.ldx, p.x + r * p.ldx + k, act.data() + r * k, k);
    LinearParams q = p;
    q.x = act.data(), q.ldx = k, q.swiglu_input = false;
    return LinearCpu(q);
  }
  if (p.norm_weight != nullptr) {  // the normalised rows first (RmsNormCpu's values), then the plain product
    const int64_t k = p.w.cols;
    std::vector<float> xn(p.m * k);
    if (absl::Status s = RmsNormCpu({p.x, p.ldx, p.norm_weight, xn.data(), k, p.m, k, p.norm_eps}); !s.ok()) return s;
    LinearParams q = p;
    q.x = xn.data(), q.ldx = k, q.norm_weight = nullptr;
    return LinearCpu(q);
  }
  if (p.scale != 1.0f) {  // the product into a scratch, then y (+)= scale * it (and the conv step after)
    const int64_t n = p.w.rows;
    std::vector<float> t(p.m * n);
    LinearParams q = p;
    q.y = t.data(), q.ldy = n, q.accumulate = false, q.scale = 1.0f, q.conv = {};
    if (absl::Status s = LinearCpu(q); !s.ok()) return s;
    for (int64_t r = 0; r < p.m; ++r) {
      float* y = p.y + r * p.ldy;
      for (int64_t c = 0; c < n; ++c) y[c] = p.accumulate ? y[c] + p.scale * t[r * n + c] : p.scale * t[r * n + c];
    }
    return p.conv.n != 0 ? ConvUpdateBatchCpu(p.conv) : absl::OkStatus();
  }
  switch (p.w.dtype) {
    case DType::kF32:
      LinearImpl<DType::kF32>(p);
      break;
    case DType::kBF16:
      LinearImpl<DType::kBF16>(p);
      break;
    case DType::kF16:
      LinearImpl<DType::kF16>(p);
      break;
  }
  return p.conv.n != 0 ? ConvUpdateBatchCpu(p.conv) : absl::OkStatus();
}

}  // namespace quarry
