// A scripted stand-in for quarry::Engine (worker/engine/engine.h) for the worker service tests: a step thread
// emits one deterministic token per live request per step (token i of a request = (last prompt token + i) %
// vocab), honours stop tokens, max_tokens, deadlines and Abort, and records what it was asked to do.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "worker/engine/engine.h"

namespace quarry::testing {

class FakeEngine : public Engine {
 public:
  explicit FakeEngine(int64_t vocab_size = 1000, EngineOptions options = {});
  ~FakeEngine() override;

  absl::Status Submit(EngineRequest request, OutputCallback on_output) override;
  void Abort(const std::string& id) override;
  EngineLoad GetLoad() const override;
  const EngineOptions& options() const override { return options_; }
  const std::string& backend_summary() const override { return summary_; }
  void Shutdown() override;

  // Script knobs (set before or between requests).
  void set_step_interval(std::chrono::milliseconds d);
  void set_paused(bool paused);                  // paused: no tokens (aborts and deadlines still end requests)
  void set_reject(absl::Status status);          // Submit returns this while non-OK
  void set_error_after(int64_t tokens);          // end every request with INTERNAL after this many tokens (-1 = off)

  // What happened.
  std::vector<EngineRequest> submitted() const;
  std::vector<std::string> aborted() const;
  int64_t live() const;
  // Polls `pred` (every 2 ms) until it holds or `timeout` passes; false on timeout.
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

 private:
  struct Live {
    EngineRequest request;
    OutputCallback on_output;
    int64_t generated = 0;
    bool abort = false;
    std::chrono::steady_clock::time_point submitted_at;
  };
  void Loop();
  // Output for one request this step; sets `done` when it is the final one.
  RequestOutput Step(Live& r, bool* done);

  const int64_t vocab_size_;
  EngineOptions options_;
  std::string summary_ = "fake engine";
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Live> live_;
  std::vector<EngineRequest> submitted_;
  std::vector<std::string> aborted_;
  std::chrono::milliseconds step_interval_{1};
  bool paused_ = false;
  absl::Status reject_;
  int64_t error_after_ = -1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace quarry::testing
