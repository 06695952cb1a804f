// KvAppendCpu and AttentionDecodeCpu: paged KV writes (f32, or bf16 rounded to nearest even) and batched decode
// attention as loops over the single-sequence reference (AttentionCpu with t == 1).
#include "kernels/attention_decode.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/dtype.h"

namespace quarry {

absl::Status KvAppendCpu(const KvAppendParams& p) {
  if (absl::Status s = ValidateKvAppend(p); !s.ok()) return s;
  for (int64_t i = 0; i < p.t; ++i) {
    const int64_t slot = p.slots[i];
    if (slot >= p.pool_rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("KvAppend: slot ", slot, " of token ", i, " is beyond the pool of ", p.pool_rows, " rows"));
    }
  }
  for (int64_t i = 0; i < p.t; ++i) {
    const int64_t slot = p.slots[i];
    if (slot < 0) continue;  // padding
    if (p.k_cache16 != nullptr) {
      for (int64_t e = 0; e < p.kv_dim; ++e) {
        p.k_cache16[slot * p.kv_dim + e] = FloatToBf16(p.k[i * p.ldk + e]);
        p.v_cache16[slot * p.kv_dim + e] = FloatToBf16(p.v[i * p.ldv + e]);
      }
      continue;
    }
    std::copy_n(p.k + i * p.ldk, p.kv_dim, p.k_cache + slot * p.kv_dim);
    std::copy_n(p.v + i * p.ldv, p.kv_dim, p.v_cache + slot * p.kv_dim);
  }
  return absl::OkStatus();
}

absl::Status AttentionDecodeCpu(const AttentionDecodeParams& p) {
  if (absl::Status s = ValidateAttentionDecode(p); !s.ok()) return s;
  const int64_t kv_dim = p.n_kv * p.d_h;
  for (int64_t r = 0; r < p.n; ++r) {
    const int64_t len = p.kv_lens[r];
    if (len < 1 || len > p.max_blocks * p.block_size) {
      return absl::InvalidArgumentError(absl::StrCat("AttentionDecode: kv_lens[", r, "] = ", len,
                                                     " is outside [1, ", p.max_blocks * p.block_size, "]"));
    }
    AttentionParams ap;
    ap.q = p.q + r * p.ldq;
    ap.ldq = p.ldq;
    ap.k = p.k_cache;
    ap.ldk = kv_dim;
    ap.v = p.v_cache;
    ap.ldv = kv_dim;
    ap.k16 = p.k_cache16;
    ap.v16 = p.v_cache16;
    ap.out = p.out + r * p.ldo;
    ap.ldo = p.ldo;
    ap.t = 1;
    ap.kv_len = len;
    ap.q_pos0 = len - 1;
    ap.n_q = p.n_q;
    ap.n_kv = p.n_kv;
    ap.d_h = p.d_h;
    ap.scale = p.scale;
    ap.block_table = p.block_tables + r * p.max_blocks;
    ap.block_size = p.block_size;
    if (absl::Status s = AttentionCpu(ap); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace quarry
