// Client helpers for the cluster tests: request shapes and a GenerateStream reader that records what came back.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "quarry/v1/quarry.grpc.pb.h"

namespace quarry::testing {

// A text prompt generating exactly `max_tokens` tokens (ignore_eos), with token ids and usage returned.
inline v1::GenerateRequest FixedLength(const std::string& text, uint32_t max_tokens) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_sampling()->set_seed(1);
  r.mutable_stopping()->set_max_tokens(max_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  r.mutable_output()->set_return_token_ids(true);
  r.mutable_output()->set_include_usage(true);
  return r;
}

struct StreamResult {
  grpc::Status status;
  int messages = 0;
  int tokens = 0;  // token ids received
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  uint32_t completion_tokens = 0;  // usage on the last message
  std::chrono::steady_clock::time_point ended;
};

// Reads a GenerateStream to its end. `on_message(tokens so far)` runs after each message (may cancel `ctx`).
inline StreamResult ReadStream(v1::Quarry::Stub& stub, grpc::ClientContext* ctx, const v1::GenerateRequest& req,
                               const std::function<void(int)>& on_message = {}) {
  StreamResult r;
  auto reader = stub.GenerateStream(ctx, req);
  v1::GenerateStreamResponse m;
  while (reader->Read(&m)) {
    ++r.messages;
    r.tokens += m.token_ids_size();
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      r.finish_reason = m.finish_reason();
      r.completion_tokens = m.usage().completion_tokens();
    }
    if (on_message) on_message(r.tokens);
  }
  r.status = reader->Finish();
  r.ended = std::chrono::steady_clock::now();
  return r;
}

}  // namespace quarry::testing

namespace quarry::testing {

// N GenerateStream calls on their own threads. The destructor cancels whatever is still open and joins, so a
// failed ASSERT in the test cannot leave threads behind.
class StreamGroup {
 public:
  StreamGroup(v1::Quarry::Stub& stub, int n, const std::function<v1::GenerateRequest(int)>& make,
              std::chrono::milliseconds deadline)
      : results_(n) {
    for (int i = 0; i < n; ++i) {
      ctx_.push_back(std::make_unique<grpc::ClientContext>());
      ctx_.back()->set_deadline(std::chrono::system_clock::now() + deadline);
    }
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, &stub, req = make(i), i] {
        bool counted = false;
        results_[i] = ReadStream(stub, ctx_[i].get(), req, [&](int) {
          if (!counted) {
            counted = true;
            ++started_;
          }
        });
        ++done_;
      });
    }
  }
  ~StreamGroup() {
    for (auto& c : ctx_) c->TryCancel();
    Join();
  }
  void Join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Waits until every stream got its first message, or one ended, or `timeout` passed.
  bool WaitAllStarted(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (started_.load() < size() && done_.load() == 0 && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return started_.load() == size();
  }
  int size() const { return static_cast<int>(results_.size()); }
  int started() const { return started_.load(); }
  int done() const { return done_.load(); }
  // Valid after Join().
  const StreamResult& result(int i) const { return results_[i]; }

 private:
  std::vector<StreamResult> results_;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctx_;
  std::vector<std::thread> threads_;
  std::atomic<int> started_{0}, done_{0};
};

}  // namespace quarry::testing
