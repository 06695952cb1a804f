// DeviceModel: workspace, step metadata, the layer loop on a DeviceOps backend, decode-step graphs.
#include "worker/model/device/device_model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "worker/model/model.h"
#include "worker/model/model_batch.h"

namespace quarry {
namespace {

constexpr uint64_t kAlign = 256;
uint64_t AlignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

}  // namespace

// One Forward's layout: rows [0, decode) are 1-token segments (and graph padding), then prefill chunks.
struct DeviceModel::Step {
  struct Prefill {
    SequenceView* seq = nullptr;
    int64_t row = 0, n = 0, pos = 0, table_row = 0;
  };
  int64_t rows = 0;
  int64_t decode = 0;
  int64_t real_decode = 0;  // decode rows that are not padding
  std::vector<Prefill> prefill;
  std::vector<SequenceView*> decode_seqs;  // [real_decode]
  bool padded = false;                      // graph layout: logits for every row
  int64_t gathered = 0;                     // eager: rows gathered for logits
  std::vector<void*> kv_k, kv_v;            // page pools per attention layer (f32, or bf16 when kv_bf16)
  bool kv_bf16 = false;
  int64_t kv_pool_rows = 0;
  int64_t block_size = 0;
  // Caller's output row i comes from device logits row out_rows[i].
  std::vector<int64_t> out_rows;
  // Device pointers into the metadata buffer.
  const int32_t* ids = nullptr;
  const int32_t* slots = nullptr;
  const int32_t* kv_lens = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* logit_rows = nullptr;
  float* const* conv_ptrs = nullptr;  // [mamba layers][max_batch]
  void* const* ssm_ptrs = nullptr;    // [mamba layers][max_batch] (float* or uint16_t*)
};

DeviceModel::~DeviceModel() {
  if (arena_ != nullptr) ops_->Free(arena_);
  if (meta_ != nullptr) ops_->Free(meta_);
  if (proc_ != nullptr) ops_->Free(proc_);
  if (ep_buf_ != nullptr) ops_->Free(ep_buf_);
  if (raw_ != nullptr) ops_->Free(raw_);
}

int64_t DeviceModelGemmInputElems(const ModelConfig& c, const DeviceModelOptions& o) {
  const int64_t rows = std::max(o.max_tokens, o.max_batch);
  const int64_t q_dim = c.num_attention_heads * c.head_dim();
  const int64_t k = std::max({c.hidden_size, c.mamba_d_inner(), q_dim, c.shared_intermediate_size});
  return rows * k;
}

int64_t DeviceModel::Bucket(int64_t n) const {
  int64_t b = 1;
  while (b < n && b < 16) b *= 2;
  if (b < n) b = (n + 15) / 16 * 16;
  return std::min(b, options_.max_batch);
}

absl::StatusOr<std::unique_ptr<DeviceModel>> DeviceModel::Create(const ModelWeights& weights, DeviceOps* ops,
                                                                 const DeviceModelOptions& options) {
  const ModelConfig& c = weights.config;
  if (options.max_tokens < 1 || options.max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("device model: max_tokens (", options.max_tokens,
                                                   ") and max_batch (", options.max_batch, ") must be positive"));
  }
  if (c.num_attention_layers() > 0 && options.max_blocks_per_seq < 1) {
    return absl::InvalidArgumentError("device model: max_blocks_per_seq must be positive for a model with attention");
  }
  if (weights.expert_begin != 0 || weights.expert_end != c.num_local_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device model: the weights hold experts [", weights.expert_begin, ", ", weights.expert_end, ") of ",
        c.num_local_experts, "; load all of them (the device model copies only this rank's experts)"));
  }
  const bool ep = options.comm != nullptr && options.comm->world_size() > 1;
  if (ep) {
    if (options.placement == nullptr || options.placement->world_size() != options.comm->world_size() ||
        options.placement->num_experts() != c.num_local_experts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device model: expert parallelism over ", options.comm->world_size(),
          " ranks needs a placement of the model's ", c.num_local_experts, " experts over as many ranks"));
    }
    if (options.payload_comm == nullptr && !ops->host_memory()) {
      return absl::InvalidArgumentError(
          "device model: expert parallelism on a GPU needs a device communicator (NCCL) for the hidden rows");
    }
    if (options.payload_comm != nullptr && (options.payload_comm->world_size() != options.comm->world_size() ||
                                            options.payload_comm->rank() != options.comm->rank())) {
      return absl::InvalidArgumentError("device model: payload_comm and comm must be the same group and rank");
    }
  }
  if (c.num_experts_per_tok > 16) {
    return absl::InvalidArgumentError(absl::StrCat("device model: num_experts_per_tok = ", c.num_experts_per_tok,
                                                   " exceeds 16"));
  }
  std::unique_ptr<DeviceModel> m(new DeviceModel(c, ops, options));
  int mamba = 0, attention = 0;
  for (LayerType t : c.layer_types) m->ordinal_.push_back(t == LayerType::kMamba ? mamba++ : attention++);
  m->rows_cap_ = std::max(options.max_tokens, options.max_batch);
  m->ssm_bf16_ = options.bf16_state;
  if (ep) {
    m->ep_ = true;
    m->local_experts_ = options.placement->experts_of(options.comm->rank());
    m->local_of_.assign(c.num_local_experts, -1);
    for (size_t i = 0; i < m->local_experts_.size(); ++i) m->local_of_[m->local_experts_[i]] = static_cast<int32_t>(i);
    m->ep_stats_.expert_rows.assign(c.num_local_experts, 0);
    m->options_.cuda_graphs = false;  // the layers' row counts come to the host: no graphs
    m->options_.pad_decode_steps = false;
    if (m->options_.payload_comm == nullptr) m->options_.payload_comm = options.comm;
  }
  QUARRY_ASSIGN_OR_RETURN(m->weights_, DeviceWeights::Upload(weights, ops, m->local_experts_));
  QUARRY_RETURN_IF_ERROR(m->Allocate());
  return m;
}

