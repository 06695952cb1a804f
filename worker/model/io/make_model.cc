// make-model: Granite-4.0-H presets, the checkpoint tensor list (spec §2.1) and deterministic random weights.
//
// Weight distributions (chosen so activations stay O(1), as for the golden checkpoints):
//   embeddings                      N(0, 0.5²) for hidden_size < 256 (the golden checkpoints' choice);
//                                   N(0, 0.02²) for wider models: with tied embeddings the token's own
//                                   embedding (× embedding_multiplier) would otherwise dominate the residual
//                                   stream, and a random model would only ever repeat its last input token

//   linear weights [.., out, in]    N(0, 1/in)            (std 1/sqrt(fan_in))
//   RMSNorm / gated-norm weights    1 + N(0, 0.02²)
//   conv1d.weight [C, 1, K]         N(0, 1/K)             (std 1/sqrt(d_conv))
//   conv1d.bias, optional biases    N(0, 0.05²)
//   A_log                           log(U[1, 16])
//   D                               U[0.5, 1.5]
//   dt_bias                         softplus⁻¹(dt), dt log-uniform in [0.001, 0.1]
// Randomness is counter-based: element e of tensor t is a pure function of (seed, t, e), so the bytes do not
// depend on chunking or thread count. Normals come from Box-Muller on one 64-bit hash per element pair.
#include "worker/model/io/make_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/dtype.h"
#include "worker/model/io/safetensors_writer.h"

