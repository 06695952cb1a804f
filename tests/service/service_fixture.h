// Test fixture: a FakeEngine behind the real worker gRPC server on 127.0.0.1:0, a client stub, and helpers that
// run a whole Generate stream with a deadline (every wait in these tests is bounded).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "quarry/v1/worker.grpc.pb.h"
#include "tests/service/fake_engine.h"
#include "worker/service/metrics.h"
#include "worker/service/server.h"

namespace quarry::testing {

namespace wpb = ::quarry::worker::v1;

inline constexpr int64_t kVocab = 1000;
inline constexpr int64_t kMaxModelLen = 64;

struct StreamResult {
  grpc::Status status;
  std::vector<wpb::GenerateResponse> messages;
  std::multimap<grpc::string_ref, grpc::string_ref> trailers;  // valid while `context` lives
  std::unique_ptr<grpc::ClientContext> context;

  std::vector<uint32_t> Tokens() const {
    std::vector<uint32_t> t;
    for (const auto& m : messages) t.insert(t.end(), m.token_ids().begin(), m.token_ids().end());
    return t;
  }
  std::string Trailer(const std::string& key) const {
    auto it = trailers.find(key);
    return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
  }
};

inline wpb::GenerateRequest Request(std::vector<uint32_t> prompt, int max_tokens, const std::string& id = "") {
  wpb::GenerateRequest r;
  r.set_request_id(id);
  for (uint32_t t : prompt) r.add_prompt_token_ids(t);
  if (max_tokens > 0) r.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(max_tokens));
  return r;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }
  void TearDown() override {
    server_.reset();  // drains (aborting anything left) before the engine goes
    engine_.reset();
  }

  void StartServer() {
    engine_ = std::make_unique<FakeEngine>(kVocab);
    metrics_ = std::make_unique<WorkerMetrics>("tiny", kMaxModelLen, [e = engine_.get()] { return e->GetLoad(); });
    service::WorkerServiceOptions so;
    so.info.set_model_name("tiny");
    so.info.set_vocab_size(kVocab);
    so.info.set_max_model_len(kMaxModelLen);
    so.info.add_eos_token_ids(0);
    so.retry_after_ms = 200;
    service::WorkerServerOptions opts;
    opts.host = "127.0.0.1";
    opts.port = 0;
    auto server = service::WorkerServer::Start(engine_.get(), metrics_.get(), so, opts);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(channel_->WaitForConnected(Deadline(std::chrono::seconds(10))));
    stub_ = wpb::Worker::NewStub(channel_);
  }

  static std::chrono::system_clock::time_point Deadline(std::chrono::milliseconds d) {
    return std::chrono::system_clock::now() + d;
  }

  // Runs a Generate call to the end (10 s deadline unless given).
  StreamResult Generate(const wpb::GenerateRequest& req,
                        std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    StreamResult r;
    r.context = std::make_unique<grpc::ClientContext>();
    r.context->set_deadline(Deadline(deadline));
    auto reader = stub_->Generate(r.context.get(), req);
    wpb::GenerateResponse msg;
    while (reader->Read(&msg)) r.messages.push_back(msg);
    r.status = reader->Finish();
    r.trailers = r.context->GetServerTrailingMetadata();
    return r;
  }

  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<service::WorkerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wpb::Worker::Stub> stub_;
};

}  // namespace quarry::testing
