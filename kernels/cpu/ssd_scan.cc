// SsdChunkedScanCpu (prefill, spec §4.6) and SsdStateUpdateCpu (token-by-token recurrence, spec §4.4/§4.7).
// Both parallelise over heads; the chunked scan first computes the C·B products once per (chunk, group).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/linear.h"
#include "kernels/ssd_scan.h"

#include "kernels/dtype.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelWork = 1 << 16;

// torch.nn.functional.softplus(beta=1, threshold=20).
inline float Softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

// Per-(chunk, group) operands shared by every head of the group: CB = C·Bᵀ [cs, cs] and Bᵀ [n, cs].
struct GroupChunk {
  std::vector<float> cb;  // [nchunks * groups][cs, cs]
  std::vector<float> bt;  // [nchunks * groups][n, cs]
};

// Per-thread scratch of the chunked scan.
struct HeadScratch {
  std::vector<float> ea, dt, coef, e;  // [cs]
  std::vector<float> m;                // [cs, cs] decay-weighted C·B (lower triangle)
  std::vector<float> xt;               // [p, cs] x of the chunk, transposed
  std::vector<float> xs;               // [p, cs] coef-scaled x, transposed
  std::vector<float> off;              // [cs, p] C · S_prevᵀ
  HeadScratch(int64_t cs, int64_t p)
      : ea(cs), dt(cs), coef(cs), e(cs), m(cs * cs), xt(p * cs), xs(p * cs), off(cs * p) {}
};

// f32 GEMM through LinearCpu: y[rows, w_rows] (+)= x[rows, k] · w[w_rows, k]ᵀ (single-threaded when called
// inside the head-parallel region).
void Gemm(const float* x, int64_t ldx, const float* w, int64_t w_rows, int64_t k, float* y, int64_t ldy,
          int64_t rows, bool accumulate) {
  LinearParams lp{.x = x, .ldx = ldx, .w = MatrixView{w, DType::kF32, w_rows, k}, .y = y, .ldy = ldy, .m = rows,
                  .accumulate = accumulate};
  (void)LinearCpu(lp);  // shapes are valid by construction
}

// Chunked scan of one head over all chunks (spec §4.6), each chunk of len tokens as GEMMs:
//   off  = C · S_prevᵀ                          [len, p]
//   y    = exp(cum_i) * off + D x + M · X        with M[i][j] = (C_i·B_j) exp(cum_i - cum_j) dt_j, j <= i
//   S    = exp(cum_last) S_prev + Xsᵀ · B        with Xs[j] = exp(cum_last - cum_j) dt_j x_j
// The segment decays exp(cum_i - cum_j) = prod_{j<l<=i} exp(dt_l A) are running products of the per-token
// decays (one exp per token, no overflow or cancellation: the same factors the recurrence multiplies).
void ChunkedHead(const SsdParams& p, int64_t hd, const GroupChunk& gc, HeadScratch& w) {
  const int64_t g = hd / (p.h / p.groups);
  const int64_t np = p.n;
  const int64_t pp = p.p;
  const int64_t cs = p.chunk_size;
  const int64_t nchunks = (p.t + cs - 1) / cs;
  const float a = p.a[hd];
  const float dskip = p.d[hd];
  float* state = p.state + hd * pp * np;  // [p, n], S_{c-1} on entry to each chunk
  for (int64_t ci = 0; ci < nchunks; ++ci) {
    const int64_t t0 = ci * cs;
    const int64_t len = std::min(cs, p.t - t0);
    const float* cb = gc.cb.data() + (ci * p.groups + g) * cs * cs;  // [cs, cs]
    const float* bt = gc.bt.data() + (ci * p.groups + g) * np * cs;  // [n, cs]
    float run = 1.0f;
    for (int64_t j = 0; j < len; ++j) {
      w.dt[j] = Softplus(p.dt_raw[(t0 + j) * p.lddt + hd] + p.dt_bias[hd]);
      w.ea[j] = std::exp(w.dt[j] * a);
      run *= w.ea[j];
      w.e[j] = run;  // exp(cum_j)
    }
    float seg = 1.0f;
    for (int64_t j = len - 1; j >= 0; --j) {
      w.coef[j] = seg * w.dt[j];  // exp(cum_last - cum_j) dt_j
      seg *= w.ea[j];
    }
    // M, row i: j from i down to 0 carries exp(cum_i - cum_j); the upper triangle is zero.
    for (int64_t i = 0; i < len; ++i) {
      float* mi = w.m.data() + i * len;
      const float* cbi = cb + i * cs;
      float sg = 1.0f;
      for (int64_t j = i; j >= 0; --j) {
        mi[j] = cbi[j] * sg * w.dt[j];
        sg *= w.ea[j];
      }
      std::fill(mi + i + 1, mi + len, 0.0f);
    }
    for (int64_t j = 0; j < len; ++j) {
      const float* xj = p.x + (t0 + j) * p.ldx + hd * pp;
      for (int64_t q = 0; q < pp; ++q) {
        w.xt[q * len + j] = xj[q];
        w.xs[q * len + j] = w.coef[j] * xj[q];
      }
    }
    Gemm(p.c + t0 * p.ldc + g * np, p.ldc, state, pp, np, w.off.data(), pp, len, false);
    for (int64_t i = 0; i < len; ++i) {
      const float* xi = p.x + (t0 + i) * p.ldx + hd * pp;
      float* yi = p.y + (t0 + i) * p.ldy + hd * pp;
      for (int64_t q = 0; q < pp; ++q) yi[q] = w.e[i] * w.off[i * pp + q] + dskip * xi[q];
    }
    Gemm(w.m.data(), len, w.xt.data(), pp, len, p.y + t0 * p.ldy + hd * pp, p.ldy, len, true);
    const float decay = w.e[len - 1];
    for (int64_t e = 0; e < pp * np; ++e) state[e] *= decay;
    Gemm(w.xs.data(), len, bt, np, len, state, np, pp, true);
  }
}