namespace quarry {
namespace {

constexpr int64_t kGraniteVocab = 100352;

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

enum class Init : uint8_t { kNormal, kOnePlusNormal, kALog, kD, kDtBias };

struct InitSpec {
  Init kind = Init::kNormal;
  float std = 1.0f;
};

// 24-bit uniform in (0, 1).
inline float Uniform24(uint64_t bits) { return (static_cast<float>(bits & 0xFFFFFF) + 0.5f) * (1.0f / 16777216.0f); }

template <typename T>
void Store(T* out, int64_t i, float v);
template <>
inline void Store<float>(float* out, int64_t i, float v) { out[i] = v; }
template <>
inline void Store<uint16_t>(uint16_t* out, int64_t i, float v) { out[i] = FloatToBf16(v); }
struct Half {
  uint16_t bits;
};
template <>
inline void Store<Half>(Half* out, int64_t i, float v) { out[i].bits = FloatToHalf(v); }

float UniformValue(Init kind, float u) {
  switch (kind) {
    case Init::kALog:
      return std::log(1.0f + 15.0f * u);
    case Init::kD:
      return 0.5f + u;
    case Init::kDtBias: {
      const double lo = std::log(0.001), hi = std::log(0.1);
      const double dt = std::exp(lo + static_cast<double>(u) * (hi - lo));
      return static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
    default:
      return 0.0f;
  }
}

// Elements [first, first + count) of a tensor with stream key `key`.
template <typename T>
void FillRange(InitSpec spec, uint64_t key, int64_t first, int64_t count, T* out) {
  if (spec.kind == Init::kNormal || spec.kind == Init::kOnePlusNormal) {
    const float offset = spec.kind == Init::kOnePlusNormal ? 1.0f : 0.0f;
    const float scale = spec.std;
    const int64_t p0 = first >> 1, p1 = (first + count + 1) >> 1;
#pragma omp parallel for schedule(static)
    for (int64_t p = p0; p < p1; ++p) {
      const uint64_t h = SplitMix64(key + static_cast<uint64_t>(p));
      const float r = std::sqrt(-2.0f * std::log(Uniform24(h >> 40)));
      const float theta = 6.28318530717958647692f * Uniform24(h);
      const int64_t e0 = 2 * p - first;
      if (e0 >= 0) Store(out, e0, offset + scale * r * std::cos(theta));
      if (e0 + 1 < count) Store(out, e0 + 1, offset + scale * r * std::sin(theta));
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t h = SplitMix64(key + static_cast<uint64_t>(first + i));
    Store(out, i, UniformValue(spec.kind, Uniform24(h >> 40)));
  }
}

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  InitSpec init;
};

std::vector<TensorPlan> PlanTensors(const ModelConfig& c) {
  std::vector<TensorPlan> plan;
  auto linear = [&](std::string name, std::vector<int64_t> shape) {
    const float std = 1.0f / std::sqrt(static_cast<float>(shape.back()));
    plan.push_back({std::move(name), std::move(shape), {Init::kNormal, std}});
  };
  auto norm = [&](std::string name, int64_t n) { plan.push_back({std::move(name), {n}, {Init::kOnePlusNormal, 0.02f}}); };
  auto bias = [&](std::string name, int64_t n) { plan.push_back({std::move(name), {n}, {Init::kNormal, 0.05f}}); };
  const int64_t H = c.hidden_size;

  const float embed_std = H < 256 ? 0.5f : 0.02f;
  plan.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, {Init::kNormal, embed_std}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    norm(p + "input_layernorm.weight", H);
    if (c.layer_types[i] == LayerType::kMamba) {
      const std::string m = p + "mamba.";
      const int64_t conv = c.mamba_conv_dim(), heads = c.mamba_n_heads;
      linear(m + "in_proj.weight", {c.mamba_in_proj_dim(), H});
      if (c.mamba_proj_bias) bias(m + "in_proj.bias", c.mamba_in_proj_dim());
      plan.push_back({m + "conv1d.weight", {conv, 1, c.mamba_d_conv},
                      {Init::kNormal, 1.0f / std::sqrt(static_cast<float>(c.mamba_d_conv))}});
      if (c.mamba_conv_bias) bias(m + "conv1d.bias", conv);
      plan.push_back({m + "dt_bias", {heads}, {Init::kDtBias, 0}});
      plan.push_back({m + "A_log", {heads}, {Init::kALog, 0}});
      plan.push_back({m + "D", {heads}, {Init::kD, 0}});
      norm(m + "norm.weight", c.mamba_d_inner());
      linear(m + "out_proj.weight", {H, c.mamba_d_inner()});
      if (c.mamba_proj_bias) bias(m + "out_proj.bias", H);
    } else {
      const std::string a = p + "self_attn.";
      const int64_t q = c.num_attention_heads * c.head_dim(), kv = c.num_key_value_heads * c.head_dim();
      const std::pair<const char*, int64_t> projs[] = {{"q_proj", q}, {"k_proj", kv}, {"v_proj", kv}};
      for (const auto& [name, out] : projs) {
        linear(a + name + ".weight", {out, H});
        if (c.attention_bias) bias(a + name + ".bias", out);
      }
      linear(a + "o_proj.weight", {H, q});
      if (c.attention_bias) bias(a + "o_proj.bias", H);
    }
    norm(p + "post_attention_layernorm.weight", H);
    const int64_t E = c.num_local_experts, I = c.intermediate_size;
    linear(p + "block_sparse_moe.router.layer.weight", {E, H});
    linear(p + "block_sparse_moe.input_linear.weight", {E, 2 * I, H});
    linear(p + "block_sparse_moe.output_linear.weight", {E, H, I});
    if (c.shared_intermediate_size > 0) {
      linear(p + "shared_mlp.input_linear.weight", {2 * c.shared_intermediate_size, H});
      linear(p + "shared_mlp.output_linear.weight", {H, c.shared_intermediate_size});
    }
  }
  norm("model.norm.weight", H);
  return plan;
}

ModelConfig CommonConfig() {
  ModelConfig c;
  c.num_local_experts = 16;
  c.num_experts_per_tok = 4;
  c.mamba_d_conv = 4;
  c.mamba_expand = 2;
  c.embedding_multiplier = 12;
  c.residual_multiplier = 0.22;
  c.logits_scaling = 6;
  c.rms_norm_eps = 1e-5;
  return c;
}

std::vector<LayerType> LayersWithAttentionAt(int64_t n, std::vector<int64_t> attention) {
  std::vector<LayerType> types(n, LayerType::kMamba);
  for (int64_t i : attention) types[i] = LayerType::kAttention;
  return types;
}

// Special token ids: Granite's for the Granite vocabulary, else 0 (bos), 1 (eos), 2 (pad) as in tiny-b.
void SetTokenIds(ModelConfig& c) {
  if (c.vocab_size == kGraniteVocab) {
    c.bos_token_id = 100257;
    c.eos_token_id = {100257};
    c.pad_token_id = 100256;
  } else {
    c.bos_token_id = 0;
    c.eos_token_id = {1};
    c.pad_token_id = 2;
  }
}

const char* TorchDtype(StDType t) {
  switch (t) {
    case StDType::kF32: return "float32";
    case StDType::kF16: return "float16";
    default: return "bfloat16";
  }
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(from, ec)) {
    return absl::NotFoundError(absl::StrCat("tokenizer file ", from, " does not exist"));
  }
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot copy ", from, " to ", to, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> PresetNames() { return {"tiny", "small", "granite-4.0-h-tiny"}; }

absl::StatusOr<ModelConfig> PresetConfig(const std::string& preset) {
  ModelConfig c = CommonConfig();
  if (preset == "tiny") {
    // Golden tiny-b's shape.
    c.vocab_size = 512;
    c.hidden_size = 96;
    c.num_hidden_layers = 6;
    c.layer_types = LayersWithAttentionAt(6, {2, 4});
    c.intermediate_size = 24;
    c.shared_intermediate_size = 40;
    c.mamba_n_heads = 12;
    c.mamba_d_head = 16;
    c.mamba_d_state = 32;
    c.mamba_n_groups = 2;
    c.mamba_chunk_size = 8;
    c.num_attention_heads = 6;
    c.num_key_value_heads = 2;
    c.attention_multiplier = 0.0625;
    c.max_position_embeddings = 4096;
  } else if (preset == "small") {
    c.vocab_size = kGraniteVocab;
    c.hidden_size = 512;
    c.num_hidden_layers = 8;
    c.layer_types = LayersWithAttentionAt(8, {3, 7});
    c.intermediate_size = 256;
    c.shared_intermediate_size = 512;
    c.mamba_n_heads = 16;
    c.mamba_d_head = 64;
    c.mamba_d_state = 64;
    c.mamba_n_groups = 1;
    c.mamba_chunk_size = 256;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.attention_multiplier = 1.0 / 64;
    c.max_position_embeddings = 131072;
  } else if (preset == "granite-4.0-h-tiny") {
    // Spec §1.1.
    c.vocab_size = kGraniteVocab;
    c.hidden_size = 1536;
    c.num_hidden_layers = 40;
    c.layer_types = LayersWithAttentionAt(40, {5, 15, 25, 35});
    c.intermediate_size = 512;
    c.shared_intermediate_size = 1024;
    c.num_local_experts = 64;
    c.num_experts_per_tok = 6;
    c.mamba_n_heads = 48;
    c.mamba_d_head = 64;
    c.mamba_d_state = 128;
    c.mamba_n_groups = 1;
    c.mamba_chunk_size = 256;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 4;
    c.attention_multiplier = 0.0078125;
    c.max_position_embeddings = 131072;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown model preset '", preset, "' (known: ",
                                                   absl::StrJoin(PresetNames(), ", "), ")"));
  }
  SetTokenIds(c);
  return c;
}

std::vector<TensorToWrite> ModelTensorList(const ModelConfig& config, StDType dtype, uint64_t seed) {
  std::vector<TensorToWrite> out;
  const std::vector<TensorPlan> plan = PlanTensors(config);
  for (size_t t = 0; t < plan.size(); ++t) {
    TensorToWrite w;
    w.name = plan[t].name;
    w.dtype = dtype;
    w.shape = plan[t].shape;
    const uint64_t key = SplitMix64(seed ^ SplitMix64(0xC0FFEEull + t));
    const InitSpec init = plan[t].init;
    w.fill = [init, key, dtype](int64_t first, int64_t count, void* dst) {
      switch (dtype) {
        case StDType::kF32: FillRange(init, key, first, count, static_cast<float*>(dst)); break;
        case StDType::kF16: FillRange(init, key, first, count, static_cast<Half*>(dst)); break;
        default: FillRange(init, key, first, count, static_cast<uint16_t*>(dst)); break;
      }
    };
    out.push_back(std::move(w));
  }
  return out;
}

uint64_t ModelParameterCount(const ModelConfig& config) {
  uint64_t n = 0;
  for (const TensorPlan& t : PlanTensors(config)) {
    uint64_t k = 1;
    for (int64_t d : t.shape) k *= static_cast<uint64_t>(d);
    n += k;
  }
  return n;
}

absl::Status MakeModel(const MakeModelOptions& options) {
  absl::StatusOr<ModelConfig> config = PresetConfig(options.preset);
  if (!config.ok()) return config.status();
  if (options.vocab_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size must be positive, got ", options.vocab_size));
  }
  if (options.vocab_size > 0) {
    config->vocab_size = options.vocab_size;
    SetTokenIds(*config);
  }
  if (options.edit_config) options.edit_config(&*config);
  if (options.dtype != StDType::kF32 && options.dtype != StDType::kBF16 && options.dtype != StDType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("make-model dtype must be F32, BF16 or F16, got ", StDTypeName(options.dtype)));
  }
  if (options.out_dir.empty()) return absl::InvalidArgumentError("make-model needs an output directory");
  config->torch_dtype = TorchDtype(options.dtype);
  absl::Status s = ValidateModelConfig(*config);
  if (!s.ok()) return s;

  WriteOptions write;
  write.max_shard_bytes = options.max_shard_bytes;
  write.progress = options.progress;
  s = WriteSafetensors(options.out_dir, ModelTensorList(*config, options.dtype, options.seed), write);
  if (!s.ok()) return s;

  const std::string config_path = options.out_dir + "/config.json";
  {
    std::ofstream out(config_path + ".tmp", std::ios::binary | std::ios::trunc);
    out << ModelConfigToJson(*config);
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", config_path));
  }
  std::error_code ec;
  std::filesystem::rename(config_path + ".tmp", config_path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot write ", config_path, ": ", ec.message()));

  if (config->vocab_size == kGraniteVocab && !options.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      s = CopyFile(options.tokenizer_dir + "/" + f, options.out_dir + "/" + f);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
