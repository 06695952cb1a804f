// The continuous-batching engine on golden tiny-b: greedy equals the reference generator, batch invariance
// (alone == inside a batch of 8 mixed-length requests), seeded sampling invariance, admission control,
// queue limits, abort, deadlines, stop conditions, logprobs and shutdown.
#include "worker/engine/engine.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/generator.h"
#include "worker/model/weights.h"

namespace quarry {
namespace {

using namespace std::chrono_literals;

// Collects the outputs of one request; Wait() blocks (bounded) until the final message.
class Collector {
 public:
  OutputCallback Callback() {
    return [this](const RequestOutput& o) {
      std::lock_guard<std::mutex> lock(mu_);
      outputs_.push_back(o);
      for (int32_t t : o.tokens) tokens_.push_back(t);
      if (o.finished) {
        ++finals_;
        cv_.notify_all();
      }
    };
  }
  bool Wait(std::chrono::milliseconds timeout = 60s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return finals_ > 0; });
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  RequestOutput last() {
    std::lock_guard<std::mutex> lock(mu_);
    return outputs_.back();
  }
  int finals() {
    std::lock_guard<std::mutex> lock(mu_);
    return finals_;
  }
  std::vector<RequestOutput> outputs() {
    std::lock_guard<std::mutex> lock(mu_);
    return outputs_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestOutput> outputs_;
  std::vector<int32_t> tokens_;
  int finals_ = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto w = LoadModelDir("tests/data/golden/tiny-b", {});
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w).release();
  }
  static void TearDownTestSuite() {
    delete weights_;
    weights_ = nullptr;
  }

  std::unique_ptr<Engine> Make(EngineOptions o = {}) {
    auto e = Engine::Create(*weights_, o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  static std::vector<int32_t> Prompt(int n, int seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> p(n);
    for (int32_t& t : p) t = static_cast<int32_t>(2 + rng() % 500);
    return p;
  }

  static EngineRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
    EngineRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = max_tokens;
    r.stopping.ignore_eos = true;
    return r;
  }

  static ModelWeights* weights_;
};

ModelWeights* EngineTest::weights_ = nullptr;

TEST_F(EngineTest, GreedyEqualsReferenceGenerator) {
  auto engine = Make();
  Model model(*weights_);
  for (int len : {1, 7, 45}) {
    const std::vector<int32_t> prompt = Prompt(len, len);
    Collector c;
    ASSERT_TRUE(engine->Submit(Greedy("r" + std::to_string(len), prompt, 12), c.Callback()).ok());
    ASSERT_TRUE(c.Wait());
    GenerateOptions opts;
    opts.max_new_tokens = 12;
    opts.ignore_eos = true;
    auto ref = GreedyGenerate(model, prompt, opts);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(c.tokens(), ref->tokens) << "prompt length " << len;
    const RequestOutput last = c.last();
    EXPECT_TRUE(last.finished);
    EXPECT_EQ(last.finish_reason, FinishReason::kLength);
    EXPECT_EQ(last.completion_tokens, 12);
    EXPECT_EQ(last.prompt_tokens, len);
    EXPECT_GE(last.timing.ttft_us, last.timing.queue_us);
    EXPECT_EQ(c.outputs().size(), 12u);  // one message per step, the last one carries the finish
  }
}

TEST_F(EngineTest, BatchInvarianceAloneVsBatchOfEight) {
  EngineOptions o;
  o.max_tokens_per_step = 24;  // forces prefill chunks to interleave with other requests' decode steps
  auto engine = Make(o);
  const std::vector<int> lengths = {3, 50, 17, 1, 33, 8, 70, 12};
  std::vector<std::vector<int32_t>> alone;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Collector c;
    ASSERT_TRUE(engine->Submit(Greedy("a" + std::to_string(i), Prompt(lengths[i], 100 + i), 10), c.Callback()).ok());
    ASSERT_TRUE(c.Wait());
    alone.push_back(c.tokens());
  }
  std::vector<std::unique_ptr<Collector>> cs;
  for (size_t i = 0; i < lengths.size(); ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine->Submit(Greedy("b" + std::to_string(i), Prompt(lengths[i], 100 + i), 10), cs[i]->Callback()).ok());
  }
  for (size_t i = 0; i < lengths.size(); ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->tokens(), alone[i]) << "request " << i << " (prompt " << lengths[i] << ")";
  }
}

