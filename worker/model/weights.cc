// Builds ModelWeights from a checkpoint: tensor names and shapes of spec §2.1, checked before use.
#include "worker/model/weights.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {
namespace {

const std::vector<StDType> kFloatTypes = {StDType::kF32, StDType::kBF16, StDType::kF16};

DType ToDType(StDType t) {
  switch (t) {
    case StDType::kBF16: return DType::kBF16;
    case StDType::kF16: return DType::kF16;
    default: return DType::kF32;
  }
}

class Loader {
 public:
  Loader(const Checkpoint& ckpt, ModelWeights* w) : ckpt_(ckpt), w_(w) {}

  absl::StatusOr<MatrixView> Matrix(const std::string& name, std::vector<int64_t> shape) {
    QUARRY_ASSIGN_OR_RETURN(TensorRef ref, ckpt_.Require(name, shape, kFloatTypes));
    MatrixView m;
    m.data = ref.info->data;
    m.dtype = ToDType(ref.info->dtype);
    m.rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) m.rows *= shape[i];
    m.cols = shape.back();
    return m;
  }

  // [E, rows, cols] tensor restricted to experts [begin, end) as a [(end-begin)*rows, cols] matrix.
  absl::StatusOr<MatrixView> Experts(const std::string& name, int64_t e, int64_t rows, int64_t cols) {
    QUARRY_ASSIGN_OR_RETURN(MatrixView m, Matrix(name, {e, rows, cols}));
    MatrixView local = m.SliceRows(int64_t{w_->expert_begin} * rows,
                                   int64_t{w_->expert_end - w_->expert_begin} * rows);
    w_->mapped_bytes += local.bytes();
    return local;
  }

  absl::StatusOr<MatrixView> Dense(const std::string& name, std::vector<int64_t> shape) {
    QUARRY_ASSIGN_OR_RETURN(MatrixView m, Matrix(name, std::move(shape)));
    w_->mapped_bytes += m.bytes();
    return m;
  }

  absl::StatusOr<std::vector<float>> Vector(const std::string& name, std::vector<int64_t> shape) {
    QUARRY_ASSIGN_OR_RETURN(MatrixView m, Matrix(name, shape));
    std::vector<float> out(m.rows * m.cols);
    for (int64_t r = 0; r < m.rows; ++r) {
      for (int64_t c = 0; c < m.cols; ++c) out[r * m.cols + c] = MatrixAt(m, r, c);
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i])) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", ckpt_.dir(),
                                                       " has a non-finite value at element ", i));
      }
    }
    return out;
  }

 private:
  const Checkpoint& ckpt_;
  ModelWeights* w_;
};

absl::Status LoadMamba(Loader& ld, const ModelConfig& c, const std::string& p, MambaWeights* m) {
  const int64_t H = c.hidden_size, conv = c.mamba_conv_dim(), nh = c.mamba_n_heads;
  QUARRY_ASSIGN_OR_RETURN(m->in_proj, ld.Dense(p + "in_proj.weight", {c.mamba_in_proj_dim(), H}));
  QUARRY_ASSIGN_OR_RETURN(m->conv_weight, ld.Vector(p + "conv1d.weight", {conv, 1, c.mamba_d_conv}));
  if (c.mamba_conv_bias) {
    QUARRY_ASSIGN_OR_RETURN(m->conv_bias, ld.Vector(p + "conv1d.bias", {conv}));
  }
  QUARRY_ASSIGN_OR_RETURN(m->dt_bias, ld.Vector(p + "dt_bias", {nh}));
  QUARRY_ASSIGN_OR_RETURN(std::vector<float> a_log, ld.Vector(p + "A_log", {nh}));
  m->a.resize(nh);
  for (int64_t h = 0; h < nh; ++h) m->a[h] = -std::exp(a_log[h]);
  QUARRY_ASSIGN_OR_RETURN(m->d, ld.Vector(p + "D", {nh}));
  QUARRY_ASSIGN_OR_RETURN(m->norm, ld.Vector(p + "norm.weight", {c.mamba_d_inner()}));
  QUARRY_ASSIGN_OR_RETURN(m->out_proj, ld.Dense(p + "out_proj.weight", {H, c.mamba_d_inner()}));
  return absl::OkStatus();
}

absl::Status LoadAttention(Loader& ld, const ModelConfig& c, const std::string& p, AttentionWeights* a) {
  const int64_t H = c.hidden_size, dh = c.head_dim();
  QUARRY_ASSIGN_OR_RETURN(a->q_proj, ld.Dense(p + "q_proj.weight", {c.num_attention_heads * dh, H}));
  QUARRY_ASSIGN_OR_RETURN(a->k_proj, ld.Dense(p + "k_proj.weight", {c.num_key_value_heads * dh, H}));
  QUARRY_ASSIGN_OR_RETURN(a->v_proj, ld.Dense(p + "v_proj.weight", {c.num_key_value_heads * dh, H}));
  QUARRY_ASSIGN_OR_RETURN(a->o_proj, ld.Dense(p + "o_proj.weight", {H, c.num_attention_heads * dh}));
  return absl::OkStatus();
}

