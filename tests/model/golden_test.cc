// Golden checks against Hugging Face transformers (tests/data/golden): prefill logits, greedy tokens with
// step logits through the cache, and full-sequence logits, whole-prompt and chunked.
#include <string>

#include "gtest/gtest.h"
#include "worker/engine/reference_check.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry {
namespace {

struct GoldenCase {
  std::string model;
  int64_t prefill_chunk;
  int64_t mamba_chunk;
};

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, MatchesTransformers) {
  const GoldenCase& g = GetParam();
  const std::string dir = "tests/data/golden/" + g.model;
  auto w = LoadModelDir(dir, {});
  ASSERT_TRUE(w.ok()) << w.status();
  Model model(**w, {g.mamba_chunk});
  ReferenceOptions opts;
  opts.prefill_chunk = g.prefill_chunk;
  auto results = RunReferenceFile(model, dir + "/reference.safetensors", opts);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 4u);
  for (const ReferenceCaseResult& r : *results) {
    SCOPED_TRACE(r.name);
    // f32 math over the same weights: differences are summation-order rounding only (README: well under 1e-3).
    EXPECT_LT(r.prefill_max_abs, 1e-4);
    EXPECT_LT(r.step_max_abs, 1e-4);
    EXPECT_LT(r.full_max_abs, 1e-4);
    EXPECT_EQ(r.token_mismatches, 0) << r.first_mismatch;
    EXPECT_TRUE(r.ok);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest,
                         ::testing::Values(GoldenCase{"tiny-a", 0, 0}, GoldenCase{"tiny-b", 0, 0},
                                           GoldenCase{"tiny-a", 5, 0}, GoldenCase{"tiny-b", 3, 0},
                                           GoldenCase{"tiny-a", 0, 7}, GoldenCase{"tiny-b", 64, 5}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_prefill" + std::to_string(info.param.prefill_chunk) +
                                           "_ssd" + std::to_string(info.param.mamba_chunk);
                           for (char& ch : n) ch = ch == '-' ? '_' : ch;
                           return n;
                         });

TEST(GoldenReference, CorruptedReferenceFails) {
  // A tolerance no f32 engine can meet: proves the comparison is live.
  auto w = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(w.ok());
  Model model(**w);
  ReferenceOptions opts;
  opts.tolerance = 0;
  auto results = RunReferenceFile(model, "tests/data/golden/tiny-b/reference.safetensors", opts);
  ASSERT_TRUE(results.ok());
  bool any_failed = false;
  for (const auto& r : *results) any_failed |= !r.ok;
  EXPECT_TRUE(any_failed);
  // A reference for another model (vocab 384 vs 512) is refused with a clear error.
  auto wrong = RunReferenceFile(model, "tests/data/golden/tiny-a/reference.safetensors", {});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