TEST_F(EngineTest, SeededSamplingIsTheSameAloneAndInABatch) {
  auto engine = Make();
  auto sampled = [](const std::string& id, int seed) {
    EngineRequest r = Greedy(id, Prompt(9, 7), 16);
    r.sampling.temperature = 1.1f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 50;
    r.sampling.seed = seed;
    return r;
  };
  Collector alone;
  ASSERT_TRUE(engine->Submit(sampled("alone", 99), alone.Callback()).ok());
  ASSERT_TRUE(alone.Wait());
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine->Submit(sampled("batch" + std::to_string(i), 99 + i), cs[i]->Callback()).ok());
  }
  for (auto& c : cs) ASSERT_TRUE(c->Wait());
  EXPECT_EQ(cs[0]->tokens(), alone.tokens());
  EXPECT_NE(cs[1]->tokens(), alone.tokens());  // another seed samples something else
}

TEST_F(EngineTest, SlotsLimitConcurrencyAndEveryoneFinishes) {
  EngineOptions o;
  o.state_slots = 2;
  auto engine = Make(o);
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 6; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine->Submit(Greedy("s" + std::to_string(i), Prompt(5 + i, i), 6), cs[i]->Callback()).ok());
    EXPECT_LE(engine->GetLoad().state_slots_used, 2);
  }
  for (auto& c : cs) {
    ASSERT_TRUE(c->Wait());
    EXPECT_EQ(c->tokens().size(), 6u);
  }
  const EngineLoad load = engine->GetLoad();
  EXPECT_EQ(load.state_slots_used, 0);
  EXPECT_EQ(load.kv_blocks_used, 0);
  EXPECT_EQ(load.running + load.waiting, 0);
}

TEST_F(EngineTest, QueueFullIsResourceExhausted) {
  EngineOptions o;
  o.state_slots = 1;
  o.max_waiting = 2;
  auto engine = Make(o);
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<bool> accepted;
  for (int i = 0; i < 8; ++i) {
    cs.push_back(std::make_unique<Collector>());
    absl::Status st = engine->Submit(Greedy("q" + std::to_string(i), Prompt(60, i), 40), cs[i]->Callback());
    if (st.code() == absl::StatusCode::kResourceExhausted) {
      EXPECT_NE(st.message().find("retry after"), std::string::npos) << st;
    } else {
      ASSERT_TRUE(st.ok()) << st;
    }
    accepted.push_back(st.ok());
  }
  // At most 1 running + 2 waiting can be held at any moment, so 8 quick submissions overflow the queue.
  EXPECT_LE(std::count(accepted.begin(), accepted.end(), true), 7);
  engine->Shutdown();  // everything accepted gets exactly one final message, the rest none
  for (int i = 0; i < 8; ++i) EXPECT_EQ(cs[i]->finals(), accepted[i] ? 1 : 0) << i;
}

