// Expert parallelism inside one process (LocalCommunicator threads): dispatch/combine provenance and
// weighting, an idle rank taking part, and the golden model over EP = 2, 4, 8 ranks giving the single-rank
// logits and greedy tokens (rank 0 leads, the others follow in lockstep); the same for the device model
// (host backend) and the device engine.
#include <algorithm>
#include <cmath>
#include <future>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/engine.h"
#include "worker/engine/lockstep.h"
#include "worker/engine/reference_check.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"
#include "worker/parallel/local_communicator.h"
#include "worker/parallel/moe_dispatch.h"
#include "tests/model/device_rig.h"

namespace quarry {
namespace {

// Runs fn(rank) on world_size threads and returns their statuses.
std::vector<absl::Status> OnRanks(int world_size, const std::function<absl::Status(int)>& fn) {
  std::vector<std::future<absl::Status>> f;
  for (int r = 0; r < world_size; ++r) f.push_back(std::async(std::launch::async, fn, r));
  std::vector<absl::Status> out;
  for (auto& x : f) out.push_back(x.get());
  return out;
}

TEST(MoeDispatch, ProvenanceAndWeightedCombine) {
  constexpr int W = 4, E = 8, K = 3;
  constexpr int64_t H = 5;
  auto comms = CreateLocalGroup(W, std::chrono::milliseconds(10000));
  auto placement = ExpertPlacement::Contiguous(E, W);
  ASSERT_TRUE(placement.ok());
  const std::vector<int64_t> tokens = {7, 1, 12, 0};  // rank 3 is idle but takes part
  auto statuses = OnRanks(W, [&](int rank) -> absl::Status {
    const int64_t T = tokens[rank];
    std::mt19937 rng(rank);
    std::vector<float> x(T * H), y(T * H, 0.0f), w(T * K);
    std::vector<int32_t> idx(T * K);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < H; ++i) x[t * H + i] = static_cast<float>(rank * 1000 + t) + 0.001f * i;
      std::vector<int32_t> experts(E);
      std::iota(experts.begin(), experts.end(), 0);
      std::shuffle(experts.begin(), experts.end(), rng);
      float sum = 0;
      for (int j = 0; j < K; ++j) {
        idx[t * K + j] = experts[j];
        w[t * K + j] = 1.0f + static_cast<float>(rng() % 7);
        sum += w[t * K + j];
      }
      for (int j = 0; j < K; ++j) w[t * K + j] /= sum;
    }
    MoeDispatcher d(comms[rank].get(), &*placement, H);
    int bad_stamps = 0;
    // Expert e multiplies by (e + 1); every row must carry the stamp of the token it came from.
    auto compute = [&](int32_t e, const float* in, int64_t n, const int32_t* src_rank, const int32_t* src_token,
                       float* out) {
      for (int64_t r = 0; r < n; ++r) {
        if (in[r * H] != static_cast<float>(src_rank[r] * 1000 + src_token[r])) ++bad_stamps;
        for (int64_t i = 0; i < H; ++i) out[r * H + i] = in[r * H + i] * static_cast<float>(e + 1);
      }
      return absl::OkStatus();
    };
    absl::Status st = d.Run(x.data(), T, idx.data(), w.data(), K, compute, y.data());
    if (!st.ok()) return st;
    if (bad_stamps) return absl::InternalError("rows arrived with wrong provenance stamps");
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < H; ++i) {
        double want = 0;
        for (int j = 0; j < K; ++j) want += w[t * K + j] * (idx[t * K + j] + 1) * x[t * H + i];
        if (std::abs(y[t * H + i] - want) > 1e-3 * std::max(1.0, std::abs(want))) {
          return absl::InternalError("combine mismatch");
        }
      }
    }
    if (d.stats().rows_sent != T * K) return absl::InternalError("rows_sent");
    return absl::OkStatus();
  });
  for (int r = 0; r < W; ++r) EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
}

class ExpertParallelModel : public ::testing::TestWithParam<int> {};

