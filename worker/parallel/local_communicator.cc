// LocalCommunicator: every collective is one "round" of two barriers over a shared state. Phase 1: each rank
// publishes a description of its call (pointers, sizes) and waits (with the timeout) for all ranks; then each
// rank validates every rank's description alike and reads what it needs from the others' buffers into its
// own output (all-reduce goes through a temporary because it is in place); phase 2: a barrier so that no
// rank leaves (and frees or rewrites its buffers) while a peer still reads them.
#include "worker/parallel/local_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

enum class Op { kAllToAllV, kAllReduceSumI64, kAllReduceSumF32, kAllReduceMaxI64, kAllGather, kBroadcast, kBarrier };

const char* OpName(Op op) {
  switch (op) {
    case Op::kAllToAllV: return "AllToAllV";
    case Op::kAllReduceSumI64: return "AllReduceSum(int64)";
    case Op::kAllReduceSumF32: return "AllReduceSum(float)";
    case Op::kAllReduceMaxI64: return "AllReduceMax(int64)";
    case Op::kAllGather: return "AllGather";
    case Op::kBroadcast: return "Broadcast";
    case Op::kBarrier: return "Barrier";
  }
  return "?";
}

// What one rank passed to the current call.
struct Contribution {
  Op op = Op::kBarrier;
  const void* send = nullptr;
  std::span<const int64_t> send_counts, send_offsets, recv_counts, recv_offsets;
  const void* data = nullptr;  // all-reduce / all-gather input, broadcast data
  size_t elements = 0;         // all-reduce / all-gather elements, broadcast bytes
  int root = 0;
  std::string local_error;  // this rank's own arguments are invalid (reported to every rank)
};

struct GroupState {
  GroupState(int n, std::chrono::milliseconds timeout) : n(n), timeout(timeout), slots(n, nullptr) {}

  const int n;
  const std::chrono::milliseconds timeout;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool broken = false;
  absl::Status break_status;  // what the ranks waiting when the group broke return
  std::vector<const Contribution*> slots;

