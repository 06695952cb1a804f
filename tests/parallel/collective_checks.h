// The collective checks every backend must pass, written to run on one rank (a thread or a process) and
// return what went wrong as text ("" = all good), so forked processes can report through a pipe.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "worker/parallel/communicator.h"

namespace quarry::testing {

// Bytes rank `src` sends to rank `dst` in the uneven all-to-all-v: zero for some pairs (including some
// self-pairs), different everywhere else.
inline int64_t A2aCount(int src, int dst, int salt) { return ((src + 2 * dst + salt) % 4) * (3 + src + salt); }
// Byte i of the piece src -> dst: stamped with its source, destination and index.
inline uint8_t A2aByte(int src, int dst, int64_t i) { return static_cast<uint8_t>(src * 37 + dst * 11 + i * 7 + 1); }

class Checker {
 public:
  explicit Checker(int rank) { out_ << "rank " << rank << ": "; }
  template <typename T>
  void Fail(const T& what) {
    out_ << what << "; ";
    failed_ = true;
  }
  bool Ok(const absl::Status& st, const char* what) {
    if (!st.ok()) Fail(std::string(what) + " -> " + st.ToString());
    return st.ok();
  }
  std::string Result() const { return failed_ ? out_.str() : std::string(); }

 private:
  std::ostringstream out_;
  bool failed_ = false;
};

// Uneven all-to-all-v with zero-size pieces; `gapped`: pieces at non-contiguous offsets (recv in reverse
// rank order with gaps) whose gap bytes must stay untouched.
inline void CheckAllToAllV(Communicator& comm, Checker& ck, int salt, bool gapped, int64_t scale = 1) {
  const int n = comm.world_size(), r = comm.rank();
  std::vector<int64_t> sc(n), so(n), rc(n), ro(n);
  int64_t at = 0;
  for (int p = 0; p < n; ++p) {
    sc[p] = A2aCount(r, p, salt) * scale;
    so[p] = at;
    at += sc[p] + (gapped ? 2 : 0);
  }
  std::vector<uint8_t> send(static_cast<size_t>(at) + 1, 0xCC);
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < sc[p]; ++i) send[so[p] + i] = A2aByte(r, p, i);
  at = 0;
  for (int p = gapped ? n - 1 : 0; gapped ? p >= 0 : p < n; p += gapped ? -1 : 1) {
    rc[p] = A2aCount(p, r, salt) * scale;
    ro[p] = at + (gapped ? 3 : 0);
    at = ro[p] + rc[p];
  }
  std::vector<uint8_t> recv(static_cast<size_t>(at) + 4, 0xEE);
  if (!ck.Ok(comm.AllToAllV(send.data(), sc, so, recv.data(), rc, ro), "AllToAllV")) return;
  std::vector<bool> covered(recv.size(), false);
  for (int p = 0; p < n; ++p) {
    for (int64_t i = 0; i < rc[p]; ++i) {
      covered[ro[p] + i] = true;
      if (recv[ro[p] + i] != A2aByte(p, r, i)) {
        ck.Fail("AllToAllV: byte " + std::to_string(i) + " from rank " + std::to_string(p) + " wrong (salt " +
                std::to_string(salt) + ")");
        return;
      }
    }
  }
  for (size_t i = 0; i < recv.size(); ++i) {
    if (!covered[i] && recv[i] != 0xEE) {
      ck.Fail("AllToAllV wrote outside the pieces at " + std::to_string(i));
      return;
    }
  }
}

inline void CheckReductions(Communicator& comm, Checker& ck) {
  const int n = comm.world_size(), r = comm.rank();
  std::vector<int64_t> v(37);
  for (size_t i = 0; i < v.size(); ++i) v[i] = r * 1000 + static_cast<int64_t>(i);
  if (ck.Ok(comm.AllReduceSum(std::span<int64_t>(v)), "AllReduceSum(int64)")) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] != 1000LL * n * (n - 1) / 2 + n * static_cast<int64_t>(i)) {
        ck.Fail("AllReduceSum(int64) value " + std::to_string(i));
        break;
      }
    }
  }
  std::vector<float> f(1000);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(r) + 0.5f + static_cast<float>(i % 7);
  if (ck.Ok(comm.AllReduceSum(std::span<float>(f)), "AllReduceSum(float)")) {
    for (size_t i = 0; i < f.size(); ++i) {
      const float want = static_cast<float>(n * (n - 1) / 2) + n * (0.5f + static_cast<float>(i % 7));
      if (std::fabs(f[i] - want) > 1e-4f) {
        ck.Fail("AllReduceSum(float) value " + std::to_string(i));
        break;
      }
    }
  }
  std::vector<int64_t> m(11);
  for (size_t i = 0; i < m.size(); ++i) m[i] = (static_cast<int>(i) % n == r) ? 100 + static_cast<int64_t>(i) : -r - 5;
  if (ck.Ok(comm.AllReduceMax(std::span<int64_t>(m)), "AllReduceMax")) {
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i] != 100 + static_cast<int64_t>(i)) {
        ck.Fail("AllReduceMax value " + std::to_string(i));
        break;
      }
    }
  }
}

