#include "tests/service/fake_engine.h"

#include <algorithm>
#include <utility>

namespace quarry::testing {

FakeEngine::FakeEngine(int64_t vocab_size, EngineOptions options)
    : vocab_size_(vocab_size), options_(options), thread_([this] { Loop(); }) {}

FakeEngine::~FakeEngine() { Shutdown(); }

absl::Status FakeEngine::Submit(EngineRequest request, OutputCallback on_output) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return absl::UnavailableError("engine is shut down");
  if (!reject_.ok()) return reject_;
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt must be non-empty, got 0 tokens");
  submitted_.push_back(request);
  live_.push_back(Live{std::move(request), std::move(on_output), 0, false, std::chrono::steady_clock::now()});
  cv_.notify_all();
  return absl::OkStatus();
}

void FakeEngine::Abort(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_.push_back(id);
  for (auto& r : live_) {
    if (r.request.id == id) r.abort = true;
  }
  cv_.notify_all();
}

EngineLoad FakeEngine::GetLoad() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineLoad l;
  l.running = static_cast<int64_t>(live_.size());
  l.state_slots_used = l.running;
  l.state_slots_total = options_.state_slots;
  l.kv_blocks_used = 3 * l.running;
  l.kv_blocks_total = 100;
  return l;
}

void FakeEngine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void FakeEngine::set_step_interval(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> lock(mu_);
  step_interval_ = d;
}
void FakeEngine::set_paused(bool paused) {
  std::lock_guard<std::mutex> lock(mu_);
  paused_ = paused;
  cv_.notify_all();
}
void FakeEngine::set_reject(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  reject_ = std::move(status);
}
void FakeEngine::set_error_after(int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  error_after_ = tokens;
}

std::vector<EngineRequest> FakeEngine::submitted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_;
}
std::vector<std::string> FakeEngine::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}
int64_t FakeEngine::live() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(live_.size());
}

bool FakeEngine::WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

RequestOutput FakeEngine::Step(Live& r, bool* done) {
  RequestOutput out;
  out.prompt_tokens = static_cast<int64_t>(r.request.prompt.size());
  auto end = [&](FinishReason reason, absl::Status status) {
    out.finished = true;
    out.finish_reason = reason;
    out.status = std::move(status);
    out.timing = RequestTiming{.queue_us = 5, .prefill_us = 7, .decode_us = 11, .ttft_us = 12};
    *done = true;
  };
  if (r.abort) {
    end(FinishReason::kCancelled, absl::CancelledError("request aborted"));
  } else if (std::chrono::steady_clock::now() >= r.request.deadline) {
    end(FinishReason::kDeadline, absl::DeadlineExceededError("deadline passed"));
  } else if (!paused_) {
    if (error_after_ >= 0 && r.generated >= error_after_) {
      end(FinishReason::kError, absl::InternalError("fake engine failure"));
    } else {
      const int32_t token = static_cast<int32_t>((r.request.prompt.back() + r.generated + 1) % vocab_size_);
      ++r.generated;
      out.tokens.push_back(token);
      if (r.request.logprobs) {
        TokenLogprob lp{token, -0.5f, {}};
        for (int32_t k = 0; k < r.request.top_logprobs; ++k) lp.top.emplace_back(token + k, -0.5f - k);
        out.logprobs.push_back(lp);
      }
      const auto& stop = r.request.stopping.stop_token_ids;
      if (r.generated >= r.request.stopping.min_tokens && std::find(stop.begin(), stop.end(), token) != stop.end()) {
        out.matched_stop_token = token;
        end(FinishReason::kStop, absl::OkStatus());
      } else if (r.generated >= r.request.stopping.max_tokens) {
        end(FinishReason::kLength, absl::OkStatus());
      }
    }
  }
  out.completion_tokens = r.generated;
  return out;
}

void FakeEngine::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, step_interval_, [this] { return stop_ || (!live_.empty() && !paused_); });
    if (stop_) break;
    // Callbacks run under the lock, as on a real engine thread nothing else advances meanwhile.
    for (size_t i = 0; i < live_.size();) {
      bool done = false;
      RequestOutput out = Step(live_[i], &done);
      if (!out.tokens.empty() || done) live_[i].on_output(out);
      if (done) {
        live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (!paused_ && !live_.empty()) {
      lock.unlock();
      std::this_thread::sleep_for(step_interval_);
      lock.lock();
    }
  }
  // Shutdown: everything still live ends CANCELLED.
  for (auto& r : live_) {
    RequestOutput out;
    out.finished = true;
    out.finish_reason = FinishReason::kCancelled;
    out.status = absl::CancelledError("engine shut down");
    out.prompt_tokens = static_cast<int64_t>(r.request.prompt.size());
    out.completion_tokens = r.generated;
    r.on_output(out);
  }
  live_.clear();
}

}  // namespace quarry::testing
