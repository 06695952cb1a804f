#include "worker/parallel/gloo_communicator.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <csignal>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"
#include "worker/parallel/tcp_store.h"

namespace quarry {

absl::Status GlooErrorToStatus(const char* what, const std::exception& e) {
  std::string msg = e.what();
  std::string lower = msg;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  // Gloo: "Timed out waiting ...", "Read timeout", "Connect timeout"; stores: "Wait timeout for key(s)".
  // "Application timeout caused pair closure" follows an earlier timeout on the same pair.
  if (lower.find("timed out") != std::string::npos || lower.find("timeout") != std::string::npos) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": ", msg));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", msg));
}

namespace {

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

bool IsPrefixSum(std::span<const int64_t> counts, std::span<const int64_t> offsets) {
  int64_t at = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (offsets[i] != at) return false;
    at += counts[i];
  }
  return true;
}

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const GroupConfig& config, std::unique_ptr<RendezvousStore> store,
                   std::shared_ptr<gloo::transport::Device> device, std::shared_ptr<gloo::rendezvous::Context> context)
      : config_(config), store_(std::move(store)), device_(std::move(device)), context_(std::move(context)) {}

  ~GlooCommunicator() override {
    // Drop the context (pairs, sockets) before the device that runs their event loop.
    context_.reset();
    device_.reset();
  }

  int rank() const override { return config_.rank; }
  int world_size() const override { return config_.world_size; }
  bool healthy() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return !broken_;
  }

  absl::Status AllToAllV(const void* send, std::span<const int64_t> send_counts,
                         std::span<const int64_t> send_offsets, void* recv, std::span<const int64_t> recv_counts,
                         std::span<const int64_t> recv_offsets) override {
    int64_t send_total = 0, recv_total = 0;
    if (absl::Status st = CheckAllToAllVArgs(config_.world_size, send, send_counts, send_offsets, recv, recv_counts,
                                             recv_offsets, &send_total, &recv_total);
        !st.ok()) {
      return st;
    }
    const size_t n = static_cast<size_t>(config_.world_size);
    // gloo::alltoallv takes per-rank lengths and packs pieces in rank order: stage non-contiguous layouts.
    const bool send_packed = IsPrefixSum(send_counts, send_offsets);
    const bool recv_packed = IsPrefixSum(recv_counts, recv_offsets);
    std::vector<uint8_t> send_stage, recv_stage;
    uint8_t dummy_in = 0, dummy_out = 0;  // gloo wants a buffer even for zero bytes
    const uint8_t* in = send_total > 0 ? static_cast<const uint8_t*>(send) : &dummy_in;
    uint8_t* out = recv_total > 0 ? static_cast<uint8_t*>(recv) : &dummy_out;
    if (!send_packed && send_total > 0) {
      send_stage.resize(static_cast<size_t>(send_total));
      size_t at = 0;
      for (size_t p = 0; p < n; ++p) {
        std::memcpy(send_stage.data() + at, static_cast<const uint8_t*>(send) + send_offsets[p],
                    static_cast<size_t>(send_counts[p]));
        at += static_cast<size_t>(send_counts[p]);
      }
      in = send_stage.data();
    }
    if (!recv_packed && recv_total > 0) {
      recv_stage.resize(static_cast<size_t>(recv_total));
      out = recv_stage.data();
    }
    std::vector<int64_t> in_elems(send_counts.begin(), send_counts.end());
    std::vector<int64_t> out_elems(recv_counts.begin(), recv_counts.end());
    absl::Status st = Run("AllToAllV", [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(const_cast<uint8_t*>(in), in_elems);
      opts.setOutput(out, out_elems);
      opts.setTimeout(config_.timeout);
      gloo::alltoallv(opts);
    });
    if (st.ok() && !recv_stage.empty()) {
      size_t at = 0;
      for (size_t p = 0; p < n; ++p) {
        std::memcpy(static_cast<uint8_t*>(recv) + recv_offsets[p], recv_stage.data() + at,
                    static_cast<size_t>(recv_counts[p]));
        at += static_cast<size_t>(recv_counts[p]);
      }
    }
    return st;
  }

  absl::Status AllReduceSum(std::span<int64_t> values) override {
    return Reduce("AllReduceSum", values, static_cast<ReduceFn>(&gloo::sum<int64_t>));
  }
  absl::Status AllReduceSum(std::span<float> values) override {
    return Reduce("AllReduceSum", values, static_cast<ReduceFn>(&gloo::sum<float>));
  }
  absl::Status AllReduceMax(std::span<int64_t> values) override {
    return Reduce("AllReduceMax", values, static_cast<ReduceFn>(&gloo::max<int64_t>));
  }

  absl::Status AllGather(std::span<const int64_t> in, std::span<int64_t> out) override {
    if (out.size() != in.size() * static_cast<size_t>(config_.world_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllGather: out has ", out.size(), " elements, expected world_size * ", in.size()));
    }
    if (in.empty()) return Run("AllGather", [] {});
    return Run("AllGather", [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(const_cast<int64_t*>(in.data()), in.size());
      opts.setOutput(out.data(), out.size());
      opts.setTimeout(config_.timeout);
      gloo::allgather(opts);
    });
  }

  absl::Status Broadcast(std::span<uint8_t> data, int root) override {
    if (root < 0 || root >= config_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("Broadcast: root ", root, " out of range"));
    }
    if (data.empty()) return Run("Broadcast", [] {});
    return Run("Broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setRoot(root);
      opts.setTimeout(config_.timeout);
      gloo::broadcast(opts);
    });
  }

  absl::Status Barrier() override {
    return Run("Barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTimeout(config_.timeout);
      gloo::barrier(opts);
    });
  }

 private:
  template <typename T>
  absl::Status Reduce(const char* what, std::span<T> values, ReduceFn fn) {
    if (values.empty()) return Run(what, [] {});
    return Run(what, [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(values.data(), values.size());
      opts.setReduceFunction(fn);
      opts.setTimeout(config_.timeout);
      gloo::allreduce(opts);
    });
  }

  // Runs one Gloo collective; any exception breaks the communicator for good.
  template <typename F>
  absl::Status Run(const char* what, F body) {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) {
      return absl::UnavailableError(absl::StrCat(what, ": Gloo group is broken (", broken_reason_,
                                                 "); recreate the communicator"));
    }
    absl::Status st;
    try {
      body();
      return absl::OkStatus();
    } catch (const std::exception& e) {  // gloo::Exception, gloo::EnforceNotMet, std::system_error, ...
      st = GlooErrorToStatus(what, e);
    } catch (...) {
      st = absl::UnavailableError(absl::StrCat(what, ": unknown exception from Gloo"));
    }
    broken_ = true;
    broken_reason_ = std::string(st.message());
    return st;
  }

  const GroupConfig config_;
  std::unique_ptr<RendezvousStore> store_;  // rank 0 of a TCP rendezvous serves the store for the group's life
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  mutable std::mutex mu_;
  bool broken_ = false;
  std::string broken_reason_;
};