absl::Status DeviceModel::Allocate() {
  const ModelConfig& c = config_;
  const uint64_t R = static_cast<uint64_t>(rows_cap_), H = c.hidden_size, K = c.num_experts_per_tok;
  const uint64_t E = c.num_local_experts, I = c.intermediate_size, Is = c.shared_intermediate_size;
  const uint64_t q_dim = c.num_attention_heads * c.head_dim(), kv_dim = c.num_key_value_heads * c.head_dim();
  const uint64_t ssm = c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state;
  const uint64_t conv_state = c.mamba_conv_dim() * std::max<int64_t>(c.mamba_d_conv - 1, 1);
  uint64_t off = 0;
  std::vector<std::pair<void**, uint64_t>> plan;
  auto f32 = [&](float** p, uint64_t n) { plan.push_back({reinterpret_cast<void**>(p), n * 4}); };
  auto i32 = [&](int32_t** p, uint64_t n) { plan.push_back({reinterpret_cast<void**>(p), n * 4}); };
  f32(&h_, R * H), f32(&u_, R * H), f32(&mix_, R * H);
  f32(&proj_, R * c.mamba_in_proj_dim()), f32(&conv_, R * c.mamba_conv_dim()), f32(&y_, R * c.mamba_d_inner());
  f32(&qkv_, R * (q_dim + 2 * kv_dim)), f32(&attn_, R * q_dim);  // qkv_: [R, q | k | v]
  f32(&router_, R * E), f32(&gates_, R * K), i32(&experts_, R * K);
  f32(&shared_, R * (2 * Is + E)), f32(&act_, R * Is);
  f32(&gu_, R * K * 2 * I), f32(&act2_, R * K * I), f32(&yo_, R * K * H);
  i32(&offsets_, E + 1), i32(&row_token_, R * K), i32(&pair_row_, R * K);
  plan.push_back({reinterpret_cast<void**>(&after_counts_), R * 4});  // zeroed below, kept zero by the kernels
  const uint64_t logit_rows = std::max<uint64_t>(options_.max_batch, options_.max_logit_rows > 0
                                                                         ? options_.max_logit_rows
                                                                         : options_.max_tokens);
  f32(&logits_, logit_rows * c.vocab_size);
  i32(&tokens_, logit_rows);
  plan.push_back({reinterpret_cast<void**>(&sample_params_), logit_rows * sizeof(SampleRowParams)});
  f32(&dummy_conv_, conv_state), f32(&dummy_ssm_, ssm);
  // Split-K decode attention scratch: with at most ~2 blocks per SM for up to 256 SMs, n * splits stays below
  // 512 / n_kv + n (kernels/attention_decode.h); a smaller buffer only means fewer splits.
  if (c.num_attention_layers() > 0) {
    const int64_t n_kv = std::max<int64_t>(c.num_key_value_heads, 1);
    partial_floats_ = (512 / n_kv + options_.max_batch) * c.num_attention_heads * (c.head_dim() + 2);
    f32(&partials_, partial_floats_);
    // The splits' counters (the last split block of a sequence's KV head merges them): zeroed below, kept zero.
    plan.push_back({reinterpret_cast<void**>(&split_counts_), R * c.num_attention_heads * 4});
  }
  plan.push_back({reinterpret_cast<void**>(&dummy_ssm16_), ssm * 2});
  // 16-bit copies of GEMM inputs written by the ops producing them (Copy16 in kernels/dtype.h): the norms' outputs
  // for cuBLAS and the tensor-core expert GEMM, the experts' SwiGLU output for their down projection.
  plan.push_back({reinterpret_cast<void**>(&u16_), R * H * 2});
  if (E > 0) plan.push_back({reinterpret_cast<void**>(&act16_), R * K * I * 2});
  if (c.num_mamba_layers() > 0) plan.push_back({reinterpret_cast<void**>(&y16_), R * c.mamba_d_inner() * 2});
  // Token-parallel prefill SSD scan (kernels/ssd_scan.h); the host backend's CPU scan needs none.
  if (c.num_mamba_layers() > 0 && !ops_->host_memory()) {
    ssd_ws_floats_ = SsdScanWorkspaceFloats(options_.max_tokens, c.mamba_n_heads, c.mamba_d_head,
                                           c.mamba_n_groups, c.mamba_d_state);
    if (ssd_ws_floats_ > 0) f32(&ssd_ws_, ssd_ws_floats_);
  }
  for (auto& [ptr, bytes] : plan) off = AlignUp(off) + bytes;
  workspace_bytes_ = AlignUp(off);
  QUARRY_ASSIGN_OR_RETURN(arena_, ops_->Alloc(workspace_bytes_, "the device model's workspace"));
  off = 0;
  for (auto& [ptr, bytes] : plan) {
    off = AlignUp(off);
    *ptr = static_cast<char*>(arena_) + off;
    off += bytes;
  }
  QUARRY_RETURN_IF_ERROR(ops_->Zero(after_counts_, R * 4));
  if (split_counts_ != nullptr) QUARRY_RETURN_IF_ERROR(ops_->Zero(split_counts_, R * c.num_attention_heads * 4));
  // Step metadata.
  const uint64_t B = static_cast<uint64_t>(options_.max_batch), L = c.num_mamba_layers();
  const uint64_t blocks = static_cast<uint64_t>(std::max<int64_t>(options_.max_blocks_per_seq, 1));
  off = 0;
  off_ids_ = off, off = AlignUp(off + R * 4);
  off_slots_ = off, off = AlignUp(off + R * 4);
  off_kv_lens_ = off, off = AlignUp(off + B * 4);
  off_tables_ = off, off = AlignUp(off + B * blocks * 4);
  off_logit_rows_ = off, off = AlignUp(off + R * 4);
  off_conv_ptrs_ = off, off = AlignUp(off + L * B * 8);
  off_ssm_ptrs_ = off, off = AlignUp(off + L * B * 8);
  meta_bytes_ = off;
  meta_host_.assign(meta_bytes_, 0);
  QUARRY_ASSIGN_OR_RETURN(meta_, ops_->Alloc(meta_bytes_, "the device model's step metadata"));
  QUARRY_RETURN_IF_ERROR(ops_->Zero(meta_, meta_bytes_));
  return ops_->Synchronize();
}

