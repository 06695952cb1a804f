// Parsing and validation of GraniteMoeHybrid config.json (both the released and the transformers 5.x style).
#include "worker/model/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/match.h"
#include "kernels/status_macros.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

using Json = nlohmann::json;

class Reader {
 public:
  Reader(const Json& j, absl::string_view source) : j_(j), source_(source) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": config field '", field, "' ", what));
  }

  // Required integer.
  absl::Status Int(const char* field, int64_t* out, bool required = true) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) {
      return required ? Error(field, "is missing") : absl::OkStatus();
    }
    if (it->is_number_integer() || it->is_number_unsigned()) {
      *out = it->get<int64_t>();
      return absl::OkStatus();
    }
    if (it->is_number_float()) {
      double v = it->get<double>();
      if (std::floor(v) == v && std::abs(v) < 9e15) {
        *out = static_cast<int64_t>(v);
        return absl::OkStatus();
      }
    }
    return Error(field, absl::StrCat("must be an integer, got ", it->dump()));
  }

  absl::Status Float(const char* field, double* out, bool required = true) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) {
      return required ? Error(field, "is missing") : absl::OkStatus();
    }
    if (!it->is_number()) return Error(field, absl::StrCat("must be a number, got ", it->dump()));
    *out = it->get<double>();
    if (!std::isfinite(*out)) return Error(field, absl::StrCat("must be finite, got ", it->dump()));
    return absl::OkStatus();
  }

  absl::Status Bool(const char* field, bool* out) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_boolean()) return Error(field, absl::StrCat("must be true or false, got ", it->dump()));
    *out = it->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* field, std::string* out) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_string()) return Error(field, absl::StrCat("must be a string, got ", it->dump()));
    *out = it->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const Json& j_;
  absl::string_view source_;
};

// A float written either as a JSON number or as transformers' {"__float__": "Infinity"}.
bool ParseLooseFloat(const Json& v, double* out) {
  if (v.is_number()) {
    *out = v.get<double>();
    return true;
  }
  if (v.is_object() && v.size() == 1 && v.contains("__float__") && v["__float__"].is_string()) {
    std::string s = v["__float__"].get<std::string>();
    if (s == "Infinity" || s == "inf") *out = std::numeric_limits<double>::infinity();
    else if (s == "-Infinity" || s == "-inf") *out = -std::numeric_limits<double>::infinity();
    else return false;
    return true;
  }
  return false;
}

absl::Status Invalid(absl::string_view source, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", msg));
}

}  // namespace

int64_t ModelConfig::num_mamba_layers() const {
  int64_t n = 0;
  for (LayerType t : layer_types) n += t == LayerType::kMamba;
  return n;
}

