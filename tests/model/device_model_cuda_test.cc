// The device model on the GPU (label cuda; skips without a device): golden tiny-a (f32) and tiny-b (bf16)
// end to end, chunked prefill + decode against the full pass (inside RunReferenceFile), CUDA-graph decode
// equal to eager decode (identical tokens, logits within rounding), and the GPU equal to the host backend.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_factory.h"
#include "worker/model/device/device_model.h"
#include "worker/model/io/make_model.h"
#include "worker/model/weights.h"
#include "tests/model/device_rig.h"

namespace quarry {
namespace {

bool HaveGpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return false;
  }
  return true;
}

using Rig = testing::DeviceRig;

// pad: eager decode steps in the graphs' padded layout (DeviceModelOptions::pad_decode_steps), so that eager and
// graph steps run the same kernels on the same shapes.
Rig MakeRig(const std::string& name, const std::string& kind, bool graphs, int64_t max_batch = 8,
            bool kv_bf16 = false, bool pad = false) {
  DeviceModelOptions mo;
  mo.max_tokens = 128;
  mo.max_batch = max_batch;
  mo.max_blocks_per_seq = 16;
  mo.cuda_graphs = graphs;
  mo.pad_decode_steps = pad;
  return Rig::Make(name, kind, mo, 8, max_batch * 16, kv_bf16);
}

class DeviceModelCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

// Tolerances: tiny-a is f32 (no bf16 rounding anywhere: only summation order differs); tiny-b has bf16
// weights and its GEMMs with more than 16 rows round their inputs to bf16 for the tensor cores.
TEST_F(DeviceModelCudaTest, GoldenReferences) {
  for (const auto& [name, tol] : {std::pair<std::string, double>{"tiny-a", 1e-3}, {"tiny-b", 3e-2}}) {
    for (int64_t chunk : {int64_t{0}, int64_t{5}}) {
      SCOPED_TRACE(name + " chunk " + std::to_string(chunk));
      Rig r = MakeRig(name, "cuda", true);
      auto results = RunReferenceFile(*r.model, "tests/data/golden/" + name + "/reference.safetensors",
                                      r.Pooled(chunk, tol));
      ASSERT_TRUE(results.ok()) << results.status();
      for (const ReferenceCaseResult& c : *results) {
        EXPECT_TRUE(c.ok) << c.name << " prefill " << c.prefill_max_abs << " steps " << c.step_max_abs << " full "
                          << c.full_max_abs << " " << c.first_mismatch;
      }
      EXPECT_GT(r.model->stats().graph_steps, 0);
    }
  }
}

// bf16 KV pages on the GPU: golden tiny-a and tiny-b within the same tolerances (bf16 keys and values move the
// logits by ~3e-4 on the host backend), whole and chunked.
TEST_F(DeviceModelCudaTest, GoldenReferencesWithBf16KvCache) {
  for (const auto& [name, tol] : {std::pair<std::string, double>{"tiny-a", 2e-3}, {"tiny-b", 3e-2}}) {
    for (int64_t chunk : {int64_t{0}, int64_t{5}}) {
      SCOPED_TRACE(name + " chunk " + std::to_string(chunk));
      Rig r = MakeRig(name, "cuda", true, 8, true);
      auto results = RunReferenceFile(*r.model, "tests/data/golden/" + name + "/reference.safetensors",
                                      r.Pooled(chunk, tol));
      ASSERT_TRUE(results.ok()) << results.status();
      for (const ReferenceCaseResult& c : *results) {
        EXPECT_TRUE(c.ok) << c.name << " prefill " << c.prefill_max_abs << " steps " << c.step_max_abs;
      }
    }
  }
}

// One greedy decode step of the first `active` sequences on each of {graph, eager, host} (next[k]: the tokens in,
// then the argmax tokens out): graph and eager give identical tokens and logits within float rounding, the
// host backend identical tokens and logits within the bf16 tolerance.
void DecodeStepMatches(const std::vector<Rig*>& rigs, std::vector<std::vector<std::unique_ptr<PooledSequence>>>& seqs,
                       std::vector<std::vector<int32_t>>& next, int active, int step) {
  const int64_t V = rigs[0]->w->config.vocab_size;
  std::vector<std::vector<float>> logits(rigs.size(), std::vector<float>(active * V));
  for (size_t k = 0; k < rigs.size(); ++k) {
    std::vector<ForwardSegment> segs;
    for (int i = 0; i < active; ++i) segs.push_back({seqs[k][i]->view(), &next[k][i], 1, LogitsMode::kLast});
    ASSERT_TRUE(rigs[k]->model->Forward(segs, logits[k].data()).ok());
    for (int i = 0; i < active; ++i) {
      const float* row = logits[k].data() + i * V;
      next[k][i] = static_cast<int32_t>(std::max_element(row, row + V) - row);
    }
  }
  EXPECT_EQ(next[0], next[1]) << "graph vs eager, step " << step;
  EXPECT_EQ(next[0], next[2]) << "GPU vs host, step " << step;
  double ge = 0, gh = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) {
    ge = std::max(ge, std::fabs(double(logits[0][i]) - logits[1][i]));
    gh = std::max(gh, std::fabs(double(logits[0][i]) - logits[2][i]));
  }
  EXPECT_LT(ge, 1e-3) << "step " << step;
  EXPECT_LT(gh, 3e-2) << "step " << step;
}

