// A scripted fake quarry.v1.Quarry server for quarry-bench's self-test: GenerateStream and ChatStream answer
// with max_tokens tokens on a fixed clock (first message `first_ms` after the call arrives, then one every
// `gap_ms`, each message `tokens_per_chunk` tokens, times anchored to the arrival so delays do not
// accumulate); the last message carries usage. A prompt containing "FAIL" gets UNAVAILABLE at once.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "quarry/v1/quarry.grpc.pb.h"

namespace quarry::bench::testing {

struct Script {
  int first_ms = 50;
  int gap_ms = 10;
  int tokens_per_chunk = 1;
  int prompt_tokens = 17;  // reported in usage
};

class FakeQuarry final : public v1::Quarry::Service {
 public:
  explicit FakeQuarry(Script s) : script_(s) {}
  grpc::Status GenerateStream(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                              grpc::ServerWriter<v1::GenerateStreamResponse>* writer) override;
  grpc::Status ChatStream(grpc::ServerContext* ctx, const v1::ChatRequest* req,
                          grpc::ServerWriter<v1::ChatStreamResponse>* writer) override;
  grpc::Status GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest*, v1::GetModelInfoResponse* r) override;

  int calls() const { return calls_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }
  std::string last_request_id() const;

 private:
  template <typename Msg, typename Writer>
  grpc::Status Play(grpc::ServerContext* ctx, uint32_t max_tokens, bool fail, Writer* writer);

  Script script_;
  std::atomic<int> calls_{0}, in_flight_{0}, max_in_flight_{0};
  mutable std::mutex mu_;
  std::string last_id_;
};

// The fake server on 127.0.0.1 (OS-chosen port).
class FakeServer {
 public:
  explicit FakeServer(Script s);
  ~FakeServer();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeQuarry& service() { return service_; }

 private:
  FakeQuarry service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace quarry::bench::testing
