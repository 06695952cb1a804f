// Watches in-flight router calls from one thread: when the client cancels (or a time_limit_ms runs out) the
// matching worker call is cancelled, so the worker frees the request's slot and pages at its next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <grpcpp/grpcpp.h>

namespace quarry {

class CancelWatcher {
 public:
  CancelWatcher();
  ~CancelWatcher();

  struct Entry {
    grpc::ServerContext* server = nullptr;
    grpc::ClientContext* client = nullptr;
    std::optional<std::chrono::steady_clock::time_point> time_limit;
    std::atomic<bool> time_limit_hit{false};
    std::atomic<bool> client_cancelled{false};
  };
  // Registers until Remove; the contexts must outlive the registration.
  uint64_t Add(Entry* entry);
  void Remove(uint64_t key);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, Entry*> entries_;
  uint64_t next_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace quarry