// Prefills `count` new sequences (capacity `cap`) on every rig in one step, sequence i with len(i) tokens of
// `prompt` from offset(i); their greedy tokens go to next[k].
template <typename Offset, typename Len>
void PrefillOnEach(const std::vector<Rig*>& rigs, std::vector<std::vector<std::unique_ptr<PooledSequence>>>& seqs,
                   std::vector<std::vector<int32_t>>& next, int count, int64_t cap, const std::vector<int32_t>& prompt,
                   Offset&& offset, Len&& len) {
  for (size_t k = 0; k < rigs.size(); ++k) {
    std::vector<ForwardSegment> segs;
    for (int i = 0; i < count; ++i) {
      seqs[k].push_back(std::move(*PooledSequence::Create(rigs[k]->slots.get(), rigs[k]->kv.get(), cap)));
      segs.push_back({seqs[k].back()->view(), prompt.data() + offset(i), len(i), LogitsMode::kLast});
    }
    ASSERT_TRUE(rigs[k]->model->ForwardGreedy(segs, next[k].data()).ok());
  }
}

// The same schedule (5 sequences prefilled, then 12 decode steps with the batch shrinking and growing) with
// graphs and eagerly: identical greedy tokens, logits equal within float rounding.
TEST_F(DeviceModelCudaTest, GraphEqualsEagerAndHost) {
  Rig graph = MakeRig("tiny-b", "cuda", true), eager = MakeRig("tiny-b", "cuda", false);
  Rig host = MakeRig("tiny-b", "host", false);
  const int64_t V = graph.w->config.vocab_size;
  std::vector<Rig*> rigs = {&graph, &eager, &host};
  std::vector<std::vector<std::unique_ptr<PooledSequence>>> seqs(3);
  std::vector<std::vector<int32_t>> next(3, std::vector<int32_t>(5));
  std::vector<int32_t> prompt(30);
  for (int i = 0; i < 30; ++i) prompt[i] = (i * 53 + 7) % static_cast<int32_t>(V);
  PrefillOnEach(rigs, seqs, next, 5, 60, prompt, [](int i) { return i; }, [](int i) { return 10 + 3 * i; });
  for (int step = 0; step < 12; ++step) {
    const int active = step < 6 ? 5 - step % 3 : 1 + step % 5;  // 5,4,3,5,4,3,2,3,4,5,1,2
    DecodeStepMatches(rigs, seqs, next, active, step);
  }
  EXPECT_GT(graph.model->stats().graph_captures, 1);
  EXPECT_EQ(eager.model->stats().graph_steps, 0);
}

// Decode steps of 17-32 rows (batch 24 and 32, bf16 KV pages): their products with a 16-bit input copy run on the
// tensor-core kernel (kernels/cuda/linear_tc.cu; on tiny-b the q|k|v projection with its KV append and the
// mixer's output projection), with graphs and eagerly: identical greedy tokens, and the host backend's within
// the bf16 tolerance. The eager steps are padded like the graph's (batch 24 runs as 32 rows: on tiny-b its 128
// expert rows take the tensor cores, which 96 would not), so graph and eager run the same kernels.
TEST_F(DeviceModelCudaTest, DecodeOf17To32RowsEqualsHost) {
  Rig graph = MakeRig("tiny-b", "cuda", true, 32, true), eager = MakeRig("tiny-b", "cuda", false, 32, true, true);
  Rig host = MakeRig("tiny-b", "host", false, 32, true);
  const int64_t V = graph.w->config.vocab_size;
  constexpr int kSeqs = 32;
  std::vector<Rig*> rigs = {&graph, &eager, &host};
  std::vector<std::vector<std::unique_ptr<PooledSequence>>> seqs(3);
  std::vector<std::vector<int32_t>> next(3, std::vector<int32_t>(kSeqs));
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 71 + 5) % static_cast<int32_t>(V);
  PrefillOnEach(rigs, seqs, next, kSeqs, 20, prompt, [](int i) { return i % 8; }, [](int i) { return 2 + i % 3; });
  for (int step = 0; step < 4; ++step) DecodeStepMatches(rigs, seqs, next, step % 2 == 0 ? 24 : kSeqs, step);
  EXPECT_GT(graph.model->stats().graph_steps, 0);
}

