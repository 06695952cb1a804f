// The scripted fake quarry.v1.Quarry server (see fake_server.h).
#include "tests/bench/fake_server.h"

#include <chrono>
#include <thread>

namespace quarry::bench::testing {

template <typename Msg, typename Writer>
grpc::Status FakeQuarry::Play(grpc::ServerContext* ctx, uint32_t max_tokens, bool fail, Writer* writer) {
  const auto arrival = std::chrono::steady_clock::now();
  ++calls_;
  const int now_in = ++in_flight_;
  int seen = max_in_flight_.load();
  while (now_in > seen && !max_in_flight_.compare_exchange_weak(seen, now_in)) {
  }
  struct Leave {
    std::atomic<int>* n;
    ~Leave() { --*n; }
  } leave{&in_flight_};
  if (fail) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted failure");
  uint32_t sent = 0;
  for (int k = 0; sent < max_tokens; ++k) {
    std::this_thread::sleep_until(arrival + std::chrono::milliseconds(script_.first_ms + k * script_.gap_ms));
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled");
    Msg m;
    std::string text;
    for (int t = 0; t < script_.tokens_per_chunk && sent < max_tokens; ++t, ++sent) {
      m.add_token_ids(1000 + sent);
      text += " tok";
    }
    if constexpr (std::is_same_v<Msg, v1::ChatStreamResponse>) {
      m.set_content(text);
    } else {
      m.set_text(text);
    }
    if (sent == max_tokens) {
      m.set_finish_reason(v1::FINISH_REASON_LENGTH);
      m.mutable_usage()->set_prompt_tokens(script_.prompt_tokens);
      m.mutable_usage()->set_completion_tokens(sent);
      m.mutable_usage()->set_total_tokens(script_.prompt_tokens + sent);
    }
    if (!writer->Write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  return grpc::Status::OK;
}

grpc::Status FakeQuarry::GenerateStream(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                        grpc::ServerWriter<v1::GenerateStreamResponse>* writer) {
  {
    std::lock_guard<std::mutex> l(mu_);
    last_id_ = req->request_id();
  }
  const uint32_t n = req->stopping().has_max_tokens() ? req->stopping().max_tokens() : 16;
  return Play<v1::GenerateStreamResponse>(ctx, n, req->text().find("FAIL") != std::string::npos, writer);
}

grpc::Status FakeQuarry::ChatStream(grpc::ServerContext* ctx, const v1::ChatRequest* req,
                                    grpc::ServerWriter<v1::ChatStreamResponse>* writer) {
  {
    std::lock_guard<std::mutex> l(mu_);
    last_id_ = req->request_id();
  }
  if (req->messages_size() == 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no messages");
  const uint32_t n = req->stopping().has_max_tokens() ? req->stopping().max_tokens() : 16;
  return Play<v1::ChatStreamResponse>(ctx, n, req->messages(0).content().find("FAIL") != std::string::npos, writer);
}

grpc::Status FakeQuarry::GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest*,
                                      v1::GetModelInfoResponse* r) {
  r->mutable_model_info()->set_id("fake-granite");
  r->mutable_model_info()->set_max_model_len(4096);
  return grpc::Status::OK;
}

std::string FakeQuarry::last_request_id() const {
  std::lock_guard<std::mutex> l(mu_);
  return last_id_;
}

FakeServer::FakeServer(Script s) : service_(s) {
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  b.RegisterService(&service_);
  server_ = b.BuildAndStart();
}

FakeServer::~FakeServer() { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2)); }

}  // namespace quarry::bench::testing