absl::Status LoadMoe(Loader& ld, const ModelConfig& c, const std::string& p, MoeWeights* m) {
  const int64_t H = c.hidden_size, E = c.num_local_experts, I = c.intermediate_size;
  if (E > 0) {
    QUARRY_ASSIGN_OR_RETURN(m->router, ld.Dense(p + "block_sparse_moe.router.layer.weight", {E, H}));
    QUARRY_ASSIGN_OR_RETURN(m->input_linear, ld.Experts(p + "block_sparse_moe.input_linear.weight", E, 2 * I, H));
    QUARRY_ASSIGN_OR_RETURN(m->output_linear, ld.Experts(p + "block_sparse_moe.output_linear.weight", E, H, I));
  }
  const int64_t Is = c.shared_intermediate_size;
  QUARRY_ASSIGN_OR_RETURN(m->shared_input, ld.Dense(p + "shared_mlp.input_linear.weight", {2 * Is, H}));
  QUARRY_ASSIGN_OR_RETURN(m->shared_output, ld.Dense(p + "shared_mlp.output_linear.weight", {H, Is}));
  return absl::OkStatus();
}

// Touches one byte per page of every mapped range so the first step does not pay for disk reads.
void Prefault(const ModelWeights& w, const WeightLoadOptions& options) {
  std::vector<MatrixView> all = {w.embed_tokens};
  if (w.lm_head.data != w.embed_tokens.data) all.push_back(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    if (l.type == LayerType::kMamba) {
      all.push_back(l.mamba.in_proj);
      all.push_back(l.mamba.out_proj);
    } else {
      all.insert(all.end(), {l.attention.q_proj, l.attention.k_proj, l.attention.v_proj, l.attention.o_proj});
    }
    all.insert(all.end(), {l.moe.router, l.moe.input_linear, l.moe.output_linear, l.moe.shared_input,
                           l.moe.shared_output});
  }
  uint64_t total = 0, done = 0;
  for (const MatrixView& m : all) total += m.data ? m.bytes() : 0;
  volatile uint8_t sink = 0;
  for (const MatrixView& m : all) {
    if (!m.data) continue;
    const uint8_t* p = static_cast<const uint8_t*>(m.data);
    uint8_t acc = 0;
    for (int64_t i = 0; i < m.bytes(); i += 4096) acc ^= p[i];
    sink = sink ^ acc;
    done += m.bytes();
    if (options.progress) options.progress(done, total);
  }
  (void)sink;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const ModelConfig& config,
                                                               std::unique_ptr<Checkpoint> checkpoint,
                                                               const WeightLoadOptions& options) {
  QUARRY_RETURN_IF_ERROR(ValidateModelConfig(config));
  auto w = std::make_unique<ModelWeights>();
  w->config = config;
  const int64_t E = config.num_local_experts;
  w->expert_begin = options.expert_begin;
  w->expert_end = options.expert_end < 0 ? static_cast<int32_t>(E) : options.expert_end;
  if (w->expert_begin < 0 || w->expert_begin > w->expert_end || w->expert_end > E) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", w->expert_begin, ", ", w->expert_end,
                                                   ") is outside [0, num_local_experts = ", E, ")"));
  }
  Loader ld(*checkpoint, w.get());
  const ModelConfig& c = config;
  QUARRY_ASSIGN_OR_RETURN(w->embed_tokens, ld.Dense("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}));
  if (c.tie_word_embeddings) {
    w->lm_head = w->embed_tokens;
  } else {
    QUARRY_ASSIGN_OR_RETURN(w->lm_head, ld.Dense("lm_head.weight", {c.vocab_size, c.hidden_size}));
  }
  QUARRY_ASSIGN_OR_RETURN(w->norm, ld.Vector("model.norm.weight", {c.hidden_size}));
  w->layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& l = w->layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    l.type = c.layer_types[i];
    QUARRY_ASSIGN_OR_RETURN(l.input_layernorm, ld.Vector(p + "input_layernorm.weight", {c.hidden_size}));
    QUARRY_ASSIGN_OR_RETURN(l.post_attention_layernorm,
                            ld.Vector(p + "post_attention_layernorm.weight", {c.hidden_size}));
    if (l.type == LayerType::kMamba) {
      QUARRY_RETURN_IF_ERROR(LoadMamba(ld, c, p + "mamba.", &l.mamba));
    } else {
      QUARRY_RETURN_IF_ERROR(LoadAttention(ld, c, p + "self_attn.", &l.attention));
    }
    QUARRY_RETURN_IF_ERROR(LoadMoe(ld, c, p, &l.moe));
  }
  w->checkpoint = std::move(checkpoint);
  if (options.prefault) Prefault(*w, options);
  return w;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelDir(const std::string& dir, const WeightLoadOptions& options) {
  QUARRY_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir + "/config.json"));
  QUARRY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  return LoadModelWeights(config, std::move(ckpt), options);
}

}  // namespace quarry
