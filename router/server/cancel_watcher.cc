// CancelWatcher: a 20 ms poll over registered calls.
#include "router/server/cancel_watcher.h"

namespace quarry {

CancelWatcher::CancelWatcher() : thread_([this] { Loop(); }) {}

CancelWatcher::~CancelWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t CancelWatcher::Add(Entry* entry) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[next_] = entry;
  return next_++;
}

void CancelWatcher::Remove(uint64_t key) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(key);
}

void CancelWatcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stop_; });
    const auto now = std::chrono::steady_clock::now();
    for (auto& [key, e] : entries_) {
      if (!e->client_cancelled && e->server->IsCancelled()) {
        e->client_cancelled = true;
        e->client->TryCancel();
      }
      if (e->time_limit && !e->time_limit_hit && now >= *e->time_limit) {
        e->time_limit_hit = true;
        e->client->TryCancel();
      }
    }
  }
}

}  // namespace quarry
