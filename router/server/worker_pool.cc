// WorkerPool: channels, load polling and selection.
#include "router/server/worker_pool.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace quarry {

WorkerPool::WorkerPool(const std::vector<std::string>& addresses, std::chrono::milliseconds poll_interval)
    : interval_(poll_interval) {
  for (size_t i = 0; i < addresses.size(); ++i) {
    auto h = std::make_unique<WorkerHandle>();
    h->index = i;
    h->address = addresses[i];
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    h->stub = worker::v1::Worker::NewStub(
        grpc::CreateCustomChannel(addresses[i], grpc::InsecureChannelCredentials(), args));
    workers_.push_back(std::move(h));
    state_.push_back(std::make_unique<State>());
  }
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  PollOnce();
  poller_ = std::thread([this] { PollLoop(); });
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void WorkerPool::PollOnce() {
  for (size_t i = 0; i < workers_.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1000));
    worker::v1::GetLoadResponse resp;
    grpc::Status st = workers_[i]->stub->GetLoad(&ctx, worker::v1::GetLoadRequest(), &resp);
    const bool ok = st.ok() && !resp.draining();
    state_[i]->healthy = ok;
    if (ok) state_[i]->load = static_cast<int64_t>(resp.running() + resp.waiting());
  }
  cv_.notify_all();
}

void WorkerPool::PollLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, interval_, [this] { return stop_; });
    if (stop_) break;
    lock.unlock();
    PollOnce();
    lock.lock();
  }
}

bool WorkerPool::WaitForHealthy(size_t n, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (healthy_count() >= n) return true;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  return healthy_count() >= n;
}

size_t WorkerPool::healthy_count() const {
  size_t n = 0;
  for (const auto& s : state_) n += s->healthy.load();
  return n;
}

absl::StatusOr<WorkerHandle*> WorkerPool::Pick(const std::vector<size_t>& exclude) {
  const size_t n = workers_.size();
  const uint64_t start = rr_.fetch_add(1);
  int64_t best_load = std::numeric_limits<int64_t>::max();
  size_t best = n;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;  // rotating start: round robin among equally loaded workers
    if (!state_[i]->healthy || std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    const int64_t load = state_[i]->load + state_[i]->inflight;
    if (load < best_load) {
      best_load = load;
      best = i;
    }
  }
  if (best == n) {
    return absl::UnavailableError(absl::StrCat("no healthy worker (", healthy_count(), " of ", n, " healthy)"));
  }
  ++state_[best]->inflight;
  return workers_[best].get();
}

void WorkerPool::MarkUnhealthy(size_t index) { state_[index]->healthy = false; }

void WorkerPool::Release(size_t index) { --state_[index]->inflight; }

absl::StatusOr<worker::v1::InfoResponse> WorkerPool::Info() {
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!state_[i]->healthy) continue;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2000));
    worker::v1::InfoResponse resp;
    if (workers_[i]->stub->Info(&ctx, worker::v1::InfoRequest(), &resp).ok()) return resp;
  }
  return absl::UnavailableError("no healthy worker answered Info");
}

}  // namespace quarry
