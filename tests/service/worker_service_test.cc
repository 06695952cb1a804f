// Worker gRPC service over a scripted fake engine: streaming, request conversion and validation, status mapping
// (RESOURCE_EXHAUSTED + retry-after-ms), cancellation, deadlines, Abort, GetLoad and Info.
#include <cmath>
#include <map>
#include <thread>

#include "absl/strings/cord.h"
#include "tests/service/service_fixture.h"

namespace quarry::testing {
namespace {

using std::chrono::milliseconds;

TEST_F(ServiceTest, StreamsScriptedTokensWithUsageAndTiming) {
  auto r = Generate(Request({1, 2, 3}, 5, "req-1"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.Tokens(), (std::vector<uint32_t>{4, 5, 6, 7, 8}));
  ASSERT_FALSE(r.messages.empty());
  for (size_t i = 0; i + 1 < r.messages.size(); ++i) {
    EXPECT_FALSE(r.messages[i].finished());
    EXPECT_EQ(r.messages[i].finish_reason(), wpb::FINISH_REASON_UNSPECIFIED);
  }
  const auto& last = r.messages.back();
  EXPECT_TRUE(last.finished());
  EXPECT_EQ(last.finish_reason(), wpb::FINISH_REASON_LENGTH);
  EXPECT_FALSE(last.has_matched_stop_token_id());
  EXPECT_EQ(last.usage().prompt_tokens(), 3u);
  EXPECT_EQ(last.usage().completion_tokens(), 5u);
  EXPECT_EQ(last.timing().queue_us(), 5u);
  EXPECT_EQ(last.timing().prefill_us(), 7u);
  EXPECT_EQ(last.timing().decode_us(), 11u);
  EXPECT_EQ(last.timing().ttft_us(), 12u);

  // What reached the engine: ids, prompt, explicit defaults.
  auto sub = engine_->submitted();
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].id, "req-1");
  EXPECT_EQ(sub[0].prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(sub[0].stopping.max_tokens, 5);
  EXPECT_EQ(sub[0].sampling.temperature, 1.0f);
  EXPECT_EQ(sub[0].sampling.top_p, 1.0f);
  EXPECT_EQ(sub[0].sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(sub[0].sampling.seed.has_value());
}

TEST_F(ServiceTest, ConvertsSamplingStoppingAndLogprobs) {
  auto req = Request({10}, 0, "");
  auto* s = req.mutable_sampling();
  s->set_temperature(0.0f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(-0.5f);
  s->set_seed(0);
  (*s->mutable_logit_bias())[7] = -100.0f;
  (*s->mutable_logit_bias())[3] = 2.5f;
  req.mutable_stopping()->add_stop_token_ids(13);
  req.mutable_stopping()->set_min_tokens(1);
  req.set_logprobs(true);
  req.set_top_logprobs(2);
  auto r = Generate(req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.Tokens(), (std::vector<uint32_t>{11, 12, 13}));
  const auto& last = r.messages.back();
  EXPECT_EQ(last.finish_reason(), wpb::FINISH_REASON_STOP);
  ASSERT_TRUE(last.has_matched_stop_token_id());
  EXPECT_EQ(last.matched_stop_token_id(), 13u);
  int logprobs = 0;
  for (const auto& m : r.messages) {
    ASSERT_EQ(m.logprobs_size(), m.token_ids_size());
    for (int i = 0; i < m.logprobs_size(); ++i) {
      EXPECT_EQ(m.logprobs(i).token_id(), m.token_ids(i));
      EXPECT_FLOAT_EQ(m.logprobs(i).logprob(), -0.5f);
      ASSERT_EQ(m.logprobs(i).top_logprobs_size(), 2);
      EXPECT_EQ(m.logprobs(i).top_logprobs(1).token_id(), m.token_ids(i) + 1);
      ++logprobs;
    }
  }
  EXPECT_EQ(logprobs, 3);

  auto sub = engine_->submitted();
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].id, "worker-1");  // assigned
  EXPECT_EQ(sub[0].sampling.temperature, 0.0f);
  EXPECT_EQ(sub[0].sampling.top_k, 40);
  EXPECT_FLOAT_EQ(sub[0].sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(sub[0].sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(sub[0].sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(sub[0].sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(sub[0].sampling.frequency_penalty, -0.5f);
  ASSERT_TRUE(sub[0].sampling.seed.has_value());
  EXPECT_EQ(*sub[0].sampling.seed, 0u);
  EXPECT_EQ(sub[0].sampling.logit_bias, (std::vector<std::pair<int32_t, float>>{{3, 2.5f}, {7, -100.0f}}));
  EXPECT_EQ(sub[0].stopping.max_tokens, kMaxModelLen - 1);  // unset: fill the context
  EXPECT_EQ(sub[0].stopping.min_tokens, 1);
  EXPECT_EQ(sub[0].stopping.stop_token_ids, (std::vector<int32_t>{13}));
  EXPECT_TRUE(sub[0].logprobs);
  EXPECT_EQ(sub[0].top_logprobs, 2);
  // The helper's 10 s gRPC deadline, moved to the steady clock.
  const auto left = std::chrono::duration_cast<milliseconds>(sub[0].deadline - std::chrono::steady_clock::now());
  EXPECT_GT(left.count(), 8000);
  EXPECT_LE(left.count(), 10500);  // gRPC rounds timeouts up on the wire
}

struct InvalidCase {
  std::string name;
  std::function<void(wpb::GenerateRequest*)> mutate;
  std::string message;
};

TEST_F(ServiceTest, RejectsInvalidRequestsNamingFieldLimitAndValue) {
  const std::vector<InvalidCase> cases = {
      {"empty prompt", [](auto* r) { r->clear_prompt_token_ids(); }, "prompt_token_ids must be non-empty, got 0 tokens"},
      {"token id", [](auto* r) { r->set_prompt_token_ids(1, 1000); },
       "prompt_token_ids[1] must be < vocab_size 1000, got 1000"},
      {"prompt too long", [](auto* r) { for (int i = 0; i < 70; ++i) r->add_prompt_token_ids(1); },
       "prompt_token_ids must be shorter than max_model_len 64, got 73 tokens"},
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-0.5f); },
       "sampling.temperature must be >= 0, got -0.5"},
      {"temperature nan", [](auto* r) { r->mutable_sampling()->set_temperature(std::nanf("")); },
       "sampling.temperature must be >= 0, got nan"},
      {"top_p", [](auto* r) { r->mutable_sampling()->set_top_p(0.0f); }, "sampling.top_p must be in (0, 1], got 0"},
      {"min_p", [](auto* r) { r->mutable_sampling()->set_min_p(1.5f); }, "sampling.min_p must be in [0, 1], got 1.5"},
      {"top_k", [](auto* r) { r->mutable_sampling()->set_top_k(1001); },
       "sampling.top_k must be <= vocab_size 1000, got 1001"},
      {"repetition_penalty", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0.0f); },
       "sampling.repetition_penalty must be > 0, got 0"},
      {"presence_penalty", [](auto* r) { r->mutable_sampling()->set_presence_penalty(3.0f); },
       "sampling.presence_penalty must be in [-2, 2], got 3"},
      {"logit_bias key", [](auto* r) { (*r->mutable_sampling()->mutable_logit_bias())[5000] = 1.0f; },
       "sampling.logit_bias key must be < vocab_size 1000, got 5000"},
      {"logit_bias value", [](auto* r) { (*r->mutable_sampling()->mutable_logit_bias())[5] = 101.0f; },
       "sampling.logit_bias[5] must be in [-100, 100], got 101"},
      {"max_tokens zero", [](auto* r) { r->mutable_stopping()->set_max_tokens(0); },
       "stopping.max_tokens must be >= 1, got 0"},
      {"max_tokens room", [](auto* r) { r->mutable_stopping()->set_max_tokens(62); },
       "stopping.max_tokens must be <= max_model_len 64 - prompt length 3 = 61, got 62"},
      {"min_tokens", [](auto* r) { r->mutable_stopping()->set_min_tokens(5); },
       "stopping.min_tokens must be <= max_tokens 4, got 5"},
      {"stop token", [](auto* r) { r->mutable_stopping()->add_stop_token_ids(1000); },
       "stopping.stop_token_ids[0] must be < vocab_size 1000, got 1000"},
      {"top_logprobs", [](auto* r) { r->set_logprobs(true); r->set_top_logprobs(21); },
       "top_logprobs must be <= 20, got 21"},
      {"top_logprobs alone", [](auto* r) { r->set_top_logprobs(1); },
       "top_logprobs must be 0 unless logprobs is true, got 1"},
      {"request_id", [](auto* r) { r->set_request_id(std::string(300, 'x')); },
       "request_id must be at most 256 bytes, got 300 bytes"},
  };
  for (const auto& c : cases) {
    auto req = Request({1, 2, 3}, 4);
    c.mutate(&req);
    auto r = Generate(req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_EQ(r.status.error_message(), c.message) << c.name;
    EXPECT_TRUE(r.messages.empty()) << c.name;
  }
  EXPECT_TRUE(engine_->submitted().empty());
  EXPECT_NE(metrics_->Serialize().find("quarry_rejected_total{model_name=\"tiny\",reason=\"invalid\"} 19"),
            std::string::npos)
      << metrics_->Serialize();
}

TEST_F(ServiceTest, QueueFullIsResourceExhaustedWithRetryHint) {
  absl::Status full = absl::ResourceExhaustedError("waiting queue is full (max_waiting 64)");
  engine_->set_reject(full);
  auto r = Generate(Request({1}, 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.status.error_message(), "waiting queue is full (max_waiting 64)");
  EXPECT_EQ(r.Trailer("retry-after-ms"), "200");  // the service default

  full.SetPayload(service::kRetryAfterPayload, absl::Cord("750"));  // the engine's own hint wins
  engine_->set_reject(full);
  r = Generate(Request({1}, 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.Trailer("retry-after-ms"), "750");

  engine_->set_reject(absl::InvalidArgumentError("prompt too long for the KV pool"));
  r = Generate(Request({1}, 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.status.error_message(), "prompt too long for the KV pool");
  EXPECT_EQ(r.Trailer("retry-after-ms"), "");

  engine_->set_reject(absl::OkStatus());
  r = Generate(Request({1}, 2));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.Tokens(), (std::vector<uint32_t>{2, 3}));
}

TEST_F(ServiceTest, EngineErrorMidStreamEndsWithItsStatusAfterTheTokensSoFar) {
  engine_->set_error_after(2);
  auto r = Generate(Request({1}, 10));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(r.status.error_message(), "fake engine failure");
  EXPECT_EQ(r.Tokens(), (std::vector<uint32_t>{2, 3}));
  for (const auto& m : r.messages) EXPECT_FALSE(m.finished());
}

TEST_F(ServiceTest, ClientCancelAbortsTheEngineRequest) {
  engine_->set_step_interval(milliseconds(5));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  auto reader = stub_->Generate(&ctx, Request({1}, 60, "cancel-me"));
  wpb::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(engine_->WaitFor([&] { return engine_->live() == 0; }, milliseconds(5000)));
  auto aborted = engine_->aborted();
  EXPECT_NE(std::find(aborted.begin(), aborted.end(), "cancel-me"), aborted.end());
  ASSERT_TRUE(engine_->WaitFor([&] { return server_->service().open_calls() == 0; }, milliseconds(5000)));
  // The id is free again.
  auto r = Generate(Request({1}, 2, "cancel-me"));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

TEST_F(ServiceTest, DeadlineBecomesTheEngineDeadline) {
  engine_->set_step_interval(milliseconds(10));
  const auto before = std::chrono::steady_clock::now();
  auto r = Generate(Request({1}, 60, "slow"), milliseconds(300));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  auto sub = engine_->submitted();
  ASSERT_EQ(sub.size(), 1u);
  const auto offset = std::chrono::duration_cast<milliseconds>(sub[0].deadline - before).count();
  EXPECT_GT(offset, 200);
  EXPECT_LE(offset, 400);
  EXPECT_TRUE(engine_->WaitFor([&] { return engine_->live() == 0; }, milliseconds(5000)));
}

TEST_F(ServiceTest, AbortRpcEndsTheCallWithCancelled) {
  engine_->set_paused(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  auto reader = stub_->Generate(&ctx, Request({1}, 10, "victim"));
  ASSERT_TRUE(engine_->WaitFor([&] { return engine_->live() == 1; }, milliseconds(5000)));

  // A second call with the same live id is refused.
  auto dup = Generate(Request({1}, 10, "victim"));
  EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(dup.status.error_message(), "request_id 'victim' is already running");

  wpb::AbortRequest abort;
  abort.set_request_id("victim");
  wpb::AbortResponse resp;
  grpc::ClientContext actx;
  actx.set_deadline(Deadline(std::chrono::seconds(10)));
  ASSERT_TRUE(stub_->Abort(&actx, abort, &resp).ok());
  EXPECT_TRUE(resp.found());
  wpb::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(st.error_message(), "request aborted");

  abort.set_request_id("nobody");
  grpc::ClientContext actx2;
  actx2.set_deadline(Deadline(std::chrono::seconds(10)));
  ASSERT_TRUE(stub_->Abort(&actx2, abort, &resp).ok());
  EXPECT_FALSE(resp.found());
}

TEST_F(ServiceTest, ConcurrentStreamsEachGetTheirOwnTokens) {
  std::vector<std::thread> threads;
  std::vector<StreamResult> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { results[i] = Generate(Request({static_cast<uint32_t>(100 * i)}, 20)); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    std::vector<uint32_t> want;
    for (uint32_t k = 1; k <= 20; ++k) want.push_back(100 * i + k);
    EXPECT_EQ(results[i].Tokens(), want) << i;
  }
}

TEST_F(ServiceTest, GetLoadAndInfo) {
  engine_->set_paused(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  auto reader = stub_->Generate(&ctx, Request({1}, 3));
  ASSERT_TRUE(engine_->WaitFor([&] { return engine_->live() == 1; }, milliseconds(5000)));
  wpb::GetLoadResponse load;
  grpc::ClientContext lctx;
  lctx.set_deadline(Deadline(std::chrono::seconds(10)));
  ASSERT_TRUE(stub_->GetLoad(&lctx, wpb::GetLoadRequest(), &load).ok());
  EXPECT_EQ(load.running(), 1u);
  EXPECT_EQ(load.state_slots_used(), 1u);
  EXPECT_EQ(load.state_slots_total(), 8u);
  EXPECT_EQ(load.kv_blocks_used(), 3u);
  EXPECT_EQ(load.kv_blocks_total(), 100u);
  EXPECT_EQ(load.open_calls(), 1u);
  EXPECT_FALSE(load.draining());
  engine_->set_paused(false);
  wpb::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  EXPECT_TRUE(reader->Finish().ok());

  wpb::InfoResponse info;
  grpc::ClientContext ictx;
  ictx.set_deadline(Deadline(std::chrono::seconds(10)));
  ASSERT_TRUE(stub_->Info(&ictx, wpb::InfoRequest(), &info).ok());
  EXPECT_EQ(info.model_name(), "tiny");
  EXPECT_EQ(info.vocab_size(), 1000u);
  EXPECT_EQ(info.max_model_len(), 64u);
  ASSERT_EQ(info.eos_token_ids_size(), 1);
}

}  // namespace
}  // namespace quarry::testing
