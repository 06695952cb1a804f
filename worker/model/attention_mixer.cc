// Model::AttentionMixer: q/k/v projections, KV cache append, causal GQA attention (NoPE), o_proj (spec §5).
#include <algorithm>

#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/status_macros.h"
#include "worker/model/model.h"
#include "worker/model/model_batch.h"

namespace quarry {

absl::Status Model::AttentionMixer(int layer, const Batch& b, const float* u, float* out) {
  const ModelConfig& c = w_.config;
  const AttentionWeights& aw = w_.layers[layer].attention;
  const int64_t T = b.tokens, H = c.hidden_size, dh = c.head_dim();
  const int64_t q_dim = c.num_attention_heads * dh, kv_dim = c.num_key_value_heads * dh;

  q_.resize(T * q_dim);
  k_.resize(T * kv_dim);
  v_.resize(T * kv_dim);
  attn_.resize(T * q_dim);
  QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, aw.q_proj, q_.data(), q_dim, T, false}));  // [T, n_q*d_h]
  QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, aw.k_proj, k_.data(), kv_dim, T, false}));  // [T, n_kv*d_h]
  QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, aw.v_proj, v_.data(), kv_dim, T, false}));

  for (const Batch::Span& s : b.spans) {
    const AttentionLayerCache& cache = s.seq->attention[ordinal_[layer]];
    const SequenceView& seq = *s.seq;
    const int64_t pos = seq.length;
    for (int64_t i = 0; i < s.n; ++i) {  // append this chunk's keys and values at positions pos..pos+n
      const int64_t j = pos + i;
      const int64_t slot = seq.block_table == nullptr
                               ? j
                               : int64_t{seq.block_table[j / seq.block_size]} * seq.block_size + j % seq.block_size;
      std::copy_n(k_.data() + (s.row + i) * kv_dim, kv_dim, cache.k + slot * kv_dim);
      std::copy_n(v_.data() + (s.row + i) * kv_dim, kv_dim, cache.v + slot * kv_dim);
    }
    AttentionParams ap;
    ap.q = q_.data() + s.row * q_dim;
    ap.ldq = q_dim;
    ap.k = cache.k;
    ap.ldk = kv_dim;
    ap.v = cache.v;
    ap.ldv = kv_dim;
    ap.out = attn_.data() + s.row * q_dim;
    ap.ldo = q_dim;
    ap.t = s.n;
    ap.kv_len = pos + s.n;
    ap.q_pos0 = pos;
    ap.n_q = c.num_attention_heads;
    ap.n_kv = c.num_key_value_heads;
    ap.d_h = dh;
    ap.scale = static_cast<float>(c.attention_multiplier);
    ap.block_table = seq.block_table;
    ap.block_size = seq.block_size;
    QUARRY_RETURN_IF_ERROR(AttentionCpu(ap));
  }
  return LinearCpu({attn_.data(), q_dim, aw.o_proj, out, H, T, false});
}

}  // namespace quarry
