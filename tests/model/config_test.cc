// ModelConfig parsing: both config.json styles of the golden checkpoints, and clear errors for what is refused.
#include "worker/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

using ::testing::HasSubstr;

TEST(ModelConfig, ParsesTransformers5Style) {
  // tiny-a: linear_attention/full_attention, time_step_limit with {"__float__": "Infinity"}, rope_parameters.
  auto c = LoadModelConfig("tests/data/golden/tiny-a/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->vocab_size, 384);
  ASSERT_EQ(c->layer_types.size(), 4u);
  EXPECT_EQ(c->layer_types[0], LayerType::kMamba);
  EXPECT_EQ(c->layer_types[1], LayerType::kAttention);
  EXPECT_EQ(c->num_mamba_layers(), 3);
  EXPECT_EQ(c->num_attention_layers(), 1);
  EXPECT_EQ(c->torch_dtype, "float32");
  EXPECT_EQ(c->mamba_chunk_size, 16);
  EXPECT_EQ(c->mamba_conv_dim(), 8 * 16 + 2 * 16);
  EXPECT_EQ(c->mamba_in_proj_dim(), 128 + 160 + 8);
  EXPECT_EQ(c->eos_token_id, std::vector<int64_t>{1});
}

TEST(ModelConfig, ParsesReleasedStyle) {
  auto c = LoadModelConfig("tests/data/golden/tiny-b/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_hidden_layers, 6);
  EXPECT_EQ(c->layer_types[2], LayerType::kAttention);
  EXPECT_EQ(c->layer_types[4], LayerType::kAttention);
  EXPECT_EQ(c->mamba_n_groups, 2);
  EXPECT_EQ(c->num_local_experts, 16);
  EXPECT_EQ(c->num_experts_per_tok, 4);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c->residual_multiplier, 0.22);
  EXPECT_DOUBLE_EQ(c->attention_multiplier, 0.0625);
}

class ConfigErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = LoadModelConfig("tests/data/golden/tiny-b/config.json");
    ASSERT_TRUE(c.ok());
    base_ = nlohmann::json::parse(ModelConfigToJson(*c));
  }
  absl::Status Parse(const nlohmann::json& j) { return ParseModelConfig(j.dump(), "cfg.json").status(); }
  nlohmann::json base_;
};

TEST_F(ConfigErrors, RoundTripOfOwnOutputParses) { EXPECT_TRUE(Parse(base_).ok()); }

TEST_F(ConfigErrors, UnknownLayerTypeNamesEntry) {
  base_["layer_types"][3] = "cross_attention";
  absl::Status st = Parse(base_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("layer_types"));
  EXPECT_THAT(st.message(), HasSubstr("entry 3 is 'cross_attention'"));
  EXPECT_THAT(st.message(), HasSubstr("cfg.json"));
}

TEST_F(ConfigErrors, RopeIsRefused) {
  base_["position_embedding_type"] = "rope";
  absl::Status st = Parse(base_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("position_embedding_type"));
  EXPECT_THAT(st.message(), HasSubstr("rope"));
}

TEST_F(ConfigErrors, RopeFieldsIgnoredForNope) {
  base_["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  base_["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "default"}};
  EXPECT_TRUE(Parse(base_).ok());
}

TEST_F(ConfigErrors, SizesThatDoNotDivide) {
  auto j = base_;
  j["num_key_value_heads"] = 4;  // 6 heads
  absl::Status st = Parse(j);
  EXPECT_THAT(st.message(), HasSubstr("num_key_value_heads' = 4"));
  j = base_;
  j["mamba_n_groups"] = 5;  // 12 heads
  EXPECT_THAT(Parse(j).message(), HasSubstr("mamba_n_groups' = 5"));
  j = base_;
  j["mamba_d_head"] = 15;
  EXPECT_THAT(Parse(j).message(), HasSubstr("mamba_d_head' = 15"));
  j = base_;
  j["num_experts_per_tok"] = 17;
  EXPECT_THAT(Parse(j).message(), HasSubstr("num_experts_per_tok' = 17"));
}

TEST_F(ConfigErrors, LayerCountMismatch) {
  base_["num_hidden_layers"] = 7;
  EXPECT_THAT(Parse(base_).message(), HasSubstr("num_hidden_layers' = 7"));
}

TEST_F(ConfigErrors, TimeStepLimit) {
  base_["time_step_limit"] = {0.0, {{"__float__", "Infinity"}}};
  EXPECT_TRUE(Parse(base_).ok());
  base_["time_step_limit"] = {0.001, 0.1};
  absl::Status st = Parse(base_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("time_step_limit"));
}

TEST_F(ConfigErrors, WrongTypesAndMissingFields) {
  auto j = base_;
  j["hidden_size"] = "96";
  EXPECT_THAT(Parse(j).message(), HasSubstr("'hidden_size' must be an integer"));
  j = base_;
  j.erase("mamba_d_state");
  EXPECT_THAT(Parse(j).message(), HasSubstr("'mamba_d_state' is missing"));
  j = base_;
  j["model_type"] = "llama";
  EXPECT_THAT(Parse(j).message(), HasSubstr("model_type"));
  EXPECT_EQ(ParseModelConfig("{not json", "x.json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelConfig("[1,2]", "x.json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadModelConfig("/nonexistent/config.json").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ConfigErrors, EosListAccepted) {
  base_["eos_token_id"] = {1, 2};
  auto c = ParseModelConfig(base_.dump(), "cfg.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->eos_token_id, (std::vector<int64_t>{1, 2}));
  base_["eos_token_id"] = 100000;
  EXPECT_THAT(Parse(base_).message(), HasSubstr("eos_token_id"));
}

}  // namespace
}  // namespace quarry
