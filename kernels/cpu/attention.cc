// AttentionCpu: causal GQA attention over a contiguous or paged KV cache (f32 or bf16), stable f32 softmax,
// parallel over (query head, query row) pairs.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/dtype.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelMacs = 1 << 16;

// Row offset (in elements / ld) of cache position j: contiguous or through the page table.
inline int64_t KvPos(const AttentionParams& p, int64_t j) {
  if (p.block_table == nullptr) return j;
  return static_cast<int64_t>(p.block_table[j / p.block_size]) * p.block_size + j % p.block_size;
}

// One query row i of head hq: out = softmax(q·K[0:len]ᵀ * scale) · V[0:len], len = q_pos0 + i + 1.
// `row` ([d_h]) holds the widened bf16 K / V row of the bf16 path.
void Row(const AttentionParams& p, int64_t hq, int64_t i, std::vector<float>& scores, std::vector<float>& row) {
  const int64_t group = p.n_q / p.n_kv;
  const int64_t hk = hq / group;
  const int64_t len = p.q_pos0 + i + 1;
  const float* q = p.q + i * p.ldq + hq * p.d_h;  // [d_h]
  float* out = p.out + i * p.ldo + hq * p.d_h;    // [d_h]
  // K or V row of position j (widened into `row` for bf16).
  auto kv_row = [&](const float* f32, const uint16_t* bf16, int64_t ld, int64_t j) -> const float* {
    const int64_t at = KvPos(p, j) * ld + hk * p.d_h;
    if (bf16 == nullptr) return f32 + at;
    for (int64_t e = 0; e < p.d_h; ++e) row[e] = Bf16ToFloat(bf16[at + e]);
    return row.data();
  };
  float mx = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    scores[j] = cpu::Dot(q, kv_row(p.k, p.k16, p.ldk, j), p.d_h) * p.scale;
    mx = std::max(mx, scores[j]);
  }
  float sum = 0.0f;
  int64_t j0 = 0;
  const __m256 vmx = _mm256_set1_ps(mx);
  for (; j0 + 8 <= len; j0 += 8) {
    _mm256_storeu_ps(scores.data() + j0, cpu::Exp8(_mm256_sub_ps(_mm256_loadu_ps(scores.data() + j0), vmx)));
  }
  for (int64_t j = j0; j < len; ++j) scores[j] = std::exp(scores[j] - mx);
  for (int64_t j = 0; j < len; ++j) sum += scores[j];
  const float inv = 1.0f / sum;
  std::fill(out, out + p.d_h, 0.0f);
  for (int64_t j = 0; j < len; ++j) {
    const float w = scores[j] * inv;
    const float* v = kv_row(p.v, p.v16, p.ldv, j);
#pragma omp simd
    for (int64_t e = 0; e < p.d_h; ++e) out[e] += w * v[e];
  }
}

}  // namespace

absl::Status AttentionCpu(const AttentionParams& p) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  const int64_t items = p.n_q * p.t;
  const bool parallel = items > 1 && 2 * items * (p.q_pos0 + p.t) * p.d_h >= kMinParallelMacs;
#pragma omp parallel if (parallel)
  {
    std::vector<float> scores(p.kv_len), row(p.d_h);
    // Interleaved rows: row i costs O(q_pos0 + i), so cyclic assignment balances the causal triangle.
#pragma omp for schedule(static, 1)
    for (int64_t it = 0; it < items; ++it) Row(p, it % p.n_q, it / p.n_q, scores, row);
  }
  return absl::OkStatus();
}

}  // namespace quarry
