// The router's view of the workers: one channel per worker address, a background health/load poll (GetLoad),
// least-load selection with round robin among equals, and exclusion of workers that failed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "quarry/v1/worker.grpc.pb.h"

namespace quarry {

struct WorkerHandle {
  size_t index = 0;
  std::string address;
  std::unique_ptr<worker::v1::Worker::Stub> stub;
};

class WorkerPool {
 public:
  explicit WorkerPool(const std::vector<std::string>& addresses,
                      std::chrono::milliseconds poll_interval = std::chrono::milliseconds(500));
  ~WorkerPool();

  void Start();
  void Stop();
  // Waits until at least `n` workers answered GetLoad (or the timeout passes).
  bool WaitForHealthy(size_t n, std::chrono::milliseconds timeout);

  // Least loaded healthy worker not in `exclude` (running + waiting + calls routed since the last poll);
  // UNAVAILABLE when none is healthy.
  absl::StatusOr<WorkerHandle*> Pick(const std::vector<size_t>& exclude);
  // A call to this worker failed with UNAVAILABLE: skip it until a poll succeeds again.
  void MarkUnhealthy(size_t index);
  void Release(size_t index);  // a routed call ended

  size_t healthy_count() const;
  size_t size() const { return workers_.size(); }
  // First healthy worker's Info (for model facts); UNAVAILABLE when none answers.
  absl::StatusOr<worker::v1::InfoResponse> Info();

 private:
  struct State {
    std::atomic<bool> healthy{false};
    std::atomic<int64_t> load{0};      // from the last poll
    std::atomic<int64_t> inflight{0};  // calls routed by this router and not ended
  };
  void PollLoop();
  void PollOnce();

  std::vector<std::unique_ptr<WorkerHandle>> workers_;
  std::vector<std::unique_ptr<State>> state_;
  std::chrono::milliseconds interval_;
  std::atomic<uint64_t> rr_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread poller_;
};

}  // namespace quarry