absl::Status DeviceModel::Prepare(std::span<const ForwardSegment> segments, int64_t padded_rows, Step* s) {
  const ModelConfig& c = config_;
  // 1-token segments first (they run as batched decode ops), then prefill chunks; order kept within each.
  std::vector<size_t> order;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].n == 1) order.push_back(i);
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].n != 1) order.push_back(i);
  }
  std::vector<ForwardSegment> sorted;
  for (size_t i : order) sorted.push_back(segments[i]);
  Model::Batch b;
  QUARRY_RETURN_IF_ERROR(BuildBatch(c, sorted, &b));
  if (static_cast<int64_t>(b.spans.size()) > options_.max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("device model: ", b.spans.size(),
                                                   " sequences in one step exceed max_batch = ", options_.max_batch));
  }
  s->rows = b.tokens;
  for (const Model::Batch::Span& sp : b.spans) {
    if (sp.n == 1) {
      ++s->real_decode;
      s->decode_seqs.push_back(sp.seq);
    }
  }
  s->decode = s->real_decode;
  if (padded_rows > 0) {
    s->padded = true;
    s->rows = s->decode = padded_rows;
  }
  if (s->rows > rows_cap_) {
    return absl::InvalidArgumentError(
        absl::StrCat("device model: ", s->rows, " tokens in one step exceed max_tokens = ", options_.max_tokens));
  }

  // Sequence state checks: paged KV in one pool per layer, one SSM state kind.
  const int64_t n_attn = c.num_attention_layers(), n_mamba = c.num_mamba_layers();
  const int64_t bs = b.spans.empty() ? 0 : b.spans[0].seq->block_size;
  for (size_t i = 0; i < b.spans.size(); ++i) {
    const SequenceView& v = *b.spans[i].seq;
    if (n_attn > 0) {
      if (v.block_table == nullptr || v.block_size != bs || bs <= 0) {
        return absl::InvalidArgumentError("device model: sequences need a paged KV cache with one block size");
      }
      auto k_of = [](const AttentionLayerCache& a) -> void* { return a.k16 ? static_cast<void*>(a.k16) : a.k; };
      auto v_of = [](const AttentionLayerCache& a) -> void* { return a.v16 ? static_cast<void*>(a.v16) : a.v; };
      if (i == 0) {
        s->kv_bf16 = !v.attention.empty() && v.attention[0].k16 != nullptr;
        for (const AttentionLayerCache& a : v.attention) s->kv_k.push_back(k_of(a)), s->kv_v.push_back(v_of(a));
      }
      for (int64_t l = 0; l < n_attn; ++l) {
        if (k_of(v.attention[l]) != s->kv_k[l] || v_of(v.attention[l]) != s->kv_v[l] ||
            (v.attention[l].k16 != nullptr) != s->kv_bf16) {
          return absl::InvalidArgumentError("device model: all sequences must share one KV page pool per layer");
        }
      }
      const int64_t need = (v.length + b.spans[i].n + bs - 1) / bs;
      if (need > options_.max_blocks_per_seq) {
        return absl::InvalidArgumentError(absl::StrCat("device model: a sequence needs ", need,
                                                       " KV pages, more than max_blocks_per_seq = ",
                                                       options_.max_blocks_per_seq));
      }
    }
    for (int64_t l = 0; l < n_mamba; ++l) {
      const MambaLayerState& st = v.mamba[l];
      if (st.conv == nullptr || (ssm_bf16_ ? st.ssm_bf16 == nullptr : st.ssm == nullptr)) {
        return absl::InvalidArgumentError(absl::StrCat("device model: a sequence lacks its conv state or its ",
                                                       ssm_bf16_ ? "bf16" : "f32",
                                                       " SSM state (the model was created with bf16_state = ",
                                                       ssm_bf16_ ? "true" : "false", ")"));
      }
    }
  }

  // Host staging of the metadata.
  uint8_t* meta = meta_host_.data();
  auto* ids = reinterpret_cast<int32_t*>(meta + off_ids_);
  auto* slots = reinterpret_cast<int32_t*>(meta + off_slots_);
  auto* kv_lens = reinterpret_cast<int32_t*>(meta + off_kv_lens_);
  auto* tables = reinterpret_cast<int32_t*>(meta + off_tables_);
  auto* logit_rows = reinterpret_cast<int32_t*>(meta + off_logit_rows_);
  auto* conv_ptrs = reinterpret_cast<float**>(meta + off_conv_ptrs_);
  auto* ssm_ptrs = reinterpret_cast<void**>(meta + off_ssm_ptrs_);
  const int64_t B = options_.max_batch, blocks = std::max<int64_t>(options_.max_blocks_per_seq, 1);
  std::fill_n(ids, s->rows, 0);
  std::fill_n(slots, s->rows, -1);
  std::copy(b.ids.begin(), b.ids.end(), ids);
  const int64_t used_tables = std::max<int64_t>(s->decode, static_cast<int64_t>(b.spans.size()));
  int64_t used_blocks = 1;  // widest block table of this step (only that many columns are uploaded)
  for (const Model::Batch::Span& sp : b.spans) {
    if (n_attn > 0) used_blocks = std::max(used_blocks, (sp.seq->length + sp.n + bs - 1) / bs);
  }
  for (int64_t r = 0; r < used_tables; ++r) std::fill_n(tables + r * blocks, used_blocks, 0);
  std::fill_n(kv_lens, s->decode, 1);
  int64_t table_row = 0;
  for (const Model::Batch::Span& sp : b.spans) {
    const SequenceView& v = *sp.seq;
    if (n_attn > 0) {
      const int64_t need = (v.length + sp.n + bs - 1) / bs;
      std::copy_n(v.block_table, need, tables + table_row * blocks);
      for (int64_t i = 0; i < sp.n; ++i) {
        const int64_t j = v.length + i;
        slots[sp.row + i] = static_cast<int32_t>(int64_t{v.block_table[j / bs]} * bs + j % bs);
      }
    }
    if (sp.n == 1) {
      kv_lens[table_row] = static_cast<int32_t>(v.length + 1);
    } else {
      s->prefill.push_back({sp.seq, sp.row, sp.n, v.length, table_row});
    }
    ++table_row;
  }
  // Padding rows (decode-only steps) follow the real decode rows and use the scratch state.
  for (int64_t l = 0; l < n_mamba; ++l) {
    for (int64_t d = 0; d < s->decode; ++d) {
      if (d < s->real_decode) {
        const MambaLayerState& st = s->decode_seqs[d]->mamba[l];
        conv_ptrs[l * B + d] = st.conv;
        ssm_ptrs[l * B + d] = ssm_bf16_ ? static_cast<void*>(st.ssm_bf16) : static_cast<void*>(st.ssm);
      } else {
        conv_ptrs[l * B + d] = dummy_conv_;
        ssm_ptrs[l * B + d] = ssm_bf16_ ? static_cast<void*>(dummy_ssm16_) : static_cast<void*>(dummy_ssm_);
      }
    }
  }
  // Output rows: padded steps compute logits for every decode row; eager steps gather the requested rows.
  std::vector<int64_t> sorted_out;  // device row of each output row, in sorted segment order
  if (s->padded) {
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i].n > 0 && sorted[i].logits != LogitsMode::kNone) sorted_out.push_back(static_cast<int64_t>(i));
    }
  } else {
    s->gathered = static_cast<int64_t>(b.logit_rows.size());
    for (int64_t r = 0; r < s->gathered; ++r) {
      logit_rows[r] = static_cast<int32_t>(b.logit_rows[r]);
      sorted_out.push_back(r);
    }
  }
  // Back to the caller's segment order.
  std::vector<int64_t> first(segments.size(), 0);
  {
    int64_t at = 0;
    for (size_t i : order) {
      first[i] = at;
      at += StepModel::LogitRows(segments.subspan(i, 1));
    }
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const int64_t rows = StepModel::LogitRows(segments.subspan(i, 1));
    for (int64_t r = 0; r < rows; ++r) s->out_rows.push_back(sorted_out[first[i] + r]);
  }

  // One upload per region, only what this step uses.
  char* dev = static_cast<char*>(meta_);
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_ids_, ids, s->rows * 4));
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_slots_, slots, s->rows * 4));
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_kv_lens_, kv_lens, s->decode * 4));
  QUARRY_RETURN_IF_ERROR(ops_->Upload2D(dev + off_tables_, blocks * 4, tables, blocks * 4, used_blocks * 4, used_tables));
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_logit_rows_, logit_rows, s->gathered * 4));
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_conv_ptrs_, conv_ptrs, n_mamba * B * 8));
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dev + off_ssm_ptrs_, ssm_ptrs, n_mamba * B * 8));
  s->ids = reinterpret_cast<const int32_t*>(dev + off_ids_);
  s->slots = reinterpret_cast<const int32_t*>(dev + off_slots_);
  s->kv_lens = reinterpret_cast<const int32_t*>(dev + off_kv_lens_);
  s->tables = reinterpret_cast<const int32_t*>(dev + off_tables_);
  s->logit_rows = reinterpret_cast<const int32_t*>(dev + off_logit_rows_);
  s->conv_ptrs = reinterpret_cast<float* const*>(dev + off_conv_ptrs_);
  s->ssm_ptrs = reinterpret_cast<void* const*>(dev + off_ssm_ptrs_);
  s->block_size = bs;
  s->kv_pool_rows = std::numeric_limits<int64_t>::max();
  if (!b.spans.empty() && b.spans[0].seq->kv_pool_rows > 0) s->kv_pool_rows = b.spans[0].seq->kv_pool_rows;
  return absl::OkStatus();
}

