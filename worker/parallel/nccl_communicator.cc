#include "worker/parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/parallel/gloo_communicator.h"
#include "worker/parallel/tcp_store.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

std::string NcclText(ncclResult_t r, ncclComm_t comm) {
  std::string s = ncclGetErrorString(r);
  if (comm != nullptr) {
    const char* last = ncclGetLastError(comm);
    if (last != nullptr && last[0] != '\0') absl::StrAppend(&s, " (", last, ")");
  }
  return s;
}

// Sleeps a little longer each poll: sub-millisecond reaction for short collectives, no spinning core for
// long ones.
class Backoff {
 public:
  void Wait() {
    if (spins_ < 64) {
      ++spins_;
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::microseconds(1000));
  }

 private:
  int spins_ = 0;
  std::chrono::microseconds delay_{20};
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const GroupConfig& config, int device, ncclComm_t comm, cudaStream_t stream, int* scratch)
      : config_(config), device_(device), comm_(comm), stream_(stream), scratch_(scratch) {}

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (comm_ != nullptr) {
      // Non-blocking finalize, waited for (bounded); a group that cannot finalize is aborted instead.
      bool clean = false;
      ncclResult_t r = ncclCommFinalize(comm_);
      if (r == ncclSuccess || r == ncclInProgress) {
        const auto deadline = Clock::now() + config_.timeout;
        ncclResult_t state = ncclInProgress;
        Backoff backoff;
        while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
               Clock::now() < deadline) {
          backoff.Wait();
        }
        clean = state == ncclSuccess;
      }
      if (clean) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
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
    return Run("AllToAllV", [&]() -> ncclResult_t {
      ncclResult_t r = ncclGroupStart();
      if (r != ncclSuccess) return r;
      for (size_t p = 0; p < n; ++p) {
        const int peer = static_cast<int>(p);
        if (send_counts[p] > 0) {
          r = ncclSend(static_cast<const uint8_t*>(send) + send_offsets[p], static_cast<size_t>(send_counts[p]),
                       ncclUint8, peer, comm_, stream_);
          if (r != ncclSuccess && r != ncclInProgress) break;
        }
        if (recv_counts[p] > 0) {
          r = ncclRecv(static_cast<uint8_t*>(recv) + recv_offsets[p], static_cast<size_t>(recv_counts[p]),
                       ncclUint8, peer, comm_, stream_);
          if (r != ncclSuccess && r != ncclInProgress) break;
        }
      }
      ncclResult_t end = ncclGroupEnd();
      return (r != ncclSuccess && r != ncclInProgress) ? r : end;
    });
  }

  absl::Status AllReduceSum(std::span<int64_t> values) override {
    return Reduce("AllReduceSum", values.data(), values.size(), ncclInt64, ncclSum);
  }
  absl::Status AllReduceSum(std::span<float> values) override {
    return Reduce("AllReduceSum", values.data(), values.size(), ncclFloat32, ncclSum);
  }
  absl::Status AllReduceMax(std::span<int64_t> values) override {
    return Reduce("AllReduceMax", values.data(), values.size(), ncclInt64, ncclMax);
  }

  absl::Status AllGather(std::span<const int64_t> in, std::span<int64_t> out) override {
    if (out.size() != in.size() * static_cast<size_t>(config_.world_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllGather: out has ", out.size(), " elements, expected world_size * ", in.size()));
    }
    if (in.empty()) return Run("AllGather", [] { return ncclSuccess; });
    return Run("AllGather", [&] { return ncclAllGather(in.data(), out.data(), in.size(), ncclInt64, comm_, stream_); });
  }

  absl::Status Broadcast(std::span<uint8_t> data, int root) override {
    if (root < 0 || root >= config_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("Broadcast: root ", root, " out of range"));
    }
    if (data.empty()) return Run("Broadcast", [] { return ncclSuccess; });
    return Run("Broadcast",
               [&] { return ncclBroadcast(data.data(), data.data(), data.size(), ncclUint8, root, comm_, stream_); });
  }

  absl::Status Barrier() override {
    return Run("Barrier", [&] { return ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_); });
  }

 private:
  absl::Status Reduce(const char* what, void* data, size_t count, ncclDataType_t type, ncclRedOp_t op) {
    if (count == 0) return Run(what, [] { return ncclSuccess; });
    return Run(what, [&] { return ncclAllReduce(data, data, count, type, op, comm_, stream_); });
  }

  // Enqueues with `enqueue`, then polls the communicator and the stream until the work completed, failed, or
  // the timeout passed (then aborts the communicator).
  template <typename F>
  absl::Status Run(const char* what, F enqueue) {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) {
      return absl::UnavailableError(absl::StrCat(what, ": NCCL group is broken (", broken_reason_,
                                                 "); recreate the communicator"));
    }
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) {
      return Break(absl::UnavailableError(absl::StrCat(what, ": cudaSetDevice: ", cudaGetErrorString(e))));
    }
    const auto deadline = Clock::now() + config_.timeout;
    ncclResult_t r = enqueue();
    if (r != ncclSuccess && r != ncclInProgress) {
      return Break(absl::UnavailableError(absl::StrCat(what, ": ", NcclText(r, comm_))));
    }
    Backoff backoff;
    while (true) {
      ncclResult_t async = ncclSuccess;
      ncclResult_t q = ncclCommGetAsyncError(comm_, &async);
      if (q != ncclSuccess) async = q;
      if (async != ncclSuccess && async != ncclInProgress) {
        return Break(absl::UnavailableError(absl::StrCat(what, ": NCCL error: ", NcclText(async, comm_))));
      }
      if (async == ncclSuccess) {  // enqueued; now the stream
        cudaError_t s = cudaStreamQuery(stream_);
        if (s == cudaSuccess) return absl::OkStatus();
        if (s != cudaErrorNotReady) {
          return Break(absl::UnavailableError(absl::StrCat(what, ": CUDA error: ", cudaGetErrorString(s))));
        }
      }
      if (Clock::now() >= deadline) {
        return Break(absl::DeadlineExceededError(absl::StrCat(
            what, ": NCCL collective did not complete within ", config_.timeout.count(), " ms (rank ",
            config_.rank, " of ", config_.world_size, "); communicator aborted")));
      }
      backoff.Wait();
    }
  }

  // Marks the communicator broken; aborts it so kernels waiting on dead peers end.
  absl::Status Break(absl::Status st) {
    broken_ = true;
    broken_reason_ = std::string(st.message());
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return st;
  }

  const GroupConfig config_;
  const int device_;
  ncclComm_t comm_;
  cudaStream_t stream_;
  int* scratch_;  // one device int for Barrier
  mutable std::mutex mu_;
  bool broken_ = false;
  std::string broken_reason_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const GroupConfig& config, int cuda_device) {
  if (config.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size ", config.world_size, " must be >= 1"));
  }
  if (config.rank < 0 || config.rank >= config.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", config.rank, " out of range for world_size ", config.world_size));
  }
  if (config.timeout.count() <= 0) return absl::InvalidArgumentError("group timeout must be positive");
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("NCCL communicator: no CUDA device (", e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")"));
  }
  if (cuda_device < 0 || cuda_device >= devices) {
    return absl::InvalidArgumentError(absl::StrCat("cuda_device ", cuda_device, " out of range (", devices, " devices)"));
  }
  if (cudaError_t e = cudaSetDevice(cuda_device); e != cudaSuccess) {
    return absl::UnavailableError(absl::StrCat("cudaSetDevice(", cuda_device, "): ", cudaGetErrorString(e)));
  }

  // Unique id: rank 0 makes it and publishes it through the rendezvous store.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  const bool need_store = config.world_size > 1 || !config.rendezvous_dir.empty() || !config.master_addr.empty();
  std::unique_ptr<RendezvousStore> store;
  if (config.rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return absl::UnavailableError(absl::StrCat("ncclGetUniqueId: ", NcclText(r, nullptr)));
    }
  }
  if (need_store) {
    auto created = RendezvousStore::Create(config);
    if (!created.ok()) return created.status();
    store = *std::move(created);
    try {
      if (config.rank == 0) {
        const char* bytes = reinterpret_cast<const char*>(&id);
        store->store().set("nccl_unique_id", std::vector<char>(bytes, bytes + sizeof(id)));
      } else {
        std::vector<char> bytes = store->store().get("nccl_unique_id");
        if (bytes.size() != sizeof(id)) {
          return absl::InternalError(absl::StrCat("nccl_unique_id in the store has ", bytes.size(), " bytes, expected ",
                                                  sizeof(id)));
        }
        std::memcpy(&id, bytes.data(), sizeof(id));
      }
    } catch (const std::exception& e) {
      return GlooErrorToStatus("NCCL bootstrap (rendezvous store)", e);
    }
  }

  ncclConfig_t nccl_config = NCCL_CONFIG_INITIALIZER;
  nccl_config.blocking = 0;
  std::string comm_name = absl::StrCat(config.group_name, "/", config.rank);
  nccl_config.commName = comm_name.c_str();
  ncclComm_t comm = nullptr;
  const auto deadline = Clock::now() + config.timeout;
  ncclResult_t r = ncclCommInitRankConfig(&comm, config.world_size, id, config.rank, &nccl_config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm != nullptr) ncclCommAbort(comm);
    return absl::UnavailableError(absl::StrCat("ncclCommInitRankConfig: ", NcclText(r, nullptr)));
  }
  Backoff backoff;
  while (true) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t q = ncclCommGetAsyncError(comm, &state);
    if (q != ncclSuccess) state = q;
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) {
      std::string text = NcclText(state, comm);
      ncclCommAbort(comm);
      return absl::UnavailableError(absl::StrCat("NCCL init (rank ", config.rank, " of ", config.world_size, "): ", text));
    }
    if (Clock::now() >= deadline) {
      ncclCommAbort(comm);
      return absl::DeadlineExceededError(absl::StrCat("NCCL init (rank ", config.rank, " of ", config.world_size,
                                                      ") did not complete within ", config.timeout.count(), " ms"));
    }
    backoff.Wait();
  }

  cudaStream_t stream = nullptr;
  int* scratch = nullptr;
  cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&scratch), sizeof(int));
  if (e == cudaSuccess) e = cudaMemset(scratch, 0, sizeof(int));
  if (e != cudaSuccess) {
    ncclCommAbort(comm);
    if (scratch != nullptr) cudaFree(scratch);
    if (stream != nullptr) cudaStreamDestroy(stream);
    return absl::ResourceExhaustedError(absl::StrCat("NCCL communicator stream/scratch: ", cudaGetErrorString(e)));
  }
  // The store is only needed for the bootstrap: every rank got the id once init completed.
  return std::unique_ptr<Communicator>(
      std::make_unique<NcclCommunicator>(config, cuda_device, comm, stream, scratch));
}

}  // namespace quarry
