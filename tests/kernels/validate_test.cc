// Validate*: malformed params are INVALID_ARGUMENT naming the field and value; the Cpu entry points check first.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/rms_norm.h"
#include "kernels/ssd_scan.h"

namespace quarry {
namespace {

void ExpectInvalid(const absl::Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << "message: " << s.message() << " lacks " << needle;
}

TEST(ValidateTest, EmbeddingNamesTheBadId) {
  std::vector<float> table(512 * 2), y(8);
  const std::vector<int32_t> ids = {1, 2, 3, 70000};
  EmbeddingParams p{.ids = ids.data(), .n = 4, .table = {table.data(), DType::kF32, 512, 2}, .y = y.data()};
  ExpectInvalid(EmbeddingCpu(p), "token id 70000 at position 3 is outside the vocabulary [0, 512)");
  const std::vector<int32_t> neg = {-1};
  p.ids = neg.data();
  p.n = 1;
  ExpectInvalid(ValidateEmbedding(p), "token id -1 at position 0");
}

TEST(ValidateTest, LinearFields) {
  std::vector<float> x(16), w(16), y(16);
  LinearParams p{.x = x.data(), .ldx = 4, .w = {w.data(), DType::kF32, 4, 4}, .y = y.data(), .ldy = 4, .m = 2};
  EXPECT_TRUE(ValidateLinear(p).ok());
  LinearParams bad = p;
  bad.ldx = 3;
  ExpectInvalid(LinearCpu(bad), "ldx = 3");
  bad = p;
  bad.x = nullptr;
  ExpectInvalid(LinearCpu(bad), "x is null");
  bad = p;
  bad.w.rows = 0;
  ExpectInvalid(LinearCpu(bad), "w must have positive rows");
  bad = p;
  bad.m = -1;
  ExpectInvalid(LinearCpu(bad), "m must be non-negative, got -1");
}

TEST(ValidateTest, DivisibilityAndRanges) {
  AttentionParams a{.t = 1, .kv_len = 1, .n_q = 12, .n_kv = 5, .d_h = 8};
  ExpectInvalid(AttentionCpu(a), "n_kv = 5 does not divide n_q = 12");
  a.n_kv = 4;
  a.q_pos0 = 1;
  ExpectInvalid(ValidateAttention(a), "q_pos0 + t");

  SsdParams s{.t = 0, .h = 6, .p = 2, .groups = 4, .n = 3};
  ExpectInvalid(SsdChunkedScanCpu(s), "groups = 4 does not divide h = 6");
  s.groups = 2;
  s.chunk_size = 0;
  ExpectInvalid(ValidateSsd(s), "chunk_size must be positive, got 0");

  GatedRmsNormParams g{.n = 0, .d = 10, .group_size = 4};
  ExpectInvalid(GatedRmsNormCpu(g), "group_size = 4 does not divide d = 10");

  TopKSoftmaxParams t{.n = 0, .e = 4, .k = 5};
  ExpectInvalid(TopKSoftmaxCpu(t), "k = 5 exceeds the expert count e = 4");

  CausalConv1dParams c{.t = 1, .c = 4, .k = 0};
  ExpectInvalid(CausalConv1dCpu(c), "k must be positive, got 0");

  RmsNormParams r{.n = 1, .d = 0};
  ExpectInvalid(RmsNormCpu(r), "d must be positive, got 0");

  ExpectInvalid(ScaledAddCpu({.count = 3}), "y is null");
}

TEST(ValidateTest, MoeWeightShapes) {
  std::vector<float> in(2 * 6 * 4), out(2 * 4 * 3);
  MoeExpertsParams p{.n = 0, .hidden = 4, .intermediate = 3, .k = 2,
                     .input_linear = {in.data(), DType::kF32, 12, 4}, .output_linear = {out.data(), DType::kF32, 8, 3},
                     .expert_begin = 0, .expert_end = 2};
  EXPECT_TRUE(ValidateMoeExperts(p).ok());
  p.expert_end = 3;
  ExpectInvalid(MoeExpertsCpu(p), "input_linear is [12, 4], expected [18, 4]");
  p.expert_end = 0;
  ExpectInvalid(ValidateMoeExperts(p), "expert_end = 0 must exceed expert_begin = 0");
}

TEST(ValidateTest, EmptyBatchesAreNoOps) {
  std::vector<float> w(8);
  EXPECT_TRUE(RmsNormCpu({.weight = w.data(), .n = 0, .d = 8}).ok());
  EXPECT_TRUE(LinearCpu({.w = {w.data(), DType::kF32, 2, 4}, .m = 0}).ok());
  EXPECT_TRUE(AttentionCpu({.t = 0, .kv_len = 0, .n_q = 2, .n_kv = 1, .d_h = 4}).ok());
}

}  // namespace
}  // namespace quarry
