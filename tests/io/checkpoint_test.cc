// Writer round trips (single file, shards + index, every dtype) and Checkpoint directory handling:
// index validation, Require() errors naming tensor and file.
#include "worker/model/io/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/io/test_util.h"
#include "worker/model/io/safetensors_writer.h"

namespace quarry {
namespace {

using ::testing::HasSubstr;
using ::quarry::testing::ScratchDir;
using ::quarry::testing::WriteBytes;

// Byte i of a tensor = (seed + i * 7) mod 251, so every tensor has distinct, checkable contents.
TensorToWrite PatternTensor(const std::string& name, StDType dtype, std::vector<int64_t> shape, int seed) {
  TensorToWrite t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t elem = StDTypeSize(dtype);
  t.fill = [elem, seed](int64_t first, int64_t count, void* out) {
    auto* p = static_cast<uint8_t*>(out);
    for (int64_t b = 0; b < count * static_cast<int64_t>(elem); ++b) {
      p[b] = static_cast<uint8_t>((seed + (first * static_cast<int64_t>(elem) + b) * 7) % 251);
    }
  };
  return t;
}

void ExpectPattern(const TensorRef& ref, int seed) {
  ASSERT_NE(ref.info, nullptr);
  const auto* p = static_cast<const uint8_t*>(ref.info->data);
  const uint64_t n = ref.info->end - ref.info->begin;
  for (uint64_t b = 0; b < n; ++b) {
    ASSERT_EQ(p[b], static_cast<uint8_t>((seed + static_cast<int64_t>(b) * 7) % 251))
        << ref.info->name << " byte " << b;
  }
}

std::vector<TensorToWrite> SampleTensors() {
  return {PatternTensor("model.embed_tokens.weight", StDType::kBF16, {64, 16}, 1),
          PatternTensor("model.layers.0.mamba.D", StDType::kF32, {4}, 2),
          PatternTensor("model.layers.0.mamba.in_proj.weight", StDType::kBF16, {40, 16}, 3),
          PatternTensor("model.layers.1.self_attn.q_proj.weight", StDType::kF16, {16, 16}, 4),
          PatternTensor("model.norm.weight", StDType::kBF16, {16}, 5)};
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RoundTrip, SingleFile) {
  const std::string dir = ScratchDir();
  auto tensors = SampleTensors();
  uint64_t last_done = 0, last_total = 0;
  WriteOptions opts;
  opts.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  };
  ASSERT_TRUE(WriteSafetensors(dir, tensors, opts).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, 64u * 16 * 2 + 16 + 40 * 16 * 2 + 16 * 16 * 2 + 32);

  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->TensorNames().size(), tensors.size());
  EXPECT_EQ((*ckpt)->total_bytes(), last_total);
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto ref = (*ckpt)->Require(tensors[i].name, tensors[i].shape, {tensors[i].dtype});
    ASSERT_TRUE(ref.ok()) << ref.status();
    ExpectPattern(*ref, static_cast<int>(i) + 1);
  }
  // The header is padded to 8 bytes, so the data section starts aligned.
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*file)->tensors()[0].data) % 8, 0u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
}

TEST(RoundTrip, EveryDtypeAndLargeChunkedTensor) {
  const std::string dir = ScratchDir();
  std::vector<TensorToWrite> tensors;
  const StDType all[] = {StDType::kF32, StDType::kBF16, StDType::kF16, StDType::kF64, StDType::kI64,
                         StDType::kI32, StDType::kI16,  StDType::kI8,  StDType::kU8,  StDType::kBool};
  int seed = 0;
  for (StDType t : all) tensors.push_back(PatternTensor(std::string("t_") + StDTypeName(t), t, {3, 5}, ++seed));
  tensors.push_back(PatternTensor("scalar", StDType::kF32, {}, ++seed));
  tensors.push_back(PatternTensor("empty", StDType::kBF16, {0, 7}, ++seed));
  // 24 MiB: spans two 16 MiB chunks of the writer.
  tensors.push_back(PatternTensor("big", StDType::kF32, {6, 1 << 20}, ++seed));
  const std::string path = dir + "/all.safetensors";
  ASSERT_TRUE(WriteSafetensorsFile(path, tensors).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo* info = (*file)->Find(tensors[i].name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, tensors[i].dtype);
    EXPECT_EQ(info->shape, tensors[i].shape);
    ExpectPattern(TensorRef{info, file->get()}, static_cast<int>(i) + 1);
  }
}

