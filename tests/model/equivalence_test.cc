// Engine equivalences on the golden models: chunked prefill == one pass, prefill + decode == one pass,
// SSD chunk size does not matter, a sequence alone == the same sequence inside a mixed batch.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry {
namespace {

constexpr double kTol = 2e-5;  // f32 rounding of reassociated sums (chunk boundaries, SSD blocking)

class EquivalenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto w = LoadModelDir("tests/data/golden/" + GetParam(), {});
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(weights_->config.vocab_size - 1));
    for (int i = 0; i < 77; ++i) ids_.push_back(dist(rng));
  }

  // Logits of every position, fed in chunks of `chunk` tokens.
  std::vector<float> Run(Model& model, int64_t chunk) {
    const int64_t V = model.config().vocab_size, n = static_cast<int64_t>(ids_.size());
    SequenceState seq(model.config(), n);
    std::vector<float> out(n * V);
    for (int64_t off = 0; off < n; off += chunk) {
      const int64_t m = std::min(chunk, n - off);
      ForwardSegment seg{seq.view(), ids_.data() + off, m, LogitsMode::kAll};
      EXPECT_TRUE(model.Forward({&seg, 1}, out.data() + off * V).ok());
    }
    EXPECT_EQ(seq.length(), n);
    return out;
  }

  std::unique_ptr<ModelWeights> weights_;
  std::vector<int32_t> ids_;
};

TEST_P(EquivalenceTest, ChunkedPrefillEqualsFullPass) {
  Model model(*weights_);
  std::vector<float> full = Run(model, static_cast<int64_t>(ids_.size()));
  for (int64_t chunk : {1, 3, 8, 64}) {
    std::vector<float> chunked = Run(model, chunk);
    EXPECT_LT(MaxAbsDiff(full.data(), chunked.data(), full.size()), kTol) << "chunk " << chunk;
  }
}

TEST_P(EquivalenceTest, SsdChunkSizeDoesNotChangeResults) {
  Model reference(*weights_, {1});  // chunk 1 == the plain recurrence
  std::vector<float> base = Run(reference, static_cast<int64_t>(ids_.size()));
  for (int64_t ssd : {3, 8, 64, 256}) {
    Model model(*weights_, {ssd});
    std::vector<float> out = Run(model, static_cast<int64_t>(ids_.size()));
    EXPECT_LT(MaxAbsDiff(base.data(), out.data(), base.size()), kTol) << "ssd chunk " << ssd;
  }
}

TEST_P(EquivalenceTest, PrefillThenDecodeEqualsOnePass) {
  Model model(*weights_);
  const int64_t V = model.config().vocab_size, n = static_cast<int64_t>(ids_.size());
  std::vector<float> full = Run(model, n);
  SequenceState seq(model.config(), n);
  const int64_t prompt = 20;
  std::vector<float> logits(prompt * V);
  ForwardSegment pre{seq.view(), ids_.data(), prompt, LogitsMode::kAll};
  ASSERT_TRUE(model.Forward({&pre, 1}, logits.data()).ok());
  EXPECT_LT(MaxAbsDiff(full.data(), logits.data(), prompt * V), kTol);
  for (int64_t i = prompt; i < n; ++i) {
    ForwardSegment step{seq.view(), ids_.data() + i, 1, LogitsMode::kLast};
    ASSERT_TRUE(model.Forward({&step, 1}, logits.data()).ok());
    ASSERT_LT(MaxAbsDiff(full.data() + i * V, logits.data(), V), kTol) << "position " << i;
  }
}

TEST_P(EquivalenceTest, AloneEqualsInsideMixedBatch) {
  Model model(*weights_);
  const int64_t V = model.config().vocab_size;
  // Three sequences: A decodes, B prefills a chunk, C prefills and decodes; each also run alone.
  std::vector<std::vector<int32_t>> prompts = {
      {ids_.begin(), ids_.begin() + 10}, {ids_.begin() + 10, ids_.begin() + 40}, {ids_.begin() + 40, ids_.end()}};
  auto alone = [&](const std::vector<int32_t>& p) {
    SequenceState s(model.config(), 64);
    std::vector<float> out(p.size() * V);
    ForwardSegment seg{s.view(), p.data(), static_cast<int64_t>(p.size()), LogitsMode::kAll};
    EXPECT_TRUE(model.Forward({&seg, 1}, out.data()).ok());
    return out;
  };
  std::vector<std::vector<float>> ref;
  for (const auto& p : prompts) ref.push_back(alone(p));

  SequenceState a(model.config(), 64), b(model.config(), 64), c(model.config(), 64);
  std::vector<float> out;
  // Step 1: A prefill 9 tokens, B prefill 30 tokens, C prefill 20 tokens, all in one forward.
  std::vector<ForwardSegment> step1 = {{a.view(), prompts[0].data(), 9, LogitsMode::kLast},
                                       {b.view(), prompts[1].data(), 30, LogitsMode::kAll},
                                       {c.view(), prompts[2].data(), 20, LogitsMode::kNone}};
  out.resize(Model::LogitRows(step1) * V);
  ASSERT_EQ(Model::LogitRows(step1), 31);
  ASSERT_TRUE(model.Forward(step1, out.data()).ok());
  EXPECT_LT(MaxAbsDiff(out.data(), ref[0].data() + 8 * V, V), kTol);
  EXPECT_LT(MaxAbsDiff(out.data() + V, ref[1].data(), 30 * V), kTol);
  // Step 2: A decodes its 10th token while C prefills the rest of its prompt.
  std::vector<ForwardSegment> step2 = {{a.view(), prompts[0].data() + 9, 1, LogitsMode::kLast},
                                       {c.view(), prompts[2].data() + 20, 17, LogitsMode::kAll}};
  out.resize(Model::LogitRows(step2) * V);
  ASSERT_TRUE(model.Forward(step2, out.data()).ok());
  EXPECT_LT(MaxAbsDiff(out.data(), ref[0].data() + 9 * V, V), kTol);
  EXPECT_LT(MaxAbsDiff(out.data() + V, ref[2].data() + 20 * V, 17 * V), kTol);
}

TEST_P(EquivalenceTest, InvalidInputLeavesStateUntouched) {
  Model model(*weights_);
  const int64_t V = model.config().vocab_size;
  SequenceState seq(model.config(), 8);
  std::vector<int32_t> bad = {1, 2, static_cast<int32_t>(V)};
  std::vector<float> out(3 * V);
  ForwardSegment seg{seq.view(), bad.data(), 3, LogitsMode::kAll};
  absl::Status st = model.Forward({&seg, 1}, out.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("outside the vocabulary"), std::string::npos) << st;
  EXPECT_EQ(seq.length(), 0);
  std::vector<int32_t> many(9, 1);
  ForwardSegment over{seq.view(), many.data(), 9, LogitsMode::kLast};
  st = model.Forward({&over, 1}, out.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("KV capacity"), std::string::npos) << st;
}

INSTANTIATE_TEST_SUITE_P(Golden, EquivalenceTest, ::testing::Values("tiny-a", "tiny-b"),
                         [](const auto& info) { return info.param == "tiny-a" ? "tiny_a" : "tiny_b"; });

}  // namespace
}  // namespace quarry