absl::Status DeviceModel::Run(std::span<const ForwardSegment> segments, Step* sp) {
  Step& s = *sp;
  int64_t ones = 0, more = 0;
  for (const ForwardSegment& seg : segments) {
    if (seg.n == 1) ++ones;
    if (seg.n > 1) ++more;
  }
  const bool decode_only = more == 0 && ones <= options_.max_batch;
  const bool graph = decode_only && options_.cuda_graphs && ops_->graphs();
  const bool padded = graph || (decode_only && options_.pad_decode_steps);
  QUARRY_RETURN_IF_ERROR(Prepare(segments, padded ? Bucket(ones) : 0, &s));
  const int64_t logit_cap = std::max(options_.max_batch, options_.max_logit_rows > 0 ? options_.max_logit_rows
                                                                                     : options_.max_tokens);
  if (s.gathered > logit_cap) {
    return absl::InvalidArgumentError(absl::StrCat("device model: ", s.gathered, " logits rows in one step exceed ",
                                                   logit_cap, " (max_logit_rows)"));
  }
  if (graph) {
    const int key = static_cast<int>(s.rows);
    // A graph bakes in the KV pool addresses: recapture if the pools moved.
    if (s.kv_k != graph_kv_k_ || s.kv_v != graph_kv_v_) {
      graph_kv_k_ = s.kv_k;
      graph_kv_v_ = s.kv_v;
      captured_.clear();
    }
    if (!captured_.count(key) || !ops_->HasGraph(key)) {
      QUARRY_RETURN_IF_ERROR(ops_->CaptureGraph(key, [&] { return Body(s); }));
      captured_.insert(key);
      ++stats_.graph_captures;
    }
    QUARRY_RETURN_IF_ERROR(ops_->LaunchGraph(key));
    ++stats_.graph_steps;
  } else {
    QUARRY_RETURN_IF_ERROR(Body(s));
    ++stats_.eager_steps;
  }
  for (const ForwardSegment& seg : segments) {
    if (seg.n > 0) seg.seq->length += seg.n;
  }
  return absl::OkStatus();
}