// Decode steps of 40 sequences on a tiny-b-shaped random bf16 checkpoint whose expert widths suit the tensor cores
// (intermediate_size 32): 160 expert rows over 16 experts, 10 per expert on average, so both expert products run
// on the 16-row-tile kernel (kernels/cuda/grouped_tc_small.cu; the up projection writing the SwiGLU activations),
// as does the 40-token prefill. Graphs and eagerly: identical greedy tokens; the host backend within the bf16
// tolerance.
TEST_F(DeviceModelCudaTest, DecodeOfManyRowsPerExpertEqualsHost) {
  const std::string dir = ::testing::TempDir() + "quarry-tc-small-model";
  MakeModelOptions mk;
  mk.preset = "tiny";
  mk.out_dir = dir;
  mk.seed = 5;
  mk.edit_config = [](ModelConfig* c) { c->intermediate_size = 32; };
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(MakeModel(mk).ok());
  constexpr int kSeqs = 40;
  DeviceModelOptions mo;
  mo.max_tokens = 128;
  mo.max_batch = kSeqs;
  mo.max_blocks_per_seq = 16;
  auto make = [&](const std::string& kind, bool graphs) {
    mo.cuda_graphs = graphs;
    return Rig::MakeFromDir(dir, kind, mo, 8, kSeqs * 16, true);
  };
  Rig graph = make("cuda", true), eager = make("cuda", false), host = make("host", false);
  const int64_t V = graph.w->config.vocab_size;
  ASSERT_GE(kSeqs * graph.w->config.num_experts_per_tok, kManyRowsPerExpert * graph.w->config.num_local_experts);
  std::vector<Rig*> rigs = {&graph, &eager, &host};
  std::vector<std::vector<std::unique_ptr<PooledSequence>>> seqs(3);
  std::vector<std::vector<int32_t>> next(3, std::vector<int32_t>(kSeqs));
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 37 + 11) % static_cast<int32_t>(V);
  PrefillOnEach(rigs, seqs, next, kSeqs, 20, prompt, [](int i) { return i % 9; }, [](int) { return 1; });
  EXPECT_EQ(next[0], next[2]) << "prefill: GPU vs host";
  for (int step = 0; step < 3; ++step) DecodeStepMatches(rigs, seqs, next, kSeqs, step);
  EXPECT_GT(graph.model->stats().graph_steps, 0);
  std::filesystem::remove_all(dir);
}

// The sampling stage on the GPU: bias / penalty adjustments, bans and logprobs (kernels/logits_process.h) over
// a mixed prefill step give the host backend's tokens and logprobs.
TEST_F(DeviceModelCudaTest, ProcessorsAndLogprobsEqualHost) {
  Rig gpu = MakeRig("tiny-b", "cuda", true), host = MakeRig("tiny-b", "host", false);
  const int64_t V = gpu.w->config.vocab_size;
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 29 + 3) % static_cast<int32_t>(V);
  std::vector<LogitAdjust> adjust;
  for (int i = 0; i < 40; i += 2) adjust.push_back({.token = prompt[i], .bias = 0.5f * (i % 3), .repetition = 2.5f});
  const std::vector<int32_t> ban = {prompt[1], prompt[3]};
  std::vector<SampleRow> rows(4);
  rows[0].params.temperature = 0;
  rows[0].adjust = adjust;
  rows[0].top_logprobs = 5;
  rows[1].params.temperature = 0;
  rows[1].ban = ban;
  rows[1].top_logprobs = 0;
  rows[2].params = {.temperature = 0.9f, .top_p = 0.9f, .seed = 11, .step = 2};
  rows[2].adjust = std::span<const LogitAdjust>(adjust).subspan(0, 7);
  rows[3].params.temperature = 0;
  std::vector<std::vector<int32_t>> tokens(2, std::vector<int32_t>(4));
  std::vector<std::vector<RowLogprobs>> lps(2, std::vector<RowLogprobs>(4));
  Rig* rigs[2] = {&gpu, &host};
  for (int k = 0; k < 2; ++k) {
    std::vector<std::unique_ptr<PooledSequence>> seqs;
    std::vector<ForwardSegment> segs;
    for (int i = 0; i < 4; ++i) {
      seqs.push_back(std::move(*PooledSequence::Create(rigs[k]->slots.get(), rigs[k]->kv.get(), 60)));
      segs.push_back({seqs.back()->view(), prompt.data() + i, 20 + 4 * i, LogitsMode::kLast});
    }
    ASSERT_TRUE(rigs[k]->model->ForwardSample(segs, rows.data(), tokens[k].data(), lps[k].data()).ok());
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  for (int i : {0, 1}) {
    EXPECT_NEAR(lps[0][i].chosen, lps[1][i].chosen, 3e-2) << i;
    ASSERT_EQ(lps[0][i].top.size(), lps[1][i].top.size());
    for (size_t j = 0; j < lps[0][i].top.size(); ++j) EXPECT_EQ(lps[0][i].top[j].first, lps[1][i].top[j].first);
  }
  EXPECT_EQ(lps[0][0].top.size(), 5u);
  EXPECT_NE(tokens[0][1], ban[0]);
  EXPECT_NE(tokens[0][1], ban[1]);
}

}  // namespace
}  // namespace quarry
