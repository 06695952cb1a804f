// Engine equivalences on a model with deliberately odd sizes (hidden 36, 3 query heads / 1 KV head of 12,
// 6 Mamba heads of 12 in 3 groups, state 5, conv 3, SSD chunk 5, 5 experts top-3 of width 7, shared 9,
// vocab 37, attention first), f32 and bf16 weights: chunked prefill == one pass == token-by-token decode.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/generator.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/io/make_model.h"
#include "worker/model/io/safetensors_writer.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry {
namespace {

namespace fs = std::filesystem;

ModelConfig OddConfig() {
  ModelConfig c;
  c.vocab_size = 37;
  c.hidden_size = 36;
  c.num_hidden_layers = 3;
  c.layer_types = {LayerType::kAttention, LayerType::kMamba, LayerType::kMamba};
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.intermediate_size = 7;
  c.shared_intermediate_size = 9;
  c.num_local_experts = 5;
  c.num_experts_per_tok = 3;
  c.mamba_n_heads = 6;
  c.mamba_d_head = 12;
  c.mamba_d_state = 5;
  c.mamba_n_groups = 3;
  c.mamba_d_conv = 3;
  c.mamba_expand = 2;
  c.mamba_chunk_size = 5;
  c.attention_multiplier = 1.0 / 12;
  c.embedding_multiplier = 12;
  c.residual_multiplier = 0.22;
  c.logits_scaling = 6;
  c.max_position_embeddings = 4096;
  c.eos_token_id = {1};
  return c;
}

class OddSizesTest : public ::testing::TestWithParam<StDType> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("quarry_odd_" + std::to_string(getpid()) + "_" + StDTypeName(GetParam()));
    fs::create_directories(dir_);
    const ModelConfig c = OddConfig();
    ASSERT_TRUE(ValidateModelConfig(c).ok()) << ValidateModelConfig(c);
    std::ofstream(dir_ / "config.json") << ModelConfigToJson(c);
    ASSERT_TRUE(WriteSafetensorsFile((dir_ / "model.safetensors").string(), ModelTensorList(c, GetParam(), 3)).ok());
    auto w = LoadModelDir(dir_.string(), {});
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::unique_ptr<ModelWeights> weights_;
};

TEST_P(OddSizesTest, ChunkedPrefillAndDecodeEqualOnePass) {
  Model model(*weights_);
  const int64_t V = 37, n = 41;
  std::mt19937 rng(11);
  std::vector<int32_t> ids(n);
  for (int32_t& t : ids) t = static_cast<int32_t>(rng() % V);

  SequenceState ref_seq(model.config(), n);
  std::vector<float> full(n * V);
  ForwardSegment all{ref_seq.view(), ids.data(), n, LogitsMode::kAll};
  ASSERT_TRUE(model.Forward({&all, 1}, full.data()).ok());
  for (float v : full) ASSERT_TRUE(std::isfinite(v));

  for (int64_t chunk : {1, 2, 3, 4, 5, 6, 7, 40}) {
    SequenceState seq(model.config(), n);
    std::vector<float> out(n * V);
    for (int64_t off = 0; off < n; off += chunk) {
      const int64_t m = std::min(chunk, n - off);
      ForwardSegment seg{seq.view(), ids.data() + off, m, LogitsMode::kAll};
      ASSERT_TRUE(model.Forward({&seg, 1}, out.data() + off * V).ok());
    }
    EXPECT_LT(MaxAbsDiff(full.data(), out.data(), n * V), 2e-5) << "chunk " << chunk;
  }
  for (int64_t ssd_chunk : {1, 2, 3, 64}) {
    Model other(*weights_, {ssd_chunk});
    SequenceState seq(model.config(), n);
    std::vector<float> out(n * V);
    ForwardSegment seg{seq.view(), ids.data(), n, LogitsMode::kAll};
    ASSERT_TRUE(other.Forward({&seg, 1}, out.data()).ok());
    EXPECT_LT(MaxAbsDiff(full.data(), out.data(), n * V), 2e-5) << "ssd chunk " << ssd_chunk;
  }
}

TEST_P(OddSizesTest, GreedyBatchEqualsAlone) {
  Model model(*weights_);
  GenerateOptions opts;
  opts.max_new_tokens = 9;
  opts.prefill_chunk = 4;
  opts.ignore_eos = true;
  std::vector<std::vector<int32_t>> prompts = {{3, 4, 5}, {7}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}};
  auto batch = GreedyGenerateBatch(model, prompts, opts);
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = GreedyGenerate(model, prompts[i], opts);
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ(alone->tokens, (*batch)[i].tokens) << "prompt " << i;
    EXPECT_EQ(alone->tokens.size(), 9u);
    EXPECT_EQ(alone->finish_reason, "length");
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OddSizesTest, ::testing::Values(StDType::kF32, StDType::kBF16),
                         [](const auto& info) { return std::string(StDTypeName(info.param)); });

}  // namespace
}  // namespace quarry