int64_t ModelConfig::num_attention_layers() const {
  return static_cast<int64_t>(layer_types.size()) - num_mamba_layers();
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text_in, std::string_view source_in) {
  absl::string_view json_text(json_text_in.data(), json_text_in.size());
  absl::string_view source(source_in.data(), source_in.size());
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid(source, "config.json is not valid JSON");
  if (!j.is_object()) return Invalid(source, "config.json must be a JSON object");
  Reader r(j, source);
  ModelConfig c;

  QUARRY_RETURN_IF_ERROR(r.String("model_type", &c.model_type));
  if (c.model_type != "granitemoehybrid") {
    return r.Error("model_type", absl::StrCat("is '", c.model_type,
                                              "'; only 'granitemoehybrid' (Granite-4.0-H) is supported"));
  }
  QUARRY_RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size));
  QUARRY_RETURN_IF_ERROR(r.Int("hidden_size", &c.hidden_size));
  QUARRY_RETURN_IF_ERROR(r.Int("num_hidden_layers", &c.num_hidden_layers));
  QUARRY_RETURN_IF_ERROR(r.Int("num_attention_heads", &c.num_attention_heads));
  QUARRY_RETURN_IF_ERROR(r.Int("num_key_value_heads", &c.num_key_value_heads));
  QUARRY_RETURN_IF_ERROR(r.Int("intermediate_size", &c.intermediate_size));
  QUARRY_RETURN_IF_ERROR(r.Int("shared_intermediate_size", &c.shared_intermediate_size, false));
  QUARRY_RETURN_IF_ERROR(r.Int("num_local_experts", &c.num_local_experts, false));
  QUARRY_RETURN_IF_ERROR(r.Int("num_experts_per_tok", &c.num_experts_per_tok, false));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_n_heads", &c.mamba_n_heads));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_d_head", &c.mamba_d_head));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_d_state", &c.mamba_d_state));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_n_groups", &c.mamba_n_groups, false));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_d_conv", &c.mamba_d_conv, false));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_expand", &c.mamba_expand, false));
  QUARRY_RETURN_IF_ERROR(r.Int("mamba_chunk_size", &c.mamba_chunk_size, false));
  QUARRY_RETURN_IF_ERROR(r.Bool("mamba_conv_bias", &c.mamba_conv_bias));
  QUARRY_RETURN_IF_ERROR(r.Bool("mamba_proj_bias", &c.mamba_proj_bias));
  QUARRY_RETURN_IF_ERROR(r.Bool("attention_bias", &c.attention_bias));
  QUARRY_RETURN_IF_ERROR(r.Float("attention_multiplier", &c.attention_multiplier, false));
  QUARRY_RETURN_IF_ERROR(r.Float("embedding_multiplier", &c.embedding_multiplier, false));
  QUARRY_RETURN_IF_ERROR(r.Float("residual_multiplier", &c.residual_multiplier, false));
  QUARRY_RETURN_IF_ERROR(r.Float("logits_scaling", &c.logits_scaling, false));
  QUARRY_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps, false));
  QUARRY_RETURN_IF_ERROR(r.Int("max_position_embeddings", &c.max_position_embeddings, false));
  QUARRY_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  QUARRY_RETURN_IF_ERROR(r.String("position_embedding_type", &c.position_embedding_type));
  QUARRY_RETURN_IF_ERROR(r.String("hidden_act", &c.hidden_act));
  QUARRY_RETURN_IF_ERROR(r.String("torch_dtype", &c.torch_dtype));
  QUARRY_RETURN_IF_ERROR(r.String("dtype", &c.torch_dtype));  // transformers 5.x spelling
  QUARRY_RETURN_IF_ERROR(r.Int("bos_token_id", &c.bos_token_id, false));
  QUARRY_RETURN_IF_ERROR(r.Int("pad_token_id", &c.pad_token_id, false));

  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_number_integer()) {
      c.eos_token_id.push_back(it->get<int64_t>());
    } else if (it->is_array()) {
      for (const Json& v : *it) {
        if (!v.is_number_integer()) return r.Error("eos_token_id", absl::StrCat("has a non-integer entry ", v.dump()));
        c.eos_token_id.push_back(v.get<int64_t>());
      }
    } else {
      return r.Error("eos_token_id", absl::StrCat("must be an integer or a list of integers, got ", it->dump()));
    }
  }

  auto lt = j.find("layer_types");
  if (lt == j.end() || !lt->is_array()) {
    return r.Error("layer_types", "is missing or not a list (expected one of mamba/attention per layer)");
  }
  for (size_t i = 0; i < lt->size(); ++i) {
    const Json& v = (*lt)[i];
    std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    if (s == "mamba" || s == "linear_attention") c.layer_types.push_back(LayerType::kMamba);
    else if (s == "attention" || s == "full_attention") c.layer_types.push_back(LayerType::kAttention);
    else return r.Error("layer_types", absl::StrCat("entry ", i, " is '", s,
                                                    "' (supported: mamba, attention, linear_attention, full_attention)"));
  }

  // time_step_limit: only the no-op clamp (0, inf) of every released checkpoint is supported.
  if (auto it = j.find("time_step_limit"); it != j.end() && !it->is_null()) {
    double lo = 0, hi = 0;
    if (!it->is_array() || it->size() != 2 || !ParseLooseFloat((*it)[0], &lo) || !ParseLooseFloat((*it)[1], &hi)) {
      return r.Error("time_step_limit", absl::StrCat("must be a pair of numbers, got ", it->dump()));
    }
    if (lo > 0.0 || !std::isinf(hi) || hi < 0) {
      return r.Error("time_step_limit", absl::StrCat("is ", it->dump(), "; only [0.0, Infinity] is supported"));
    }
  }
  // Rope fields are ignored for NoPE; a rope model is refused below.
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null() && c.position_embedding_type != "nope") {
    return r.Error("rope_scaling", "is set but rotary position embeddings are not supported");
  }

  QUARRY_RETURN_IF_ERROR(ValidateModelConfig(c));
  // Prefix errors from ValidateModelConfig with the source.
  return c;
}

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto bad = [](absl::string_view field, auto value, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("config field '", field, "' = ", value, ": ", why));
  };
  auto positive = [&](absl::string_view field, int64_t v) -> absl::Status {
    return v > 0 ? absl::OkStatus() : bad(field, v, "must be positive");
  };
  QUARRY_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  QUARRY_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  QUARRY_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  QUARRY_RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  QUARRY_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
  QUARRY_RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  QUARRY_RETURN_IF_ERROR(positive("shared_intermediate_size", c.shared_intermediate_size));
  QUARRY_RETURN_IF_ERROR(positive("mamba_n_heads", c.mamba_n_heads));
  QUARRY_RETURN_IF_ERROR(positive("mamba_d_head", c.mamba_d_head));
  QUARRY_RETURN_IF_ERROR(positive("mamba_d_state", c.mamba_d_state));
  QUARRY_RETURN_IF_ERROR(positive("mamba_n_groups", c.mamba_n_groups));
  QUARRY_RETURN_IF_ERROR(positive("mamba_d_conv", c.mamba_d_conv));
  QUARRY_RETURN_IF_ERROR(positive("mamba_expand", c.mamba_expand));
  QUARRY_RETURN_IF_ERROR(positive("mamba_chunk_size", c.mamba_chunk_size));
  QUARRY_RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (c.vocab_size > (int64_t{1} << 31) - 1) return bad("vocab_size", c.vocab_size, "must fit in int32");
  if (static_cast<int64_t>(c.layer_types.size()) != c.num_hidden_layers) {
    return bad("num_hidden_layers", c.num_hidden_layers,
               absl::StrCat("does not match the ", c.layer_types.size(), " entries of layer_types"));
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    return bad("num_attention_heads", c.num_attention_heads,
               absl::StrCat("does not divide hidden_size ", c.hidden_size));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return bad("num_key_value_heads", c.num_key_value_heads,
               absl::StrCat("does not divide num_attention_heads ", c.num_attention_heads));
  }
  if (c.mamba_n_heads % c.mamba_n_groups != 0) {
    return bad("mamba_n_groups", c.mamba_n_groups, absl::StrCat("does not divide mamba_n_heads ", c.mamba_n_heads));
  }
  if (c.mamba_n_heads * c.mamba_d_head != c.mamba_expand * c.hidden_size) {
    return bad("mamba_d_head", c.mamba_d_head,
               absl::StrCat("mamba_n_heads * mamba_d_head (", c.mamba_n_heads * c.mamba_d_head,
                            ") must equal mamba_expand * hidden_size (", c.mamba_expand * c.hidden_size, ")"));
  }
  if (c.num_local_experts < 0) return bad("num_local_experts", c.num_local_experts, "must not be negative");
  if (c.num_local_experts > 0 &&
      (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_local_experts)) {
    return bad("num_experts_per_tok", c.num_experts_per_tok,
               absl::StrCat("must be in [1, num_local_experts = ", c.num_local_experts, "]"));
  }
  if (c.position_embedding_type != "nope") {
    return bad("position_embedding_type", "'" + c.position_embedding_type + "'",
               "only 'nope' (no positional encoding, as in Granite-4.0-H) is supported");
  }
  if (c.hidden_act != "silu") return bad("hidden_act", "'" + c.hidden_act + "'", "only 'silu' is supported");
  if (c.attention_bias) return bad("attention_bias", "true", "attention biases are not supported");
  if (c.mamba_proj_bias) return bad("mamba_proj_bias", "true", "Mamba projection biases are not supported");
  if (!(c.rms_norm_eps > 0)) return bad("rms_norm_eps", c.rms_norm_eps, "must be positive");
  if (!(c.logits_scaling != 0)) return bad("logits_scaling", c.logits_scaling, "must not be zero");
  for (int64_t id : c.eos_token_id) {
    if (id < 0 || id >= c.vocab_size) return bad("eos_token_id", id, "is outside the vocabulary");
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<ModelConfig> c = ParseModelConfig(ss.str(), path);
  if (!c.ok() && !absl::StrContains(c.status().message(), path)) {
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  Json j = Json::object();
  j["architectures"] = {"GraniteMoeHybridForCausalLM"};
  j["model_type"] = c.model_type;
  j["attention_bias"] = c.attention_bias;
  j["attention_dropout"] = 0.0;
  j["attention_multiplier"] = c.attention_multiplier;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id.size() == 1) j["eos_token_id"] = c.eos_token_id[0];
  else if (!c.eos_token_id.empty()) j["eos_token_id"] = c.eos_token_id;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  j["embedding_multiplier"] = c.embedding_multiplier;
  j["hidden_act"] = c.hidden_act;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  Json types = Json::array();
  for (LayerType t : c.layer_types) types.push_back(t == LayerType::kMamba ? "mamba" : "attention");
  j["layer_types"] = types;
  j["logits_scaling"] = c.logits_scaling;
  j["mamba_chunk_size"] = c.mamba_chunk_size;
  j["mamba_conv_bias"] = c.mamba_conv_bias;
  j["mamba_d_conv"] = c.mamba_d_conv;
  j["mamba_d_head"] = c.mamba_d_head;
  j["mamba_d_state"] = c.mamba_d_state;
  j["mamba_expand"] = c.mamba_expand;
  j["mamba_n_groups"] = c.mamba_n_groups;
  j["mamba_n_heads"] = c.mamba_n_heads;
  j["mamba_proj_bias"] = c.mamba_proj_bias;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["normalization_function"] = "rmsnorm";
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["num_local_experts"] = c.num_local_experts;
  j["position_embedding_type"] = c.position_embedding_type;
  j["residual_multiplier"] = c.residual_multiplier;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = 10000;
  j["shared_intermediate_size"] = c.shared_intermediate_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j.dump(2) + "\n";
}

}  // namespace quarry