TEST_P(ExpertParallelModel, GoldenTinyBAcrossRanks) {
  const int W = GetParam();
  auto weights = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto placement = ExpertPlacement::Contiguous(16, W);
  ASSERT_TRUE(placement.ok());
  auto comms = CreateLocalGroup(W, std::chrono::milliseconds(30000));
  std::vector<ReferenceCaseResult> results;
  auto statuses = OnRanks(W, [&](int rank) -> absl::Status {
    Model model(**weights, {0, comms[rank].get(), &*placement});
    if (!model.expert_parallel()) return absl::InternalError("not expert parallel");
    if (rank != 0) return FollowLockstep(comms[rank].get(), &model);
    BecomeLockstepLeader(comms[rank].get(), &model);
    auto r = RunReferenceFile(model, "tests/data/golden/tiny-b/reference.safetensors", {});
    absl::Status done = FinishLockstep(comms[rank].get());
    if (!r.ok()) return r.status();
    results = *r;
    return done;
  });
  for (int r = 0; r < W; ++r) ASSERT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  ASSERT_EQ(results.size(), 4u);
  for (const ReferenceCaseResult& r : results) {
    EXPECT_TRUE(r.ok) << r.name << " " << r.first_mismatch;
    EXPECT_LT(r.prefill_max_abs, 1e-4);
    EXPECT_LT(r.step_max_abs, 1e-4);
    EXPECT_EQ(r.token_mismatches, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, ExpertParallelModel, ::testing::Values(2, 4, 8));

// The device model (host backend: what --device cuda runs, with the rows exchanged in the backend's memory)
// over EP ranks: each rank holds only its experts, the leader's golden references match, the followers join
// every layer's exchange with empty steps.
class ExpertParallelDeviceModel : public ::testing::TestWithParam<int> {};

TEST_P(ExpertParallelDeviceModel, GoldenTinyBAcrossRanks) {
  const int W = GetParam();
  auto placement = ExpertPlacement::Contiguous(16, W);
  ASSERT_TRUE(placement.ok());
  auto comms = CreateLocalGroup(W, std::chrono::milliseconds(30000));
  std::vector<ReferenceCaseResult> results;
  std::vector<int64_t> empty_steps(W, 0), weight_bytes(W, 0);
  auto statuses = OnRanks(W, [&](int rank) -> absl::Status {
    DeviceModelOptions mo;
    mo.max_tokens = 128;
    mo.max_batch = 4;
    mo.max_blocks_per_seq = 16;
    mo.comm = comms[rank].get();
    mo.placement = &*placement;
    testing::DeviceRig rig = testing::DeviceRig::Make("tiny-b", "host", mo, 8, 64);
    if (rig.model == nullptr) return absl::InternalError("no device model");
    if (!rig.model->expert_parallel()) return absl::InternalError("not expert parallel");
    weight_bytes[rank] = static_cast<int64_t>(rig.model->weight_bytes());
    absl::Status st;
    if (rank != 0) {
      st = FollowLockstep(comms[rank].get(), rig.model.get());
    } else {
      BecomeLockstepLeader(comms[rank].get(), rig.model.get());
      auto r = RunReferenceFile(*rig.model, "tests/data/golden/tiny-b/reference.safetensors", rig.Pooled(5));
      absl::Status done = FinishLockstep(comms[rank].get());
      st = r.ok() ? done : r.status();
      if (r.ok()) results = *r;
    }
    empty_steps[rank] = rig.model->stats().empty_steps;
    return st;
  });
  for (int r = 0; r < W; ++r) ASSERT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  ASSERT_EQ(results.size(), 4u);
  for (const ReferenceCaseResult& r : results) {
    EXPECT_TRUE(r.ok) << r.name << " prefill " << r.prefill_max_abs << " steps " << r.step_max_abs << " "
                      << r.first_mismatch;
    EXPECT_EQ(r.token_mismatches, 0);
  }
  EXPECT_EQ(empty_steps[0], 0);
  for (int r = 1; r < W; ++r) EXPECT_GT(empty_steps[r], 0) << r;
  // Each rank copied only its share of the routed experts.
  auto whole = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(whole.ok());
  int64_t experts_bytes = 0;
  for (const LayerWeights& l : (*whole)->layers) experts_bytes += l.moe.input_linear.bytes() + l.moe.output_linear.bytes();
  for (int r = 1; r < W; ++r) EXPECT_EQ(weight_bytes[r], weight_bytes[0]);
  testing::DeviceRig single = testing::DeviceRig::Make("tiny-b", "host", {.max_tokens = 128, .max_batch = 4}, 8, 64);
  EXPECT_EQ(static_cast<int64_t>(single.model->weight_bytes()) - weight_bytes[0], experts_bytes - experts_bytes / W);
}

INSTANTIATE_TEST_SUITE_P(Ranks, ExpertParallelDeviceModel, ::testing::Values(2, 4));

// `device`: "cpu" (the CPU engine) or "host" (the device engine on its host backend).
class ExpertParallelEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertParallelEngine, GroupOfFourServesEachRankItsOwnRequests) {
  constexpr int W = 4;
  const std::string device = GetParam();
  auto weights = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto placement = ExpertPlacement::Contiguous(16, W);
  ASSERT_TRUE(placement.ok());
  // What each request gets alone on a single-rank engine.
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 3, 200}, {17}, {40, 41, 42, 43, 44, 45, 46, 47, 48}};
  auto greedy = [](const std::string& id, const std::vector<int32_t>& p) {
    EngineRequest r;
    r.id = id;
    r.prompt = p;
    r.sampling.temperature = 0;
    r.stopping.max_tokens = 10;
    r.stopping.ignore_eos = true;
    return r;
  };
  auto run = [&](Engine& e, const EngineRequest& r) {
    std::promise<std::vector<int32_t>> done;
    auto tokens = std::make_shared<std::vector<int32_t>>();
    EXPECT_TRUE(e.Submit(r, [tokens, &done](const RequestOutput& o) {
                   tokens->insert(tokens->end(), o.tokens.begin(), o.tokens.end());
                   if (o.finished) done.set_value(*tokens);
                 }).ok());
    auto f = done.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    return f.get();
  };
  std::vector<std::vector<int32_t>> alone;
  {
    EngineOptions o;
    o.device = device;
    o.max_model_len = 256;
    auto single = Engine::Create(**weights, o);
    ASSERT_TRUE(single.ok());
    for (size_t i = 0; i < prompts.size(); ++i) alone.push_back(run(**single, greedy("a" + std::to_string(i), prompts[i])));
  }
  // Ranks 0..2 each serve one request at the same time; rank 3 has none and must still take part.
  auto comms = CreateLocalGroup(W, std::chrono::milliseconds(30000));
  std::vector<std::unique_ptr<Engine>> engines;
  for (int r = 0; r < W; ++r) {
    EngineOptions o;
    o.comm = comms[r].get();
    o.placement = &*placement;
    o.device = device;
    o.max_model_len = 256;
    auto e = Engine::Create(**weights, o);
    ASSERT_TRUE(e.ok()) << e.status();
    engines.push_back(std::move(*e));
  }
  std::vector<std::future<std::vector<int32_t>>> results;
  for (size_t i = 0; i < prompts.size(); ++i) {
    results.push_back(std::async(std::launch::async, [&, i] { return run(*engines[i], greedy("g", prompts[i])); }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(results[i].get(), alone[i]) << "rank " << i;
  for (auto& e : engines) EXPECT_FALSE(e->failed());
  // Step statistics: the idle rank ran only empty steps; experts saw tokens only on the rank holding them.
  const EngineLoad idle = engines[3]->GetLoad();
  EXPECT_GT(idle.steps, 0);
  EXPECT_EQ(idle.empty_steps, idle.steps);
  int64_t tokens_seen = 0;
  for (int r = 0; r < W; ++r) {
    const EngineLoad l = engines[r]->GetLoad();
    EXPECT_GT(l.all_to_all_bytes, 0) << r;
    EXPECT_GE(l.dispatch_seconds, 0.0);
    for (size_t e = 0; e < l.expert_tokens.size(); ++e) {
      if (l.expert_tokens[e] > 0) {
        EXPECT_TRUE(placement->holds(r, static_cast<int>(e))) << "rank " << r << " expert " << e;
      }
      tokens_seen += l.expert_tokens[e];
    }
  }
  EXPECT_GT(tokens_seen, 0);
  // Stopping one rank stops the group: every engine's loop ends.
  engines[3]->Shutdown();
  for (auto& e : engines) e->Shutdown();
}

// A rank that dies inside a step: rank 1 agrees to the step (the lockstep all-reduce) and then never joins the
// MoE exchange. Rank 0's exchange times out, the group fails, the request ends with UNAVAILABLE (within about
// the group timeout: nothing hangs), new requests are refused and failed() turns true.
TEST_P(ExpertParallelEngine, RankDyingInsideAStepFailsTheGroup) {
  const std::string device = GetParam();
  auto weights = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto placement = ExpertPlacement::Contiguous(16, 2);
  ASSERT_TRUE(placement.ok());
  auto comms = CreateLocalGroup(2, std::chrono::milliseconds(1500));
  EngineOptions o;
  o.comm = comms[0].get();
  o.placement = &*placement;
  o.device = device;
  o.max_model_len = 256;
  auto engine = Engine::Create(**weights, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  // Rank 1: answers "no work, not stopping" until some rank has work, then disappears.
  std::thread rank1([&] {
    for (int i = 0; i < 5000; ++i) {
      int64_t v[2] = {0, 0};
      if (!comms[1]->AllReduceMax({v, 2}).ok() || v[0] != 0 || v[1] != 0) return;
    }
  });
  std::promise<RequestOutput> done;
  EngineRequest r;
  r.id = "doomed";
  r.prompt = {5, 9, 3};
  r.sampling.temperature = 0;
  r.stopping.max_tokens = 50;
  r.stopping.ignore_eos = true;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*engine)->Submit(r, [&done](const RequestOutput& out) {
                  if (out.finished) done.set_value(out);
                }).ok());
  auto f = done.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "the request hung";
  const RequestOutput last = f.get();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(last.status.code(), absl::StatusCode::kUnavailable) << last.status;
  EXPECT_NE(last.status.message().find("expert-parallel group failed"), std::string::npos) << last.status;
  EXPECT_LT(waited, 10.0);
  EXPECT_TRUE((*engine)->failed());
  EXPECT_EQ((*engine)->Submit(r, [](const RequestOutput&) {}).code(), absl::StatusCode::kUnavailable);
  rank1.join();
  (*engine)->Shutdown();
}

INSTANTIATE_TEST_SUITE_P(Engines, ExpertParallelEngine, ::testing::Values("cpu", "host"));

}  // namespace
}  // namespace quarry