TEST_F(EngineTest, AbortFreesResourcesAndEndsCancelled) {
  auto engine = Make();
  Collector c;
  ASSERT_TRUE(engine->Submit(Greedy("long", Prompt(10, 1), 2000), c.Callback()).ok());
  for (int i = 0; i < 200 && c.tokens().size() < 3; ++i) std::this_thread::sleep_for(5ms);
  engine->Abort("long");
  ASSERT_TRUE(c.Wait(10s));
  EXPECT_EQ(c.last().finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(c.last().status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(c.tokens().size(), 2000u);
  EXPECT_EQ(engine->GetLoad().state_slots_used, 0);
  engine->Abort("unknown-id");  // ignored
  // The id can be reused once finished.
  Collector again;
  ASSERT_TRUE(engine->Submit(Greedy("long", Prompt(3, 1), 2), again.Callback()).ok());
  ASSERT_TRUE(again.Wait());
}

TEST_F(EngineTest, DeadlineEndsWithDeadlineExceeded) {
  auto engine = Make();
  Collector c;
  EngineRequest r = Greedy("late", Prompt(10, 2), 3000);
  r.deadline = std::chrono::steady_clock::now() + 50ms;
  ASSERT_TRUE(engine->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.Wait(10s));
  EXPECT_EQ(c.last().finish_reason, FinishReason::kDeadline);
  EXPECT_EQ(c.last().status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(engine->GetLoad().kv_blocks_used, 0);
}

TEST_F(EngineTest, StopTokensMinTokensAndEos) {
  auto engine = Make();
  const std::vector<int32_t> prompt = Prompt(6, 3);
  Collector base;
  ASSERT_TRUE(engine->Submit(Greedy("base", prompt, 8), base.Callback()).ok());
  ASSERT_TRUE(base.Wait());
  const std::vector<int32_t> toks = base.tokens();
  // Stop at the third greedy token.
  EngineRequest r = Greedy("stop", prompt, 8);
  r.stopping.stop_token_ids = {toks[2]};
  Collector c;
  ASSERT_TRUE(engine->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.Wait());
  const size_t first = std::find(toks.begin(), toks.end(), toks[2]) - toks.begin();
  EXPECT_EQ(c.tokens().size(), first + 1);
  EXPECT_EQ(c.last().finish_reason, FinishReason::kStop);
  EXPECT_EQ(c.last().matched_stop_token, toks[2]);
  // min_tokens suppresses the stop token before it: the first token can no longer be toks[0] if it stops.
  EngineRequest m = Greedy("min", prompt, 8);
  m.stopping.stop_token_ids = {toks[0]};
  m.stopping.min_tokens = 3;
  Collector mc;
  ASSERT_TRUE(engine->Submit(m, mc.Callback()).ok());
  ASSERT_TRUE(mc.Wait());
  ASSERT_GE(mc.tokens().size(), 3u);
  EXPECT_NE(mc.tokens()[0], toks[0]);
}

TEST_F(EngineTest, LogprobsAccompanyEveryToken) {
  auto engine = Make();
  EngineRequest r = Greedy("lp", Prompt(5, 4), 5);
  r.logprobs = true;
  r.top_logprobs = 3;
  Collector c;
  ASSERT_TRUE(engine->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.Wait());
  for (const RequestOutput& o : c.outputs()) {
    ASSERT_EQ(o.logprobs.size(), o.tokens.size());
    for (size_t i = 0; i < o.tokens.size(); ++i) {
      const TokenLogprob& lp = o.logprobs[i];
      EXPECT_EQ(lp.token, o.tokens[i]);
      EXPECT_LE(lp.logprob, 0.0f);
      ASSERT_EQ(lp.top.size(), 3u);
      EXPECT_EQ(lp.top[0].first, lp.token);  // greedy picks the most likely token
      EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
      EXPECT_GE(lp.top[0].second, lp.top[1].second);
    }
  }
}

TEST_F(EngineTest, InvalidRequestsNameTheField) {
  EngineOptions o;
  o.max_model_len = 64;
  auto engine = Make(o);
  Collector c;
  EngineRequest r = Greedy("bad", {1, 2, 9999}, 4);
  absl::Status st = engine->Submit(r, c.Callback());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("prompt_token_ids[2] = 9999"), std::string::npos) << st;
  r = Greedy("long", Prompt(60, 1), 10);
  st = engine->Submit(r, c.Callback());
  EXPECT_NE(st.message().find("exceeds the context length 64"), std::string::npos) << st;
  r = Greedy("", Prompt(2, 1), 1);
  EXPECT_EQ(engine->Submit(r, c.Callback()).code(), absl::StatusCode::kInvalidArgument);
  r = Greedy("x", Prompt(2, 1), 0);
  EXPECT_NE(engine->Submit(r, c.Callback()).message().find("max_tokens = 0"), std::string::npos);
  r = Greedy("x", Prompt(2, 1), 2);
  r.top_logprobs = 21;
  EXPECT_EQ(engine->Submit(r, c.Callback()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.finals(), 0);  // rejected requests never call back
}

TEST_F(EngineTest, ShutdownEndsInFlightRequestsUnavailable) {
  auto engine = Make();
  Collector c;
  ASSERT_TRUE(engine->Submit(Greedy("x", Prompt(4, 1), 3000), c.Callback()).ok());
  for (int i = 0; i < 200 && c.tokens().empty(); ++i) std::this_thread::sleep_for(5ms);
  engine->Shutdown();
  ASSERT_TRUE(c.Wait(5s));
  EXPECT_EQ(c.last().status.code(), absl::StatusCode::kUnavailable);
  Collector after;
  EXPECT_EQ(engine->Submit(Greedy("y", Prompt(4, 1), 3), after.Callback()).code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, Bf16StateGivesTheSameGreedyTokens) {
  EngineOptions o;
  o.bf16_state = true;
  auto bf16 = Make(o);
  auto f32 = Make();
  for (int len : {1, 9, 45}) {
    Collector a, b;
    ASSERT_TRUE(bf16->Submit(Greedy("h" + std::to_string(len), Prompt(len, 50 + len), 12), a.Callback()).ok());
    ASSERT_TRUE(f32->Submit(Greedy("f" + std::to_string(len), Prompt(len, 50 + len), 12), b.Callback()).ok());
    ASSERT_TRUE(a.Wait());
    ASSERT_TRUE(b.Wait());
    EXPECT_EQ(a.tokens(), b.tokens()) << "prompt " << len;
  }
}

// The device engine (what --device cuda runs) on its host-reference backend: a batch of mixed-length requests
// with chunked prefill interleaved with decode steps gives the CPU engine's greedy tokens, pools are sized
// from the backend's memory, and the summary says what was chosen.
TEST_F(EngineTest, DeviceEngineOnHostBackendEqualsCpuEngine) {
  EngineOptions o;
  o.max_tokens_per_step = 24;
  o.state_slots = 8;
  o.max_model_len = 256;
  EngineOptions d = o;
  d.device = "host";
  auto cpu = Make(o);
  auto dev = Make(d);
  EXPECT_NE(dev->backend_summary().find("host"), std::string::npos) << dev->backend_summary();
  EXPECT_GT(dev->GetLoad().kv_blocks_total, 0);
  const std::vector<int> lengths = {3, 50, 17, 1, 33, 8, 70, 12};
  std::vector<std::unique_ptr<Collector>> a, b;
  for (size_t i = 0; i < lengths.size(); ++i) {
    a.push_back(std::make_unique<Collector>());
    b.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(cpu->Submit(Greedy("c" + std::to_string(i), Prompt(lengths[i], 300 + i), 10), a[i]->Callback()).ok());
    ASSERT_TRUE(dev->Submit(Greedy("d" + std::to_string(i), Prompt(lengths[i], 300 + i), 10), b[i]->Callback()).ok());
  }
  for (size_t i = 0; i < lengths.size(); ++i) {
    ASSERT_TRUE(a[i]->Wait());
    ASSERT_TRUE(b[i]->Wait());
    EXPECT_EQ(b[i]->tokens(), a[i]->tokens()) << "request " << i << " (prompt " << lengths[i] << ")";
    EXPECT_EQ(b[i]->tokens().size(), 10u);
  }
  EXPECT_EQ(dev->GetLoad().state_slots_used, 0);
}

// Sampling on the device engine (host backend): a seeded request samples the same tokens alone and inside a
// batch of other requests (Philox per (seed, step)), another seed samples differently, and top-k 1 is greedy.
TEST_F(EngineTest, DeviceEngineSeededSamplingIsBatchInvariant) {
  EngineOptions o;
  o.device = "host";
  o.max_model_len = 256;
  auto engine = Make(o);
  auto sampled = [](const std::string& id, uint64_t seed, int top_k) {
    EngineRequest r = Greedy(id, Prompt(9, 7), 16);
    r.sampling.temperature = 1.1f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = top_k;
    r.sampling.seed = seed;
    return r;
  };
  Collector alone;
  ASSERT_TRUE(engine->Submit(sampled("alone", 99, 50), alone.Callback()).ok());
  ASSERT_TRUE(alone.Wait());
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine->Submit(sampled("batch" + std::to_string(i), 99 + i, 50), cs[i]->Callback()).ok());
  }
  for (auto& c : cs) ASSERT_TRUE(c->Wait());
  EXPECT_EQ(cs[0]->tokens(), alone.tokens());
  EXPECT_NE(cs[1]->tokens(), alone.tokens()) << ::testing::PrintToString(alone.tokens());
  EXPECT_EQ(alone.tokens().size(), 16u);

  Collector topk1, greedy;
  ASSERT_TRUE(engine->Submit(sampled("k1", 5, 1), topk1.Callback()).ok());
  ASSERT_TRUE(engine->Submit(Greedy("g", Prompt(9, 7), 16), greedy.Callback()).ok());
  ASSERT_TRUE(topk1.Wait());
  ASSERT_TRUE(greedy.Wait());
  EXPECT_EQ(topk1.tokens(), greedy.tokens());
}

// Bias, penalties, min-tokens bans and logprobs run on the device engine's sampler (kernels/logits_process.h)
// and give the CPU engine's host Sampler results: the same greedy tokens for every kind of processor in one
// batch, and logprobs (chosen + top 5) within float rounding of the host's. Each processor must change the
// plain greedy output, or the comparison would prove nothing.
TEST_F(EngineTest, DeviceEngineProcessorsEqualCpuEngine) {
  EngineOptions o;
  o.max_model_len = 256;
  EngineOptions d = o;
  d.device = "host";
  auto cpu = Make(o);
  auto dev = Make(d);
  const std::vector<int32_t> prompt = Prompt(21, 4);
  auto plain_run = [&](Engine* e) {
    Collector c;
    EXPECT_TRUE(e->Submit(Greedy("plain", prompt, 14), c.Callback()).ok());
    EXPECT_TRUE(c.Wait());
    return c.tokens();
  };
  const std::vector<int32_t> plain = plain_run(cpu.get());
  ASSERT_EQ(plain_run(dev.get()), plain);
  std::vector<EngineRequest> reqs;
  auto add = [&](const std::string& id) -> EngineRequest& {
    reqs.push_back(Greedy(id, prompt, 14));
    return reqs.back();
  };
  add("repetition").sampling.repetition_penalty = 10.0f;  // tiny-b repeats one token with a wide margin
  {
    EngineRequest& r = add("presence+frequency");
    r.sampling.presence_penalty = 1.5f;
    r.sampling.frequency_penalty = 2.0f;
  }
  add("bias").sampling.logit_bias = {{plain[0], -100.0f}, {7, 0.25f}};
  {
    EngineRequest& r = add("min-tokens");
    r.stopping.min_tokens = 5;
    r.stopping.stop_token_ids = {plain[0], plain[2]};
    r.stopping.max_tokens = 6;
  }
  {
    EngineRequest& r = add("logprobs+repetition");
    r.sampling.repetition_penalty = 4.0f;
    r.logprobs = true;
    r.top_logprobs = 5;
  }
  add("logprobs-only").logprobs = true;
  auto run = [&](Engine* e, const char* tag) {
    std::vector<std::unique_ptr<Collector>> cs;
    for (const EngineRequest& r : reqs) {
      cs.push_back(std::make_unique<Collector>());
      EngineRequest copy = r;
      copy.id = tag + r.id;
      EXPECT_TRUE(e->Submit(copy, cs.back()->Callback()).ok());
    }
    for (auto& c : cs) EXPECT_TRUE(c->Wait());
    return cs;
  };
  auto on_cpu = run(cpu.get(), "c-");
  auto on_dev = run(dev.get(), "d-");
  for (size_t i = 0; i < reqs.size(); ++i) {
    SCOPED_TRACE(reqs[i].id);
    const std::vector<int32_t> want = on_cpu[i]->tokens();
    EXPECT_EQ(on_dev[i]->tokens(), want);
    if (reqs[i].id != "logprobs-only") EXPECT_NE(want, std::vector<int32_t>(plain.begin(), plain.begin() + want.size()));
    std::vector<TokenLogprob> lc, ld;
    for (const RequestOutput& out : on_cpu[i]->outputs()) lc.insert(lc.end(), out.logprobs.begin(), out.logprobs.end());
    for (const RequestOutput& out : on_dev[i]->outputs()) ld.insert(ld.end(), out.logprobs.begin(), out.logprobs.end());
    ASSERT_EQ(ld.size(), lc.size());
    EXPECT_EQ(lc.empty(), !reqs[i].logprobs);
    for (size_t t = 0; t < lc.size(); ++t) {
      EXPECT_EQ(ld[t].token, lc[t].token);
      EXPECT_NEAR(ld[t].logprob, lc[t].logprob, 1e-3) << "token " << t;
      ASSERT_EQ(ld[t].top.size(), lc[t].top.size());
      EXPECT_EQ(lc[t].top.size(), static_cast<size_t>(reqs[i].top_logprobs));
      for (size_t j = 0; j < lc[t].top.size(); ++j) {
        EXPECT_EQ(ld[t].top[j].first, lc[t].top[j].first) << "token " << t << " top " << j;
        EXPECT_NEAR(ld[t].top[j].second, lc[t].top[j].second, 1e-3);
      }
    }
  }
  // min_tokens held the stop tokens back for 5 tokens, then the sixth may stop.
  const std::vector<int32_t> mt = on_dev[3]->tokens();
  for (size_t t = 0; t < std::min<size_t>(5, mt.size()); ++t) EXPECT_NE(mt[t], plain[0]);
}

TEST_F(EngineTest, DeviceEngineRefusesBadOptions) {
  EngineOptions o;
  o.device = "tpu";
  EXPECT_EQ(Engine::Create(*weights_, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.device = "host";
  o.gpu_memory_utilization = 1.5;
  EXPECT_EQ(Engine::Create(*weights_, o).status().code(), absl::StatusCode::kInvalidArgument);
#ifndef QUARRY_HAVE_CUDA
  o.gpu_memory_utilization = 0.9;
  o.device = "cuda";
  auto e = Engine::Create(*weights_, o);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(e.status().message().find("CUDA"), std::string::npos);
#endif
}

}  // namespace
}  // namespace quarry