// bf16 state storage: widen into a thread-local f32 copy, run `fn` on it, round back.
template <typename Fn>
absl::Status WithF32State(const SsdParams& p, Fn fn) {
  thread_local std::vector<float> f32;
  const int64_t count = p.h * p.p * p.n;
  f32.resize(count);
  for (int64_t i = 0; i < count; ++i) f32[i] = Bf16ToFloat(p.state_bf16[i]);
  SsdParams q = p;
  q.state = f32.data();
  q.state_bf16 = nullptr;
  absl::Status st = fn(q);
  if (st.ok()) {
    for (int64_t i = 0; i < count; ++i) p.state_bf16[i] = FloatToBf16(f32[i]);
  }
  return st;
}

}  // namespace

absl::Status SsdChunkedScanCpu(const SsdParams& p) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  if (p.state_bf16 != nullptr) return WithF32State(p, SsdChunkedScanCpu);
  const int64_t cs = std::min(p.chunk_size, p.t);  // a chunk never needs to be longer than the sequence
  SsdParams q = p;
  q.chunk_size = cs;
  const int64_t nchunks = (p.t + cs - 1) / cs;
  const int64_t items = nchunks * p.groups;
  GroupChunk gc;
  gc.cb.assign(static_cast<size_t>(items * cs * cs), 0.0f);
  gc.bt.assign(static_cast<size_t>(items * p.n * cs), 0.0f);
  const bool parallel_cb = items > 1 && p.t * cs * p.n >= kMinParallelWork;
#pragma omp parallel for schedule(static) if (parallel_cb)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t g = it % p.groups;
    const int64_t t0 = (it / p.groups) * cs;
    const int64_t len = std::min(cs, p.t - t0);
    float* bt = gc.bt.data() + it * p.n * cs;  // [n, cs], row stride len (packed)
    std::vector<float> b(len * p.n);           // [len, n] packed B rows
    for (int64_t j = 0; j < len; ++j) {
      const float* bj = p.b + (t0 + j) * p.ldb + g * p.n;
      std::copy(bj, bj + p.n, b.data() + j * p.n);
      for (int64_t e = 0; e < p.n; ++e) bt[e * len + j] = bj[e];
    }
    // CB[i][j] = C_i · B_j  (row stride cs)
    Gemm(p.c + t0 * p.ldc + g * p.n, p.ldc, b.data(), len, p.n, gc.cb.data() + it * cs * cs, cs, len, false);
  }
  const bool parallel = p.h > 1 && p.t * p.p * p.n * std::min<int64_t>(cs, 8) >= kMinParallelWork;
#pragma omp parallel if (parallel)
  {
    HeadScratch scratch(cs, p.p);
#pragma omp for schedule(static)
    for (int64_t hd = 0; hd < p.h; ++hd) ChunkedHead(q, hd, gc, scratch);
  }
  return absl::OkStatus();
}

absl::Status SsdStateUpdateCpu(const SsdParams& p) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  if (p.state_bf16 != nullptr) return WithF32State(p, SsdStateUpdateCpu);
  const int64_t heads_per_group = p.h / p.groups;
  const bool parallel = p.h > 1 && p.t * p.h * p.p * p.n >= kMinParallelWork;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t hd = 0; hd < p.h; ++hd) {
    const int64_t g = hd / heads_per_group;
    float* state = p.state + hd * p.p * p.n;  // [p, n]
    for (int64_t ti = 0; ti < p.t; ++ti) {
      const float dt = Softplus(p.dt_raw[ti * p.lddt + hd] + p.dt_bias[hd]);
      const float da = std::exp(dt * p.a[hd]);
      const float* x = p.x + ti * p.ldx + hd * p.p;  // [p]
      const float* b = p.b + ti * p.ldb + g * p.n;   // [n]
      const float* c = p.c + ti * p.ldc + g * p.n;   // [n]
      float* y = p.y + ti * p.ldy + hd * p.p;        // [p]
      for (int64_t q = 0; q < p.p; ++q) {
        float* s = state + q * p.n;
        const float dbx = dt * x[q];
#pragma omp simd
        for (int64_t e = 0; e < p.n; ++e) s[e] = da * s[e] + dbx * b[e];
        y[q] = cpu::Dot(s, c, p.n) + p.d[hd] * x[q];
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