// Gloo's TCP pairs write with writev(2), which raises SIGPIPE when a peer's connection is gone: ignore it
// (once, only where nobody installed a handler) so a dead peer is an error, not the death of this process.
void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigemptyset(&ignore.sa_mask);
      ::sigaction(SIGPIPE, &ignore, nullptr);
    }
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(const GroupConfig& config) {
  IgnoreSigpipeOnce();
  if (config.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size ", config.world_size, " must be >= 1"));
  }
  if (config.rank < 0 || config.rank >= config.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", config.rank, " out of range for world_size ", config.world_size));
  }
  if (config.timeout.count() <= 0) return absl::InvalidArgumentError("group timeout must be positive");
  auto store = RendezvousStore::Create(config);
  if (!store.ok()) return store.status();
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = config.interface_host;
    device = gloo::transport::tcp::CreateDevice(attr);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gloo TCP device on '", config.interface_host, "': ", e.what()));
  }
  try {
    context = std::make_shared<gloo::rendezvous::Context>(config.rank, config.world_size);
    context->setTimeout(config.timeout);
    context->connectFullMesh((*store)->store(), device);
  } catch (const std::exception& e) {
    absl::Status st = GlooErrorToStatus("Gloo rendezvous", e);
    return absl::Status(st.code(), absl::StrCat(st.message(), " (rank ", config.rank, " of ", config.world_size,
                                                ", group '", config.group_name, "')"));
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<GlooCommunicator>(config, *std::move(store), std::move(device), std::move(context)));
}

}  // namespace quarry