  // Waits until all n ranks arrived. `timed`: phase 1 (a rank may never come); phase 2 is bounded by the
  // copies of ranks that all passed phase 1.
  absl::Status Sync(int rank, bool timed) {
    std::unique_lock<std::mutex> lock(mu);
    if (broken) return absl::UnavailableError("local communicator group is broken (an earlier collective failed)");
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return absl::OkStatus();
    }
    auto done = [&] { return generation != gen || broken; };
    if (timed) {
      if (!cv.wait_for(lock, timeout, done)) {
        broken = true;
        break_status = absl::DeadlineExceededError(absl::StrCat(
            "local communicator: not every rank joined the collective within ", timeout.count(), " ms (rank ",
            rank, " waited with ", arrived, " of ", n, " ranks present)"));
        cv.notify_all();
        return break_status;
      }
    } else {
      cv.wait(lock, done);
    }
    if (generation != gen) return absl::OkStatus();
    return break_status;
  }
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<GroupState> state, int rank) : state_(std::move(state)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return state_->n; }
  bool healthy() const override {
    std::lock_guard<std::mutex> lock(state_->mu);
    return !state_->broken;
  }

  absl::Status AllToAllV(const void* send, std::span<const int64_t> send_counts,
                         std::span<const int64_t> send_offsets, void* recv, std::span<const int64_t> recv_counts,
                         std::span<const int64_t> recv_offsets) override {
    const int n = state_->n;
    Contribution c;
    c.op = Op::kAllToAllV;
    c.send = send;
    c.send_counts = send_counts;
    c.send_offsets = send_offsets;
    c.recv_counts = recv_counts;
    c.recv_offsets = recv_offsets;
    if (std::ssize(send_counts) != n || std::ssize(send_offsets) != n || std::ssize(recv_counts) != n ||
        std::ssize(recv_offsets) != n) {
      c.local_error = absl::StrCat("AllToAllV needs world_size (", n, ") counts and offsets each");
    } else {
      for (int p = 0; p < n && c.local_error.empty(); ++p) {
        if (send_counts[p] < 0 || send_offsets[p] < 0 || recv_counts[p] < 0 || recv_offsets[p] < 0) {
          c.local_error = absl::StrCat("AllToAllV: negative count or offset for peer ", p);
        } else if ((send_counts[p] > 0 && send == nullptr) || (recv_counts[p] > 0 && recv == nullptr)) {
          c.local_error = "AllToAllV: null buffer with non-zero count";
        }
      }
    }
    return Round(c, [&]() -> absl::Status {
      for (int r = 0; r < n; ++r) {
        const Contribution& from = *state_->slots[r];
        for (int p = 0; p < n; ++p) {
          const Contribution& to = *state_->slots[p];
          if (from.send_counts[p] != to.recv_counts[r]) {
            return absl::InvalidArgumentError(absl::StrCat("AllToAllV: rank ", r, " sends ", from.send_counts[p],
                                                           " bytes to rank ", p, " which expects ",
                                                           to.recv_counts[r]));
          }
        }
      }
      for (int p = 0; p < n; ++p) {
        const Contribution& from = *state_->slots[p];
        const int64_t bytes = recv_counts[p];
        if (bytes == 0) continue;
        std::memcpy(static_cast<uint8_t*>(recv) + recv_offsets[p],
                    static_cast<const uint8_t*>(from.send) + from.send_offsets[rank_], static_cast<size_t>(bytes));
      }
      return absl::OkStatus();
    });
  }

  absl::Status AllReduceSum(std::span<int64_t> values) override {
    return Reduce<int64_t>(Op::kAllReduceSumI64, values, [](int64_t a, int64_t b) { return a + b; });
  }
  absl::Status AllReduceSum(std::span<float> values) override {
    return Reduce<float>(Op::kAllReduceSumF32, values, [](float a, float b) { return a + b; });
  }
  absl::Status AllReduceMax(std::span<int64_t> values) override {
    return Reduce<int64_t>(Op::kAllReduceMaxI64, values, [](int64_t a, int64_t b) { return std::max(a, b); });
  }

  absl::Status AllGather(std::span<const int64_t> in, std::span<int64_t> out) override {
    const int n = state_->n;
    Contribution c;
    c.op = Op::kAllGather;
    c.data = in.data();
    c.elements = in.size();
    if (out.size() != in.size() * static_cast<size_t>(n)) {
      c.local_error = absl::StrCat("AllGather: out has ", out.size(), " elements, expected world_size * ",
                                   in.size());
    }
    return Round(c, [&]() -> absl::Status {
      for (int r = 0; r < n; ++r) {
        const Contribution& from = *state_->slots[r];
        if (!in.empty()) std::memcpy(out.data() + r * in.size(), from.data, in.size() * sizeof(int64_t));
      }
      return absl::OkStatus();
    });
  }

  absl::Status Broadcast(std::span<uint8_t> data, int root) override {
    Contribution c;
    c.op = Op::kBroadcast;
    c.data = data.data();
    c.elements = data.size();
    c.root = root;
    if (root < 0 || root >= state_->n) c.local_error = absl::StrCat("Broadcast: root ", root, " out of range");
    return Round(c, [&]() -> absl::Status {
      for (int r = 0; r < state_->n; ++r) {
        if (state_->slots[r]->root != root) {
          return absl::InvalidArgumentError(
              absl::StrCat("Broadcast: rank ", r, " uses root ", state_->slots[r]->root, ", rank ", rank_,
                           " uses ", root));
        }
      }
      if (rank_ != root && !data.empty()) std::memcpy(data.data(), state_->slots[root]->data, data.size());
      return absl::OkStatus();
    });
  }

  absl::Status Barrier() override {
    Contribution c;
    c.op = Op::kBarrier;
    return Round(c, [] { return absl::OkStatus(); });
  }

 private:
  template <typename T, typename F>
  absl::Status Reduce(Op op, std::span<T> values, F combine) {
    Contribution c;
    c.op = op;
    c.data = values.data();
    c.elements = values.size();
    std::vector<T> result;
    absl::Status st = Round(c, [&]() -> absl::Status {
      result.assign(static_cast<const T*>(state_->slots[0]->data),
                    static_cast<const T*>(state_->slots[0]->data) + values.size());
      for (int r = 1; r < state_->n; ++r) {
        const T* other = static_cast<const T*>(state_->slots[r]->data);
        for (size_t i = 0; i < values.size(); ++i) result[i] = combine(result[i], other[i]);
      }
      return absl::OkStatus();
    });
    // Written only after phase 2: peers read `values` until then.
    if (st.ok()) std::copy(result.begin(), result.end(), values.begin());
    return st;
  }

  // One collective: publish, wait for all (timed), check every rank's call alike, run `consume`, wait again.
  template <typename F>
  absl::Status Round(const Contribution& mine, F consume) {
    state_->slots[rank_] = &mine;  // only this rank writes its slot; peers read it between the barriers
    if (absl::Status st = state_->Sync(rank_, /*timed=*/true); !st.ok()) return st;
    absl::Status result = Check(mine);
    if (result.ok()) result = consume();
    if (absl::Status st = state_->Sync(rank_, /*timed=*/false); !st.ok()) return st;
    return result;
  }

  // The same verdict on every rank: same kind of call, same sizes, nobody's arguments invalid.
  absl::Status Check(const Contribution& mine) const {
    for (int r = 0; r < state_->n; ++r) {
      const Contribution& other = *state_->slots[r];
      if (other.op != mine.op) {
        return absl::InvalidArgumentError(absl::StrCat("collective mismatch: rank ", r, " called ", OpName(other.op),
                                                       ", rank ", rank_, " called ", OpName(mine.op)));
      }
    }
    for (int r = 0; r < state_->n; ++r) {
      const Contribution& other = *state_->slots[r];
      if (!other.local_error.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("rank ", r, ": ", other.local_error));
      }
      if (mine.op != Op::kAllToAllV && other.elements != mine.elements) {
        return absl::InvalidArgumentError(absl::StrCat(OpName(mine.op), ": rank ", r, " passed ", other.elements,
                                                       " elements, rank ", rank_, " passed ", mine.elements));
      }
    }
    return absl::OkStatus();
  }

  std::shared_ptr<GroupState> state_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> CreateLocalGroup(int world_size, std::chrono::milliseconds timeout) {
  std::vector<std::unique_ptr<Communicator>> group;
  if (world_size < 1) return group;
  auto state = std::make_shared<GroupState>(world_size, timeout);
  for (int r = 0; r < world_size; ++r) group.push_back(std::make_unique<LocalCommunicator>(state, r));
  return group;
}

}  // namespace quarry
