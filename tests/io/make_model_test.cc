// make-model: presets, the tensor list, determinism of the random weights and the written checkpoint.
#include "worker/model/io/make_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "tests/io/test_util.h"
#include "worker/model/config.h"
#include "worker/model/io/checkpoint.h"

namespace quarry {
namespace {

using ::quarry::testing::ScratchDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Presets, RealArchitectureParameterCount) {
  auto c = PresetConfig("granite-4.0-h-tiny");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(ValidateModelConfig(*c).ok());
  EXPECT_EQ(ModelParameterCount(*c), 6'939'037'248u);
  uint64_t n = 0;
  for (const TensorToWrite& t : ModelTensorList(*c, StDType::kBF16, 0)) {
    uint64_t k = 1;
    for (int64_t d : t.shape) k *= d;
    n += k;
  }
  EXPECT_EQ(n, 6'939'037'248u);
  EXPECT_EQ(c->num_attention_layers(), 4);
  EXPECT_EQ(c->layer_types[5], LayerType::kAttention);
  EXPECT_EQ(c->mamba_in_proj_dim(), 6448);
}

TEST(Presets, AllValidateAndSmallIsAFewHundredMillion) {
  for (const std::string& name : PresetNames()) {
    auto c = PresetConfig(name);
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
    EXPECT_TRUE(ValidateModelConfig(*c).ok()) << name << ": " << ValidateModelConfig(*c);
  }
  auto small = PresetConfig("small");
  const uint64_t n = ModelParameterCount(*small);
  EXPECT_GT(n, 100'000'000u);
  EXPECT_LT(n, 200'000'000u);
  EXPECT_EQ(small->vocab_size, 100352);
  EXPECT_EQ(PresetConfig("nope").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Presets, TinyMatchesGoldenTinyBTensorList) {
  auto c = PresetConfig("tiny");
  ASSERT_TRUE(c.ok());
  auto golden = SafetensorsFile::Open("tests/data/golden/tiny-b/model.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  auto list = ModelTensorList(*c, StDType::kBF16, 1);
  EXPECT_EQ(list.size(), (*golden)->tensors().size());
  for (const TensorToWrite& t : list) {
    const TensorInfo* g = (*golden)->Find(t.name);
    ASSERT_NE(g, nullptr) << t.name;
    EXPECT_EQ(g->shape, t.shape) << t.name;
  }
}

TEST(MakeModel, TinyCheckpointOpensWithEveryTensor) {
  const std::string dir = ScratchDir();
  MakeModelOptions opts;
  opts.preset = "tiny";
  opts.seed = 7;
  opts.out_dir = dir + "/m";
  uint64_t done = 0, total = 0;
  opts.progress = [&](uint64_t d, uint64_t t) { done = d, total = t; };
  ASSERT_TRUE(MakeModel(opts).ok());
  EXPECT_GT(total, 0u);
  EXPECT_EQ(done, total);
  auto config = LoadModelConfig(opts.out_dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_EQ(config->hidden_size, 96);
  auto ckpt = Checkpoint::Open(opts.out_dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto list = ModelTensorList(*config, StDType::kBF16, 7);
  EXPECT_EQ((*ckpt)->TensorNames().size(), list.size());
  EXPECT_EQ((*ckpt)->Find("lm_head.weight").info, nullptr);
  for (const TensorToWrite& t : list) {
    auto ref = (*ckpt)->Require(t.name, t.shape, {StDType::kBF16});
    EXPECT_TRUE(ref.ok()) << ref.status();
  }
  EXPECT_TRUE((*ckpt)->Require("model.layers.3.mamba.in_proj.weight", {524, 96}, {StDType::kBF16}).ok());
  EXPECT_TRUE((*ckpt)->Require("model.layers.2.self_attn.k_proj.weight", {32, 96}, {StDType::kBF16}).ok());
}

// Values as float from a BF16 tensor.
std::vector<float> Values(const TensorRef& r) {
  std::vector<float> v(r.info->numel());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(r.info->data) + 2 * i, 2);
    v[i] = Bf16ToFloat(h);
  }
  return v;
}

TEST(MakeModel, DistributionsFollowTheDocumentedRecipe) {
  const std::string dir = ScratchDir();
  MakeModelOptions opts;
  opts.out_dir = dir;
  ASSERT_TRUE(MakeModel(opts).ok());
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  auto stats = [&](const std::string& name, double* mean, double* std, float* lo, float* hi) {
    auto v = Values((*ckpt)->Find(name));
    double s = 0, s2 = 0;
    *lo = 1e30f, *hi = -1e30f;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x)) << name;
      s += x, s2 += double(x) * x;
      *lo = std::min(*lo, x), *hi = std::max(*hi, x);
    }
    *mean = s / v.size();
    *std = std::sqrt(s2 / v.size() - *mean * *mean);
  };
  double mean, std;
  float lo, hi;
  stats("model.embed_tokens.weight", &mean, &std, &lo, &hi);
  EXPECT_NEAR(mean, 0, 0.01);
  EXPECT_NEAR(std, 0.5, 0.01);
  stats("model.layers.0.block_sparse_moe.input_linear.weight", &mean, &std, &lo, &hi);
  EXPECT_NEAR(std, 1 / std::sqrt(96.0), 0.003);
  stats("model.layers.0.block_sparse_moe.output_linear.weight", &mean, &std, &lo, &hi);
  EXPECT_NEAR(std, 1 / std::sqrt(24.0), 0.006);
  stats("model.layers.0.mamba.norm.weight", &mean, &std, &lo, &hi);
  EXPECT_NEAR(mean, 1, 0.01);
  EXPECT_LT(std, 0.04);
  stats("model.layers.0.mamba.A_log", &mean, &std, &lo, &hi);
  EXPECT_GE(lo, 0);
  EXPECT_LE(hi, std::log(16.0) + 0.02);
  stats("model.layers.0.mamba.D", &mean, &std, &lo, &hi);
  EXPECT_GE(lo, 0.5);
  EXPECT_LE(hi, 1.5);
  // softplus(dt_bias) = dt in [0.001, 0.1].
  for (float x : Values((*ckpt)->Find("model.layers.0.mamba.dt_bias"))) {
    const double dt = std::log1p(std::exp(double(x)));
    EXPECT_GE(dt, 0.001 * 0.98);
    EXPECT_LE(dt, 0.1 * 1.02);
  }
}

TEST(MakeModel, SameSeedSameBytesDifferentSeedDifferent) {
  const std::string dir = ScratchDir();
  MakeModelOptions opts;
  opts.out_dir = dir + "/a";
  opts.seed = 3;
  ASSERT_TRUE(MakeModel(opts).ok());
  opts.out_dir = dir + "/b";
  ASSERT_TRUE(MakeModel(opts).ok());
  opts.out_dir = dir + "/c";
  opts.seed = 4;
  ASSERT_TRUE(MakeModel(opts).ok());
  const std::string a = ReadAll(dir + "/a/model.safetensors");
  EXPECT_GT(a.size(), 1'000'000u);
  EXPECT_EQ(a, ReadAll(dir + "/b/model.safetensors"));
  EXPECT_NE(a, ReadAll(dir + "/c/model.safetensors"));
  EXPECT_EQ(ReadAll(dir + "/a/config.json"), ReadAll(dir + "/c/config.json"));
}

TEST(MakeModel, FillDoesNotDependOnChunking) {
  auto c = PresetConfig("tiny");
  auto list = ModelTensorList(*c, StDType::kF32, 11);
  const TensorToWrite& t = list[0];  // embedding: 512 x 96
  const int64_t n = 512 * 96;
  std::vector<float> whole(n), pieces(n);
  t.fill(0, n, whole.data());
  for (int64_t first = 0, step = 1; first < n; first += step, step = step * 3 + 1) {
    const int64_t count = std::min(step, n - first);
    t.fill(first, count, pieces.data() + first);
  }
  EXPECT_EQ(std::memcmp(whole.data(), pieces.data(), n * 4), 0);
}

TEST(MakeModel, ShardsVocabOverrideAndTokenizerCopy) {
  const std::string dir = ScratchDir();
  std::filesystem::create_directories(dir + "/tok");
  std::ofstream(dir + "/tok/tokenizer.json") << "{\"tok\": 1}";
  std::ofstream(dir + "/tok/tokenizer_config.json") << "{\"cfg\": 1}";
  MakeModelOptions opts;
  opts.preset = "tiny";
  opts.vocab_size = 100352;
  opts.dtype = StDType::kF32;
  opts.tokenizer_dir = dir + "/tok";
  opts.out_dir = dir + "/m";
  opts.max_shard_bytes = 16 << 20;  // the 100352 x 96 f32 embedding alone is 38.5 MB
  ASSERT_TRUE(MakeModel(opts).ok());
  EXPECT_TRUE(std::filesystem::exists(opts.out_dir + "/model.safetensors.index.json"));
  EXPECT_EQ(ReadAll(opts.out_dir + "/tokenizer.json"), "{\"tok\": 1}");
  EXPECT_EQ(ReadAll(opts.out_dir + "/tokenizer_config.json"), "{\"cfg\": 1}");
  auto config = LoadModelConfig(opts.out_dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 100352);
  EXPECT_EQ(config->bos_token_id, 100257);
  auto ckpt = Checkpoint::Open(opts.out_dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->Require("model.embed_tokens.weight", {100352, 96}, {StDType::kF32}).ok());
}

TEST(MakeModel, BadOptions) {
  MakeModelOptions opts;
  opts.out_dir = ScratchDir();
  opts.preset = "huge";
  EXPECT_EQ(MakeModel(opts).code(), absl::StatusCode::kInvalidArgument);
  opts.preset = "tiny";
  opts.dtype = StDType::kI32;
  EXPECT_EQ(MakeModel(opts).code(), absl::StatusCode::kInvalidArgument);
  opts.dtype = StDType::kBF16;
  opts.vocab_size = 100352;
  opts.tokenizer_dir = opts.out_dir + "/missing";
  EXPECT_EQ(MakeModel(opts).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace quarry
