// `quarry make-model`: presets of the Granite-4.0-H architecture and random-weight checkpoints.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/config.h"
#include "worker/model/io/safetensors.h"
#include "worker/model/io/safetensors_writer.h"

namespace quarry {

// "tiny" (a few MB, like golden tiny-b), "small" (a ~100M-parameter default for the local quick start),
// "granite-4.0-h-tiny" (the real architecture: 6.94B parameters).
absl::StatusOr<ModelConfig> PresetConfig(const std::string& preset);
std::vector<std::string> PresetNames();

struct MakeModelOptions {
  std::string preset = "tiny";
  int64_t vocab_size = 0;  // 0 = the preset's
  StDType dtype = StDType::kBF16;
  uint64_t seed = 0;
  std::string out_dir;
  std::string tokenizer_dir;  // copied into out_dir when vocab_size == 100352 and non-empty
  uint64_t max_shard_bytes = 4ull << 30;
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Optional: changes the preset's config before it is validated and written (tests: a shape of their own).
  std::function<void(ModelConfig*)> edit_config;
};

// Writes config.json, model.safetensors (or shards + index) and, for the Granite vocabulary, the
// tokenizer files. Weights are drawn as in the golden checkpoints so activations stay O(1):
// embeddings N(0, 0.5), linear weights N(0, 1/fan_in), norms 1 + N(0, 0.02)... (see make_model.cc).
absl::Status MakeModel(const MakeModelOptions& options);

// Every tensor of a checkpoint for `config` (spec §2.1; no lm_head.weight: tied), in layer order, each with a
// fill callback drawing the random weights above from (seed, tensor index, element index) only.
std::vector<TensorToWrite> ModelTensorList(const ModelConfig& config, StDType dtype, uint64_t seed);
// Sum of the element counts of ModelTensorList(config, ...), computed without drawing anything.
uint64_t ModelParameterCount(const ModelConfig& config);

}  // namespace quarry