absl::Status DeviceModel::Forward(std::span<const ForwardSegment> segments, float* logits) {
  if (std::all_of(segments.begin(), segments.end(), [](const ForwardSegment& g) { return g.n == 0; })) {
    if (StepModel::LogitRows(segments) > 0) return absl::InvalidArgumentError("logits requested for zero tokens");
    if (before_forward_) QUARRY_RETURN_IF_ERROR(before_forward_());
    return ep_ ? EmptyStep() : absl::OkStatus();
  }
  if (before_forward_) QUARRY_RETURN_IF_ERROR(before_forward_());
  Step s;
  QUARRY_RETURN_IF_ERROR(Run(segments, &s));
  const int64_t V = config_.vocab_size;
  const int64_t device_rows = s.padded ? s.real_decode : s.gathered;
  logits_host_.resize(device_rows * V);
  QUARRY_RETURN_IF_ERROR(ops_->Download(logits_host_.data(), logits_, logits_host_.size() * sizeof(float)));
  for (size_t i = 0; i < s.out_rows.size(); ++i) {
    std::memcpy(logits + i * V, logits_host_.data() + s.out_rows[i] * V, V * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status DeviceModel::GrowScratch(void** buf, uint64_t* cap, uint64_t bytes, const char* what) {
  if (bytes <= *cap) return absl::OkStatus();
  if (*buf != nullptr) ops_->Free(*buf);
  *buf = nullptr;
  *cap = 0;
  const uint64_t want = std::max<uint64_t>(bytes + bytes / 2, 4096);  // room to grow without a realloc per step
  QUARRY_ASSIGN_OR_RETURN(*buf, ops_->Alloc(want, what));
  *cap = want;
  return absl::OkStatus();
}

absl::Status DeviceModel::ForwardSample(std::span<const ForwardSegment> segments, const SampleRow* rows,
                                        int32_t* tokens, RowLogprobs* logprobs) {
  if (std::all_of(segments.begin(), segments.end(), [](const ForwardSegment& g) { return g.n == 0; })) {
    if (StepModel::LogitRows(segments) > 0) return absl::InvalidArgumentError("logits requested for zero tokens");
    if (before_forward_) QUARRY_RETURN_IF_ERROR(before_forward_());
    return ep_ ? EmptyStep() : absl::OkStatus();
  }
  const int64_t out_rows = StepModel::LogitRows(segments);
  for (int64_t i = 0; i < out_rows; ++i) {
    if (absl::Status s = ValidateSampleRow(rows[i].params); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sampling parameters of logits row ", i, ": ", s.message()));
    }
  }
  const int64_t V = config_.vocab_size;
  // The processors are checked (against the vocabulary) before any state moves; laid out by device row below.
  QUARRY_RETURN_IF_ERROR(ValidateSampleRows(rows, out_rows, V));
  for (int64_t i = 0; i < out_rows && logprobs == nullptr; ++i) {
    if (rows[i].top_logprobs >= 0) return absl::InvalidArgumentError("logprobs were asked for but no output was given");
  }
  if (before_forward_) QUARRY_RETURN_IF_ERROR(before_forward_());
  const auto t_start = std::chrono::steady_clock::now();
  Step s;
  QUARRY_RETURN_IF_ERROR(Run(segments, &s));
  const int64_t device_rows = s.padded ? s.real_decode : s.gathered;
  if (device_rows == 0) return absl::OkStatus();
  // Parameters by device row (rows nobody asked for, e.g. a 1-token chunk without logits: greedy, no processors).
  QUARRY_RETURN_IF_ERROR(packed_.Pack(rows, out_rows, s.out_rows.data(), device_rows, V));
  sample_params_host_.assign(device_rows, SampleRowParams{0.0f});
  for (size_t i = 0; i < s.out_rows.size(); ++i) sample_params_host_[s.out_rows[i]] = rows[i].params;

  // One upload: sample params | adjust offsets | ban offsets | bans | adjustments | logprob rows; then the
  // logprob outputs (chosen | top ids | top logprobs) written by the device, one download.
  const int64_t L = static_cast<int64_t>(packed_.logprob_rows.size());
  const int32_t top = packed_.max_top_logprobs;
  ScratchSections sec{.align = 16};
  auto section = [&](uint64_t n) { return sec.Add(n); };
  const uint64_t o_params = section(device_rows * sizeof(SampleRowParams));
  const uint64_t o_adj_off = section(packed_.has_adjust() ? (device_rows + 1) * 4 : 0);
  const uint64_t o_ban_off = section(packed_.has_ban() ? (device_rows + 1) * 4 : 0);
  const uint64_t o_ban = section(packed_.ban.size() * 4);
  const uint64_t o_adj = section(packed_.adjust.size() * sizeof(LogitAdjust));
  const uint64_t o_lp_rows = section(L * 4);
  const uint64_t in_bytes = sec.bytes;
  const uint64_t o_out = section((L + 2 * L * top) * 4);
  QUARRY_RETURN_IF_ERROR(GrowScratch(&proc_, &proc_cap_, sec.bytes, "sampling scratch"));
  proc_host_.resize(in_bytes);
  auto put = [&](uint64_t at, const void* src, uint64_t n) {
    if (n > 0) std::memcpy(proc_host_.data() + at, src, n);
  };
  put(o_params, sample_params_host_.data(), device_rows * sizeof(SampleRowParams));
  if (packed_.has_adjust()) put(o_adj_off, packed_.adjust_offsets.data(), (device_rows + 1) * 4);
  if (packed_.has_ban()) put(o_ban_off, packed_.ban_offsets.data(), (device_rows + 1) * 4);
  put(o_ban, packed_.ban.data(), packed_.ban.size() * 4);
  put(o_adj, packed_.adjust.data(), packed_.adjust.size() * sizeof(LogitAdjust));
  put(o_lp_rows, packed_.logprob_rows.data(), L * 4);
  QUARRY_RETURN_IF_ERROR(ops_->Upload(proc_, proc_host_.data(), in_bytes));
  auto at = [&](uint64_t off) { return static_cast<uint8_t*>(proc_) + off; };
  const auto* d_params = reinterpret_cast<const SampleRowParams*>(at(o_params));
  const auto* d_lp_rows = reinterpret_cast<const int32_t*>(at(o_lp_rows));

  if (L > 0) {  // the raw rows, before the processors change them
    QUARRY_RETURN_IF_ERROR(GrowScratch(reinterpret_cast<void**>(&raw_), &raw_cap_, L * V * sizeof(float),
                                       "logprob rows"));
    QUARRY_RETURN_IF_ERROR(ops_->GatherRows({logits_, V, d_lp_rows, L, V, raw_, V}));
  }
  if (packed_.has_adjust() || packed_.has_ban()) {
    QUARRY_RETURN_IF_ERROR(ops_->LogitsAdjust(
        {logits_, V, device_rows, V,
         packed_.has_adjust() ? reinterpret_cast<const int32_t*>(at(o_adj_off)) : nullptr,
         packed_.has_adjust() ? reinterpret_cast<const LogitAdjust*>(at(o_adj)) : nullptr,
         packed_.has_ban() ? reinterpret_cast<const int32_t*>(at(o_ban_off)) : nullptr,
         packed_.has_ban() ? reinterpret_cast<const int32_t*>(at(o_ban)) : nullptr}));
  }
  QUARRY_RETURN_IF_ERROR(ops_->Sample({logits_, V, device_rows, V, d_params, tokens_}));
  tokens_host_.resize(device_rows);
  if (L > 0) {
    auto* chosen = reinterpret_cast<float*>(at(o_out));
    auto* top_ids = reinterpret_cast<int32_t*>(chosen + L);
    auto* top_lp = reinterpret_cast<float*>(top_ids + L * top);
    QUARRY_RETURN_IF_ERROR(ops_->Logprobs({raw_, V, L, V, tokens_, d_lp_rows, top, chosen, top > 0 ? top_ids : nullptr,
                                           top > 0 ? top_lp : nullptr}));
    lp_host_.resize(L + 2 * L * top);
    QUARRY_RETURN_IF_ERROR(ops_->Download(lp_host_.data(), chosen, lp_host_.size() * 4));
  }
  const auto t_wait = std::chrono::steady_clock::now();
  QUARRY_RETURN_IF_ERROR(ops_->Download(tokens_host_.data(), tokens_, device_rows * sizeof(int32_t)));
  const auto t_done = std::chrono::steady_clock::now();
  stats_.host_seconds += std::chrono::duration<double>(t_wait - t_start).count();
  stats_.wait_seconds += std::chrono::duration<double>(t_done - t_wait).count();
  for (size_t i = 0; i < s.out_rows.size(); ++i) tokens[i] = tokens_host_[s.out_rows[i]];
  if (L > 0) {
    std::vector<int64_t> lp_index(device_rows, -1);  // device row -> its index among the logprob rows
    for (int64_t j = 0; j < L; ++j) lp_index[packed_.logprob_rows[j]] = j;
    const auto* h_ids = reinterpret_cast<const int32_t*>(lp_host_.data() + L);
    const float* h_lp = lp_host_.data() + L + L * top;
    for (size_t i = 0; i < s.out_rows.size(); ++i) {
      if (rows[i].top_logprobs < 0) continue;
      const int64_t j = lp_index[s.out_rows[i]];
      RowLogprobs& out = logprobs[i];
      out.chosen = lp_host_[j];
      out.top.clear();
      for (int32_t k = 0; k < rows[i].top_logprobs && h_ids[j * top + k] >= 0; ++k) {
        out.top.emplace_back(h_ids[j * top + k], h_lp[j * top + k]);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceModel::Body(const Step& s) {
  const ModelConfig& c = config_;
  const int64_t T = s.rows, H = c.hidden_size;
  // Padding rows start from a zero state every step. A bucket that only its own size maps to (1, 2: decode at
  // batch 1 and 2) never has padding rows: no zeroing there.
  const bool may_pad = s.rows > 1 && Bucket(s.rows - 1) == s.rows;
  if (s.padded && may_pad && c.num_mamba_layers() > 0) {
    const int64_t conv_state = c.mamba_conv_dim() * std::max<int64_t>(c.mamba_d_conv - 1, 1);
    const int64_t ssm = c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state;
    QUARRY_RETURN_IF_ERROR(ops_->Zero(dummy_conv_, conv_state * 4));
    QUARRY_RETURN_IF_ERROR(ops_->Zero(ssm_bf16_ ? static_cast<void*>(dummy_ssm16_) : dummy_ssm_,
                                      ssm * (ssm_bf16_ ? 2 : 4)));
  }
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float residual = static_cast<float>(c.residual_multiplier);
  // The embedding with layer 0's input norm in the same pass; every later norm is fused with the residual add
  // before it (AddRmsNorm).
  EmbeddingParams ep{s.ids, T, weights_->embed_tokens, static_cast<float>(c.embedding_multiplier), h_};
  ep.norm_weight = weights_->layers[0].input_layernorm, ep.norm_eps = eps, ep.norm_y = u_, ep.ld_norm_y = H;
  QUARRY_RETURN_IF_ERROR(ops_->Embedding(ep));
  u16_dtype_ = DType::kF32;  // no 16-bit copy of layer 0's input: its first product rounds u_ itself
  // Decode steps of GEMV size with the routing inside the experts' launch: the mixer's output projection adds
  // its scaled result to the residual stream itself and the MoE's first products normalise h_ themselves
  // (LinearParams / GroupedLinearParams::norm_weight), so the post-mixer AddRmsNorm has no launch.
  const int64_t E = c.num_local_experts, K = c.num_experts_per_tok;
  fold_post_norm_ = GemvDecodeStep(s) && !ep_ && E > 0 && GroupedRouteFuses({nullptr, T, E, K}, E, false);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const DeviceLayerWeights& lw = weights_->layers[layer];
    if (lw.type == LayerType::kMamba) {
      QUARRY_RETURN_IF_ERROR(Mamba(layer, s));
    } else {
      QUARRY_RETURN_IF_ERROR(AttentionLayer(layer, s));
    }
    if (!fold_post_norm_) {
      AddRmsNormParams post{h_, H, mix_, H, residual, lw.post_attention_layernorm, u_, H, T, H, eps};
      // u_'s 16-bit copy, written in passing: in the experts' type for their tensor-core GEMM, else in the type
      // of the block's first dense product (cuBLAS at prefill).
      const DeviceMoeWeights& mw = lw.moe;
      const bool many = !ep_ && E > 0 && ManyRowsPerExpert(mw, T * K, E);
      const MatrixView& first = mw.shared_router.data != nullptr ? mw.shared_router
                                : c.shared_intermediate_size > 0 && mw.shared_input.data != nullptr ? mw.shared_input
                                                                                                    : mw.router;
      post.y16 = U16Out(T, many ? mw.input_linear.dtype : first.dtype);
      QUARRY_RETURN_IF_ERROR(ops_->AddRmsNorm(post));
    }
    bool after_done = false;  // the experts' down projection ran the AddRmsNorm after the block (::after)
    QUARRY_RETURN_IF_ERROR(Moe(layer, s, &after_done));
    if (!after_done) QUARRY_RETURN_IF_ERROR(ops_->AddRmsNorm(AfterMoe(layer, s)));
  }
  return Logits(s);
}

bool DeviceModel::GemvDecodeStep(const Step& s) const {
  return s.prefill.empty() && s.decode == s.rows && s.rows <= kFusedSwigluRows;
}

AddRmsNormParams DeviceModel::AfterMoe(int layer, const Step& s) {
  const ModelConfig& c = config_;
  const int64_t T = s.rows, H = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float residual = static_cast<float>(c.residual_multiplier);
  // After the last layer the model's final norm, whose output (u_) the LM head reads.
  const bool last = layer + 1 == c.num_hidden_layers;
  const DeviceLayerWeights* next = last ? nullptr : &weights_->layers[layer + 1];
  AddRmsNormParams an{h_, H, mix_, H, residual, last ? weights_->norm : next->input_layernorm, u_, H, T, H, eps};
  if (!last) {
    const DType next_dtype = next->type == LayerType::kMamba            ? next->mamba.in_proj.dtype
                             : next->attention.qkv_proj.data != nullptr ? next->attention.qkv_proj.dtype
                                                                        : next->attention.q_proj.dtype;
    an.y16 = U16Out(T, next_dtype);
  }
  if (!ep_) {  // the routed experts' weighted sum (expert parallelism's exchange combines on its own)
    an.moe_y = yo_, an.ld_moe_y = H, an.moe_indices = experts_, an.moe_pair_row = pair_row_;
    an.moe_weights = gates_, an.moe_k = c.num_experts_per_tok;
  }
  return an;
}

absl::Status DeviceModel::Mamba(int layer, const Step& s) {
  const ModelConfig& c = config_;
  const DeviceMambaWeights& mw = weights_->layers[layer].mamba;
  const int64_t T = s.rows, B = options_.max_batch, ord = ordinal_[layer];
  const int64_t d_inner = c.mamba_d_inner(), conv_dim = c.mamba_conv_dim(), w_in = c.mamba_in_proj_dim();
  const int64_t gn = c.mamba_n_groups * c.mamba_d_state;
  LinearParams in = OnU(mw.in_proj, proj_, w_in, T);  // [T, z | xBC | dt]
  // A decode-only step of GEMV size runs the gated norm in pieces: the SSD update writes g = y * silu(z) and the
  // out_proj GEMV normalises its input rows itself (LinearParams::norm_weight): one launch fewer.
  const bool norm_in_out_proj = GemvDecodeStep(s) && c.mamba_d_state <= 256;
  if (s.decode > 0) {
    // The decode rows' conv step (xBC -> conv_) is the projection's epilogue: no launch of its own.
    ConvUpdateBatchParams& cp = in.conv;
    cp.x = proj_ + d_inner, cp.ldx = w_in, cp.weight = mw.conv_weight, cp.bias = mw.conv_bias;
    cp.states = s.conv_ptrs + ord * B, cp.y = conv_, cp.ldy = conv_dim, cp.n = s.decode, cp.c = conv_dim;
    cp.k = c.mamba_d_conv, cp.silu = true;
    in.conv_col = d_inner;
  }
  QUARRY_RETURN_IF_ERROR(ops_->Linear(in));
  if (s.decode > 0) {
    SsdUpdateBatchParams sp;
    sp.x = conv_, sp.ldx = conv_dim, sp.dt_raw = proj_ + d_inner + conv_dim, sp.lddt = w_in;
    sp.dt_bias = mw.dt_bias, sp.a = mw.a, sp.b = conv_ + d_inner, sp.ldb = conv_dim, sp.c = conv_ + d_inner + gn;
    sp.ldc = conv_dim, sp.d = mw.d;
    if (ssm_bf16_) {
      sp.states_bf16 = reinterpret_cast<uint16_t* const*>(s.ssm_ptrs + ord * B);
    } else {
      sp.states = reinterpret_cast<float* const*>(s.ssm_ptrs + ord * B);
    }
    sp.y = y_, sp.ldy = d_inner, sp.n = s.decode, sp.h = c.mamba_n_heads, sp.p = c.mamba_d_head;
    sp.groups = c.mamba_n_groups, sp.d_state = c.mamba_d_state;
    if (norm_in_out_proj) sp.z = proj_, sp.ldz = w_in;
    QUARRY_RETURN_IF_ERROR(ops_->SsdUpdateBatch(sp));
  }
  for (const Step::Prefill& pf : s.prefill) {
    const MambaLayerState& st = pf.seq->mamba[ord];
    CausalConv1dParams cp;
    cp.x = proj_ + pf.row * w_in + d_inner, cp.ldx = w_in, cp.weight = mw.conv_weight, cp.bias = mw.conv_bias;
    cp.state = st.conv, cp.y = conv_ + pf.row * conv_dim, cp.ldy = conv_dim, cp.t = pf.n, cp.c = conv_dim;
    cp.k = c.mamba_d_conv, cp.silu = true;
    QUARRY_RETURN_IF_ERROR(ops_->CausalConv1d(cp));
    const float* xbc = conv_ + pf.row * conv_dim;
    SsdParams sp;
    sp.x = xbc, sp.ldx = conv_dim, sp.dt_raw = proj_ + pf.row * w_in + d_inner + conv_dim, sp.lddt = w_in;
    sp.dt_bias = mw.dt_bias, sp.a = mw.a, sp.b = xbc + d_inner, sp.ldb = conv_dim, sp.c = xbc + d_inner + gn;
    sp.ldc = conv_dim, sp.d = mw.d, sp.state = st.ssm, sp.state_bf16 = st.ssm_bf16;
    sp.y = y_ + pf.row * d_inner, sp.ldy = d_inner, sp.t = pf.n, sp.h = c.mamba_n_heads, sp.p = c.mamba_d_head;
    sp.groups = c.mamba_n_groups, sp.n = c.mamba_d_state;
    sp.chunk_size = options_.mamba_chunk_size > 0 ? options_.mamba_chunk_size : c.mamba_chunk_size;
    sp.workspace = ssd_ws_, sp.workspace_floats = ssd_ws_floats_;
    QUARRY_RETURN_IF_ERROR(ops_->SsdScan(sp));
  }
  if (norm_in_out_proj) {
    LinearParams out = MixerOut(y_, d_inner, mw.out_proj, T);
    out.norm_weight = mw.norm, out.norm_eps = static_cast<float>(c.rms_norm_eps);
    return ops_->Linear(out);
  }
  GatedRmsNormParams gp;
  gp.x = y_, gp.ldx = d_inner, gp.z = proj_, gp.ldz = w_in, gp.weight = mw.norm, gp.y = y_, gp.ldy = d_inner;
  gp.n = T, gp.d = d_inner, gp.group_size = d_inner, gp.eps = static_cast<float>(c.rms_norm_eps);
  LinearParams out = MixerOut(y_, d_inner, mw.out_proj, T);
  if (T > kCopy16Rows && mw.out_proj.dtype != DType::kF32) {  // out_proj's 16-bit input, written in passing
    gp.y16 = {y16_, d_inner, mw.out_proj.dtype};
    out.x16 = y16_, out.ldx16 = d_inner;
  }
  QUARRY_RETURN_IF_ERROR(ops_->GatedRmsNorm(gp));
  return ops_->Linear(out);
}

absl::Status DeviceModel::AttentionLayer(int layer, const Step& s) {
  const ModelConfig& c = config_;
  const DeviceAttentionWeights& aw = weights_->layers[layer].attention;
  const int64_t T = s.rows, dh = c.head_dim(), ord = ordinal_[layer];
  const int64_t q_dim = c.num_attention_heads * dh, kv_dim = c.num_key_value_heads * dh;
  const int64_t blocks = options_.max_blocks_per_seq;
  // qkv_ rows: [q (n_q * d_h) | k (n_kv * d_h) | v (n_kv * d_h)], one projection when the weights are stacked.
  const int64_t ld = q_dim + 2 * kv_dim;
  float* q = qkv_;
  float* k = qkv_ + q_dim;
  float* v = qkv_ + q_dim + kv_dim;
  // The layer's page pool, f32 or bf16.
  float* kc = s.kv_bf16 ? nullptr : static_cast<float*>(s.kv_k[ord]);
  float* vc = s.kv_bf16 ? nullptr : static_cast<float*>(s.kv_v[ord]);
  uint16_t* kc16 = s.kv_bf16 ? static_cast<uint16_t*>(s.kv_k[ord]) : nullptr;
  uint16_t* vc16 = s.kv_bf16 ? static_cast<uint16_t*>(s.kv_v[ord]) : nullptr;
  const KvAppendParams kp{k, ld, v, ld, kc, vc, s.slots, T, kv_dim, s.kv_pool_rows, kc16, vc16};
  if (aw.qkv_proj.data != nullptr) {
    // The stacked projection appends its k and v columns to the cache itself (LinearParams::kv; at decode in
    // the GEMV's store, no launch of its own).
    LinearParams qkv = OnU(aw.qkv_proj, qkv_, ld, T);
    qkv.kv = kp, qkv.kv_k_col = q_dim, qkv.kv_v_col = q_dim + kv_dim;
    QUARRY_RETURN_IF_ERROR(ops_->Linear(qkv));
  } else {
    QUARRY_RETURN_IF_ERROR(ops_->Linear(OnU(aw.q_proj, q, ld, T)));
    QUARRY_RETURN_IF_ERROR(ops_->Linear(OnU(aw.k_proj, k, ld, T)));
    QUARRY_RETURN_IF_ERROR(ops_->Linear(OnU(aw.v_proj, v, ld, T)));
    QUARRY_RETURN_IF_ERROR(ops_->KvAppend(kp));
  }
  const float scale = static_cast<float>(c.attention_multiplier);
  if (s.decode > 0) {
    AttentionDecodeParams ap;
    ap.q = q, ap.ldq = ld, ap.k_cache = kc, ap.v_cache = vc, ap.k_cache16 = kc16, ap.v_cache16 = vc16;
    ap.block_tables = s.tables, ap.max_blocks = blocks;
    ap.partials = partials_, ap.partial_floats = partial_floats_;  // split-K over the keys (CUDA) ...
    ap.split_counts = split_counts_;  // ... merged by the last split block (no merge launch)
    ap.kv_lens = s.kv_lens, ap.block_size = s.block_size;
    ap.out = attn_, ap.ldo = q_dim, ap.n = s.decode, ap.n_q = c.num_attention_heads;
    ap.n_kv = c.num_key_value_heads, ap.d_h = dh, ap.scale = scale;
    QUARRY_RETURN_IF_ERROR(ops_->AttentionDecode(ap));
  }
  for (const Step::Prefill& pf : s.prefill) {
    AttentionParams ap;
    ap.q = q + pf.row * ld, ap.ldq = ld, ap.k = kc, ap.ldk = kv_dim, ap.v = vc, ap.ldv = kv_dim;
    ap.k16 = kc16, ap.v16 = vc16;
    ap.out = attn_ + pf.row * q_dim, ap.ldo = q_dim, ap.t = pf.n, ap.kv_len = pf.pos + pf.n, ap.q_pos0 = pf.pos;
    ap.n_q = c.num_attention_heads, ap.n_kv = c.num_key_value_heads, ap.d_h = dh, ap.scale = scale;
    ap.block_table = s.tables + pf.table_row * blocks, ap.block_size = s.block_size;
    QUARRY_RETURN_IF_ERROR(ops_->Attention(ap));
  }
  return ops_->Linear(MixerOut(attn_, q_dim, aw.o_proj, T));
}

absl::Status DeviceModel::Moe(int layer, const Step& s, bool* after_done) {
  const ModelConfig& c = config_;
  const DeviceMoeWeights& mw = weights_->layers[layer].moe;
  const int64_t T = s.rows, H = c.hidden_size, E = c.num_local_experts, K = c.num_experts_per_tok;
  const int64_t Is = c.shared_intermediate_size;
  const float* router_logits = router_;  // [T, E], row stride router_ld
  int64_t router_ld = E;
  const bool many = E > 0 && ManyRowsPerExpert(mw, T * K, E);  // then Body wrote u16_ with the norm
  // Decode-sized batches: the shared expert's down projection runs inside the routed experts' down launch
  // (GroupedLinearParams::dense), reading SwiGLU of its gate|up directly.
  const bool shared_with_experts = Is > 0 && E > 0 && !ep_ && !many && T <= kGroupedDenseRows;
  LinearParams shared_down{shared_, 2 * Is, mw.shared_output, mix_, H, T, false};
  shared_down.swiglu_input = true;
  if (mw.shared_router.data != nullptr) {
    // One projection for the shared expert's gate|up and the router: [T, 2 Is + E].
    const int64_t w = 2 * Is + E;
    QUARRY_RETURN_IF_ERROR(ops_->Linear(OnMoeInput(layer, mw.shared_router, shared_, w, T)));
    if (!shared_with_experts) QUARRY_RETURN_IF_ERROR(SharedDown(mw, shared_, w, T));
    shared_down.ldx = w;
    router_logits = shared_ + 2 * Is;
    router_ld = w;
  } else {
    if (Is > 0) {
      QUARRY_RETURN_IF_ERROR(ops_->Linear(OnMoeInput(layer, mw.shared_input, shared_, 2 * Is, T)));
      if (!shared_with_experts) QUARRY_RETURN_IF_ERROR(SharedDown(mw, shared_, 2 * Is, T));
    } else {
      QUARRY_RETURN_IF_ERROR(ops_->Zero(mix_, T * H * sizeof(float)));
    }
    if (E == 0) return absl::OkStatus();
    QUARRY_RETURN_IF_ERROR(ops_->Linear(OnMoeInput(layer, mw.router, router_, E, T)));  // [T, E]
  }
  TopKSoftmaxParams tk{router_logits, T, E, K, experts_, gates_};
  tk.ld = router_ld;
  if (ep_) {
    QUARRY_RETURN_IF_ERROR(ops_->TopKSoftmax(tk));
    return MoeExchange(layer, T);
  }
  const int32_t experts = static_cast<int32_t>(E);
  // Top-k + permutation: run by the experts' first product (GroupedLinearParams::route; at decode inside its
  // launch).
  const MoeRouteParams route{tk, {experts_, T, K, 0, experts, offsets_, row_token_, pair_row_}};
  // Folded post-mixer norm: the experts read the residual rows and normalise them themselves.
  const float* x_norm = fold_post_norm_ ? weights_->layers[layer].post_attention_layernorm : nullptr;
  // On the few-rows path the down projection runs the AddRmsNorm after the block (combine + residual add + the
  // next norm) in its launch, for up to kGroupedAfterMaxTokens tokens.
  *after_done = !many && T <= kGroupedAfterMaxTokens;
  const AddRmsNormParams after = *after_done ? AfterMoe(layer, s) : AddRmsNormParams{};
  QUARRY_RETURN_IF_ERROR(Experts(mw, E, fold_post_norm_ ? h_ : u_, row_token_, offsets_, T * K, gu_, act2_, yo_,
                                 many ? U16In(mw.input_linear) : nullptr, many ? act16_ : nullptr,
                                 shared_with_experts ? &shared_down : nullptr, &route, x_norm,
                                 *after_done ? &after : nullptr));
  return absl::OkStatus();  // else Body's AddRmsNorm adds yo_ (routing weights gates_, rows pair_row_)
}

absl::Status DeviceModel::SharedDown(const DeviceMoeWeights& mw, const float* gate_up, int64_t ld, int64_t T) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, Is = c.shared_intermediate_size;
  if (T <= kFusedSwigluRows) {
    LinearParams lp{gate_up, ld, mw.shared_output, mix_, H, T, false};
    lp.swiglu_input = true;
    return ops_->Linear(lp);
  }
  QUARRY_RETURN_IF_ERROR(ops_->Swiglu({gate_up, ld, act_, Is, T, Is}));
  return ops_->Linear({act_, Is, mw.shared_output, mix_, H, T, false});
}

LinearParams DeviceModel::OnU(const MatrixView& w, float* y, int64_t ldy, int64_t T) const {
  LinearParams p{u_, config_.hidden_size, w, y, ldy, T, false};
  if (const uint16_t* x16 = U16In(w); x16 != nullptr) p.x16 = x16, p.ldx16 = config_.hidden_size;
  return p;
}

LinearParams DeviceModel::MixerOut(const float* x, int64_t ldx, const MatrixView& w, int64_t T) const {
  LinearParams p{x, ldx, w, mix_, config_.hidden_size, T, false};
  if (fold_post_norm_) {  // h_ += residual_multiplier * (x · wᵀ): the residual add in the product's store
    p.y = h_, p.accumulate = true, p.scale = static_cast<float>(config_.residual_multiplier);
  }
  return p;
}

LinearParams DeviceModel::OnMoeInput(int layer, const MatrixView& w, float* y, int64_t ldy, int64_t T) const {
  if (!fold_post_norm_) return OnU(w, y, ldy, T);
  LinearParams p{h_, config_.hidden_size, w, y, ldy, T, false};  // normalising the residual rows itself
  p.norm_weight = weights_->layers[layer].post_attention_layernorm;
  p.norm_eps = static_cast<float>(config_.rms_norm_eps);
  return p;
}

Copy16 DeviceModel::U16Out(int64_t T, DType dt) {
  if (T <= kCopy16Rows || dt == DType::kF32) {
    u16_dtype_ = DType::kF32;
    return {};
  }
  u16_dtype_ = dt;
  return {u16_, config_.hidden_size, dt};
}

bool DeviceModel::ManyRowsPerExpert(const DeviceMoeWeights& mw, int64_t rows, int64_t experts) const {
  return rows >= kManyRowsPerExpert * experts && mw.input_linear.dtype != DType::kF32 &&
         mw.output_linear.dtype != DType::kF32;
}

absl::Status DeviceModel::Experts(const DeviceMoeWeights& mw, int64_t experts, const float* x, const int32_t* gather,
                                  const int32_t* offsets, int64_t rows, float* gu, float* act, float* y,
                                  const uint16_t* x16, uint16_t* act16, const LinearParams* dense,
                                  const MoeRouteParams* route, const float* x_norm,
                                  const AddRmsNormParams* after) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  // Few rows per expert (decode): W_e streamed once by the small-m kernel; many (prefill): tensor cores.
  if (!ManyRowsPerExpert(mw, rows, experts)) {
    // The up projection writes the SwiGLU activations [rows, I] (in expert order) itself: each is computed once,
    // not by every warp of the down projection that reads it (gu is scratch).
    GroupedLinearParams up{x, H, gather, mw.input_linear, 2 * I, experts, offsets, rows, gu, 2 * I};
    up.swiglu_out = SwigluParams{gu, 2 * I, act, I, rows, I};
    if (route != nullptr) up.route = *route;
    if (x_norm != nullptr) up.norm_weight = x_norm, up.norm_eps = static_cast<float>(c.rms_norm_eps);
    QUARRY_RETURN_IF_ERROR(ops_->GroupedLinear(up));
    GroupedLinearParams down{act, I, nullptr, mw.output_linear, H, experts, offsets, rows, y, H};
    if (dense != nullptr) down.dense = *dense;
    if (after != nullptr) down.after = *after, down.after_counts = after_counts_, down.after_row_token = row_token_;
    return ops_->GroupedLinear(down);
  }
  if (x_norm != nullptr || after != nullptr) {
    return absl::InternalError("DeviceModel: the experts' norm prologue / after norm are for the few-rows (GEMV) "
                               "path only");
  }
  if (dense != nullptr) QUARRY_RETURN_IF_ERROR(ops_->Linear(*dense));
  if (route != nullptr) QUARRY_RETURN_IF_ERROR(ops_->MoeRoute(route->topk, route->permute));
  GroupedLinearParams up{x, H, gather, mw.input_linear, 2 * I, experts, offsets, rows, gu, 2 * I};
  up.x16 = x16, up.ldx16 = H;
  // The SwiGLU activations (and their 16-bit copy for the down projection) from the up projection itself: the
  // tensor-core epilogue computes them from its accumulators (gu is then only scratch).
  up.swiglu_out = SwigluParams{gu, 2 * I, act, I, rows, I};
  if (act16 != nullptr) up.swiglu_out.y16 = {act16, I, mw.output_linear.dtype};
  QUARRY_RETURN_IF_ERROR(ops_->GroupedLinearMany(up));
  GroupedLinearParams down{act, I, nullptr, mw.output_linear, H, experts, offsets, rows, y, H};
  if (act16 != nullptr) down.x16 = act16, down.ldx16 = I;
  return ops_->GroupedLinearMany(down);
}

absl::Status DeviceModel::Logits(const Step& s) {
  // u_ holds the final norm of every row (the last AddRmsNorm); eagerly the logit rows are gathered first
  // (into mix_, free by now). The LM head applies 1 / logits_scaling in its store (LinearParams::scale).
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  int64_t rows = s.rows;
  const float* x = u_;
  if (!s.padded) {
    rows = s.gathered;
    if (rows == 0) return absl::OkStatus();
    QUARRY_RETURN_IF_ERROR(ops_->GatherRows({u_, H, s.logit_rows, rows, H, mix_, H}));
    x = mix_;
  }
  LinearParams head{x, H, weights_->lm_head, logits_, V, rows, false};
  head.scale = static_cast<float>(1.0 / c.logits_scaling);
  return ops_->Linear(head);
}

}  // namespace quarry
