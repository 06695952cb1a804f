// SsdChunkedScanCpu (prefill, spec §4.6) and SsdStateUpdateCpu (token-by-token recurrence, spec §4.4/§4.7).
// Both parallelise over heads; the chunked scan first computes the C·B products once per (chunk, group).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/ssd_scan.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelWork = 1 << 16;

// torch.nn.functional.softplus(beta=1, threshold=20).
inline float Softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

inline float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// v[0:n] += s * u[0:n]
inline void Axpy(float* v, float s, const float* u, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) v[i] += s * u[i];
}

// Chunked scan of one head over all chunks. cb holds, per chunk ci and this head's group, the
// [chunk_size, chunk_size] matrix C_i·B_j (lower triangle used). The segment decays
// exp(cum_i - cum_j) = prod_{j<l<=i} exp(a_l) are formed as running products of the per-token decays
// ea_l = exp(dt_l * A): one exp per token, no overflow or cancellation, and the same factors the recurrence uses.
void ChunkedHead(const SsdParams& p, int64_t hd, const std::vector<float>& cb, std::vector<float>& ea,
                 std::vector<float>& dt, std::vector<float>& coef) {
  const int64_t heads_per_group = p.h / p.groups;
  const int64_t g = hd / heads_per_group;
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
    const float* cbc = cb.data() + (ci * p.groups + g) * cs * cs;  // [cs, cs]
    for (int64_t j = 0; j < len; ++j) {
      dt[j] = Softplus(p.dt_raw[(t0 + j) * p.lddt + hd] + p.dt_bias[hd]);
      ea[j] = std::exp(dt[j] * a);
    }
    float e_i = 1.0f;  // exp(cum_i) = prod_{l<=i} ea_l
    for (int64_t i = 0; i < len; ++i) {
      e_i *= ea[i];
      const float* xi = p.x + (t0 + i) * p.ldx + hd * pp;     // [p]
      const float* ci_vec = p.c + (t0 + i) * p.ldc + g * np;  // [n]
      float* yi = p.y + (t0 + i) * p.ldy + hd * pp;           // [p]
      // Off-diagonal: exp(cum_i) * (S_prev · C_i), then the D skip.
      for (int64_t q = 0; q < pp; ++q) yi[q] = e_i * Dot(state + q * np, ci_vec, np) + dskip * xi[q];
      // Diagonal block: sum_{j<=i} (C_i·B_j) exp(cum_i - cum_j) dt_j x_j.
      float seg = 1.0f;  // exp(cum_i - cum_j)
      for (int64_t j = i; j >= 0; --j) {
        Axpy(yi, cbc[i * cs + j] * seg * dt[j], p.x + (t0 + j) * p.ldx + hd * pp, pp);
        seg *= ea[j];
      }
    }
    // S_c = exp(cum_last) S_{c-1} + sum_j exp(cum_last - cum_j) dt_j x_j ⊗ B_j.
    for (int64_t e = 0; e < pp * np; ++e) state[e] *= e_i;
    float seg = 1.0f;
    for (int64_t j = len - 1; j >= 0; --j) {
      coef[j] = seg * dt[j];
      seg *= ea[j];
    }
    for (int64_t j = 0; j < len; ++j) {
      const float* xj = p.x + (t0 + j) * p.ldx + hd * pp;
      const float* bj = p.b + (t0 + j) * p.ldb + g * np;
      for (int64_t q = 0; q < pp; ++q) Axpy(state + q * np, coef[j] * xj[q], bj, np);
    }
  }
}

}  // namespace

absl::Status SsdChunkedScanCpu(const SsdParams& p) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  const int64_t cs = std::min(p.chunk_size, p.t);  // a chunk never needs to be longer than the sequence
  SsdParams q = p;
  q.chunk_size = cs;
  const int64_t nchunks = (p.t + cs - 1) / cs;
  // cb[ci][g][i][j] = C_{t0+i} · B_{t0+j} for j <= i (the upper triangle is left zero).
  std::vector<float> cb(static_cast<size_t>(nchunks * p.groups * cs * cs), 0.0f);
  const int64_t rows = nchunks * p.groups * cs;
  const bool parallel_cb = rows * cs * p.n / 2 >= kMinParallelWork;
#pragma omp parallel for schedule(dynamic, 8) if (parallel_cb)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r % cs;
    const int64_t g = (r / cs) % p.groups;
    const int64_t ci = r / (cs * p.groups);
    const int64_t ti = ci * cs + i;
    if (ti >= p.t) continue;
    const float* cvec = p.c + ti * p.ldc + g * p.n;
    float* out = cb.data() + r * cs;
    for (int64_t j = 0; j <= i; ++j) out[j] = Dot(cvec, p.b + (ci * cs + j) * p.ldb + g * p.n, p.n);
  }
  const bool parallel = p.h > 1 && p.t * p.p * p.n * std::min<int64_t>(cs, 8) >= kMinParallelWork;
#pragma omp parallel if (parallel)
  {
    std::vector<float> ea(cs), dt(cs), coef(cs);
#pragma omp for schedule(static)
    for (int64_t hd = 0; hd < p.h; ++hd) ChunkedHead(q, hd, cb, ea, dt, coef);
  }
  return absl::OkStatus();
}

absl::Status SsdStateUpdateCpu(const SsdParams& p) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
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
        y[q] = Dot(s, c, p.n) + p.d[hd] * x[q];
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
