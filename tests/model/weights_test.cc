// Weight loading: every tensor checked before use; missing tensors, wrong shapes, wrong dtypes and
// truncated files are refused with messages naming the tensor and the file.
#include "worker/model/weights.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/io/safetensors.h"
#include "worker/model/io/safetensors_writer.h"

namespace quarry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("quarry_weights_test_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file("tests/data/golden/tiny-b/config.json", dir_ / "config.json");
    auto src = SafetensorsFile::Open("tests/data/golden/tiny-b/model.safetensors");
    ASSERT_TRUE(src.ok()) << src.status();
    src_ = std::move(*src);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Rewrites the golden checkpoint, skipping `drop` and giving `reshape` the shape `shape`.
  void Write(const std::string& drop, const std::string& reshape = "", std::vector<int64_t> shape = {},
             StDType dtype_override = StDType::kBool) {
    std::vector<TensorToWrite> out;
    for (const TensorInfo& t : src_->tensors()) {
      if (t.name == drop) continue;
      TensorToWrite w;
      w.name = t.name;
      w.dtype = t.dtype;
      w.shape = t.shape;
      const char* base = static_cast<const char*>(t.data);
      const size_t elem = StDTypeSize(t.dtype);
      if (t.name == reshape) {
        if (!shape.empty()) w.shape = shape;
        if (dtype_override != StDType::kBool) w.dtype = dtype_override;
      }
      const int64_t src_count = t.numel();
      const size_t out_elem = StDTypeSize(w.dtype);
      w.fill = [base, elem, out_elem, src_count](int64_t first, int64_t count, void* dst) {
        char* d = static_cast<char*>(dst);
        for (int64_t i = 0; i < count; ++i) {
          const int64_t s = (first + i) % src_count;
          std::memset(d + i * out_elem, 0, out_elem);
          std::memcpy(d + i * out_elem, base + s * elem, std::min(elem, out_elem));
        }
      };
      out.push_back(std::move(w));
    }
    ASSERT_TRUE(WriteSafetensorsFile((dir_ / "model.safetensors").string(), out).ok());
  }

  fs::path dir_;
  std::unique_ptr<SafetensorsFile> src_;
};

TEST_F(WeightsTest, GoldenLoadsAndIsUnmodifiedByRewrite) {
  Write("");
  auto w = LoadModelDir(dir_.string(), {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->layers.size(), 6u);
  EXPECT_EQ((*w)->embed_tokens.dtype, DType::kBF16);
  EXPECT_EQ((*w)->lm_head.data, (*w)->embed_tokens.data);  // tied
  EXPECT_EQ((*w)->layers[0].mamba.a.size(), 12u);
  EXPECT_LT((*w)->layers[0].mamba.a[0], 0.0f);  // -exp(A_log)
}

TEST_F(WeightsTest, MissingTensorNamesTensorAndFile) {
  Write("model.layers.3.mamba.D");
  auto w = LoadModelDir(dir_.string(), {});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), HasSubstr("model.layers.3.mamba.D"));
  EXPECT_THAT(w.status().message(), HasSubstr(dir_.string()));
}

TEST_F(WeightsTest, WrongShapeNamesTensorShapeAndFile) {
  Write("", "model.layers.2.self_attn.k_proj.weight", {31, 96});
  auto w = LoadModelDir(dir_.string(), {});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("model.layers.2.self_attn.k_proj.weight"));
  EXPECT_THAT(w.status().message(), HasSubstr("model.safetensors"));
  EXPECT_THAT(w.status().message(), HasSubstr("31"));
}

TEST_F(WeightsTest, WrongDtypeIsRefused) {
  Write("", "model.norm.weight", {}, StDType::kI32);
  auto w = LoadModelDir(dir_.string(), {});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("model.norm.weight"));
}

TEST_F(WeightsTest, TruncatedFileIsRefused) {
  Write("");
  const fs::path f = dir_ / "model.safetensors";
  fs::resize_file(f, fs::file_size(f) - 1000);
  auto w = LoadModelDir(dir_.string(), {});
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("model.safetensors"));
}

TEST_F(WeightsTest, ExpertRangeLoadsOnlyThoseExperts) {
  Write("");
  WeightLoadOptions opts;
  opts.expert_begin = 4;
  opts.expert_end = 8;
  auto w = LoadModelDir(dir_.string(), opts);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->layers[0].moe.input_linear.rows, 4 * 2 * 24);
  EXPECT_EQ((*w)->layers[0].moe.output_linear.rows, 4 * 96);
  opts.expert_end = 17;
  EXPECT_EQ(LoadModelDir(dir_.string(), opts).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