TEST(RoundTrip, ShardedWithIndex) {
  const std::string dir = ScratchDir();
  auto tensors = SampleTensors();
  WriteOptions opts;
  opts.max_shard_bytes = 1500;  // embed (2048) | D + in_proj (1296) | q_proj + norm (544)
  ASSERT_TRUE(WriteSafetensors(dir, tensors, opts).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
  for (const char* f : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                        "model-00003-of-00003.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  }
  auto index = nlohmann::json::parse(ReadText(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 64u * 16 * 2 + 16 + 40 * 16 * 2 + 16 * 16 * 2 + 32);
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["model.norm.weight"], "model-00003-of-00003.safetensors");
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto ref = (*ckpt)->Require(tensors[i].name, tensors[i].shape, {tensors[i].dtype});
    ASSERT_TRUE(ref.ok()) << ref.status();
    ExpectPattern(*ref, static_cast<int>(i) + 1);
  }
  // No temporary files left behind.
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
}

TEST(Checkpoint, RequireErrorsNameTensorAndFile) {
  const std::string dir = ScratchDir();
  ASSERT_TRUE(WriteSafetensors(dir, SampleTensors(), {}).ok());
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();

  auto missing = (*ckpt)->Require("model.layers.3.mamba.D", {4}, {StDType::kF32});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "tensor 'model.layers.3.mamba.D' is missing from " + dir + " (files: model.safetensors)");

  auto shape = (*ckpt)->Require("model.layers.0.mamba.in_proj.weight", {40, 17}, {StDType::kBF16});
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(shape.status().message(), "tensor 'model.layers.0.mamba.in_proj.weight' in " + dir +
                                          "/model.safetensors has shape [40, 16], expected [40, 17]");

  auto dtype = (*ckpt)->Require("model.layers.0.mamba.D", {4}, {StDType::kBF16, StDType::kF16});
  EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dtype.status().message(), HasSubstr("'model.layers.0.mamba.D'"));
  EXPECT_THAT(dtype.status().message(), HasSubstr(dir + "/model.safetensors"));
  EXPECT_THAT(dtype.status().message(), HasSubstr("has dtype F32, expected one of BF16, F16"));

  EXPECT_EQ((*ckpt)->Find("nope").info, nullptr);
}

TEST(Checkpoint, EmptyOrMissingDirectoryIsNotFound) {
  const std::string dir = ScratchDir();
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir));
  ckpt = Checkpoint::Open(dir + "/does-not-exist");
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir + "/does-not-exist"));
}

TEST(Checkpoint, CorruptShardIsReportedWithItsPath) {
  const std::string dir = ScratchDir();
  WriteBytes(dir + "/model.safetensors", std::string("\x10\0\0\0\0\0\0\0{}", 10));
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir + "/model.safetensors"));
}

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ScratchDir();
    WriteOptions opts;
    opts.max_shard_bytes = 1500;
    ASSERT_TRUE(WriteSafetensors(dir_, SampleTensors(), opts).ok());
    index_ = nlohmann::json::parse(ReadText(dir_ + "/model.safetensors.index.json"));
  }
  absl::Status OpenWith(const nlohmann::json& index) {
    WriteBytes(dir_ + "/model.safetensors.index.json", index.dump());
    return Checkpoint::Open(dir_).status();
  }
  std::string dir_;
  nlohmann::json index_;
};

TEST_F(IndexTest, MissingShard) {
  std::filesystem::remove(dir_ + "/model-00002-of-00003.safetensors");
  absl::Status s = OpenWith(index_);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("model-00002-of-00003.safetensors"));
  EXPECT_THAT(s.message(), HasSubstr(dir_ + "/model.safetensors.index.json"));
}

TEST_F(IndexTest, TensorMappedToShardThatLacksIt) {
  index_["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors";
  absl::Status s = OpenWith(index_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'model.norm.weight'"));
  EXPECT_THAT(s.message(), HasSubstr("model-00001-of-00003.safetensors"));
}

TEST_F(IndexTest, FileNameEscapingTheDirectory) {
  for (const char* bad : {"../x", "sub/model.safetensors", "..", ""}) {
    nlohmann::json index = index_;
    index["weight_map"]["model.norm.weight"] = bad;
    absl::Status s = OpenWith(index);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("'model.norm.weight'")) << bad;
    EXPECT_THAT(s.message(), HasSubstr("model.safetensors.index.json")) << bad;
  }
}

TEST_F(IndexTest, MalformedIndex) {
  WriteBytes(dir_ + "/model.safetensors.index.json", "{\"weight_map\": ");
  absl::Status s = Checkpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors.index.json"));
  s = OpenWith(nlohmann::json{{"metadata", {}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("weight_map"));
  s = OpenWith(nlohmann::json{{"weight_map", {{"a", 3}}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'a'"));
}

TEST(Writer, RejectsBadTensorLists) {
  const std::string dir = ScratchDir();
  auto dup = SampleTensors();
  dup.push_back(PatternTensor("model.norm.weight", StDType::kF32, {1}, 0));
  EXPECT_EQ(WriteSafetensors(dir, dup, {}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<TensorToWrite> neg = {PatternTensor("x", StDType::kF32, {-2}, 0)};
  EXPECT_EQ(WriteSafetensors(dir, neg, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
}

}  // namespace
}  // namespace quarry