inline void CheckAllGatherBroadcastBarrier(Communicator& comm, Checker& ck) {
  const int n = comm.world_size(), r = comm.rank();
  std::vector<int64_t> in = {r, r * 10, -r, 1LL << 40};
  std::vector<int64_t> out(in.size() * n, -1);
  if (ck.Ok(comm.AllGather(in, std::span<int64_t>(out)), "AllGather")) {
    for (int q = 0; q < n; ++q) {
      if (out[q * 4] != q || out[q * 4 + 1] != q * 10 || out[q * 4 + 2] != -q || out[q * 4 + 3] != (1LL << 40)) {
        ck.Fail("AllGather block of rank " + std::to_string(q));
      }
    }
  }
  for (int root = 0; root < n; ++root) {
    std::vector<uint8_t> data(300);
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = r == root ? static_cast<uint8_t>(root * 13 + i) : static_cast<uint8_t>(0xAB);
    }
    if (!ck.Ok(comm.Broadcast(std::span<uint8_t>(data), root), "Broadcast")) break;
    for (size_t i = 0; i < data.size(); ++i) {
      if (data[i] != static_cast<uint8_t>(root * 13 + i)) {
        ck.Fail("Broadcast from root " + std::to_string(root));
        break;
      }
    }
  }
  ck.Ok(comm.Barrier(), "Barrier");
}

// Every rank passes the same wrong size: INVALID_ARGUMENT everywhere, and the group stays usable.
inline void CheckInvalidArgumentKeepsGroup(Communicator& comm, Checker& ck) {
  std::vector<int64_t> in(2), out(2 * comm.world_size() + 1);
  absl::Status st = comm.AllGather(in, std::span<int64_t>(out));
  if (st.code() != absl::StatusCode::kInvalidArgument) ck.Fail("AllGather wrong size gave " + st.ToString());
  if (!comm.healthy()) ck.Fail("unhealthy after INVALID_ARGUMENT");
  ck.Ok(comm.Barrier(), "Barrier after INVALID_ARGUMENT");
}

inline void CheckEmpty(Communicator& comm, Checker& ck) {
  ck.Ok(comm.AllReduceSum(std::span<int64_t>()), "AllReduceSum(empty)");
  ck.Ok(comm.AllGather(std::span<const int64_t>(), std::span<int64_t>()), "AllGather(empty)");
  ck.Ok(comm.Broadcast(std::span<uint8_t>(), 0), "Broadcast(empty)");
  const int n = comm.world_size();
  std::vector<int64_t> zeros(n, 0);
  ck.Ok(comm.AllToAllV(nullptr, zeros, zeros, nullptr, zeros, zeros), "AllToAllV(all zero)");
}

// The whole sequence; "" when every check passed.
inline std::string RunCollectiveChecks(Communicator& comm) {
  Checker ck(comm.rank());
  if (comm.world_size() < 1 || comm.rank() < 0 || comm.rank() >= comm.world_size()) ck.Fail("bad rank/world_size");
  CheckAllToAllV(comm, ck, 0, false);
  CheckAllToAllV(comm, ck, 1, true);
  CheckAllToAllV(comm, ck, 2, false, /*scale=*/20000);  // up to ~0.5 MB pieces
  CheckReductions(comm, ck);
  CheckAllGatherBroadcastBarrier(comm, ck);
  CheckEmpty(comm, ck);
  CheckInvalidArgumentKeepsGroup(comm, ck);
  CheckAllToAllV(comm, ck, 3, true);
  if (!comm.healthy()) ck.Fail("unhealthy at the end");
  return ck.Result();
}

}  // namespace quarry::testing
