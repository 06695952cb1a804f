// Collective communication inside one expert-parallel group: the interface the MoE dispatch/combine and the
// engine's lockstep use, with backends for CPU processes (Gloo over TCP), GPUs (NCCL) and threads of one
// process (tests). Every call is collective: all ranks of the group make the same calls in the same order.
// Calls fail (DEADLINE_EXCEEDED / UNAVAILABLE / ABORTED) instead of hanging when a peer dies.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace quarry {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // All-to-all with per-peer sizes (in bytes): rank r sends send_counts[p] bytes starting at send_offsets[p]
  // of `send` to rank p, and receives recv_counts[p] bytes from rank p at recv_offsets[p] of `recv`.
  // Counts must agree pairwise (what r sends to p is what p expects from r). Zero-byte pieces are allowed.
  virtual absl::Status AllToAllV(const void* send, std::span<const int64_t> send_counts,
                                 std::span<const int64_t> send_offsets, void* recv,
                                 std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets) = 0;
  // In-place element-wise sum / max over all ranks.
  virtual absl::Status AllReduceSum(std::span<int64_t> values) = 0;
  virtual absl::Status AllReduceSum(std::span<float> values) = 0;
  virtual absl::Status AllReduceMax(std::span<int64_t> values) = 0;
  // out[r * in.size() + i] = in[i] of rank r; out.size() == world_size * in.size().
  virtual absl::Status AllGather(std::span<const int64_t> in, std::span<int64_t> out) = 0;
  // Bytes of `root` copied to every rank's `data`.
  virtual absl::Status Broadcast(std::span<uint8_t> data, int root) = 0;
  virtual absl::Status Barrier() = 0;

  // False once a collective failed (timeout, peer lost, abort): every later call returns UNAVAILABLE at once
  // and the owner recreates the group (all ranks). Backends override; the default suits fakes.
  virtual bool healthy() const { return true; }
};

// Shared argument check of AllToAllV for every backend: world_size counts and offsets each, none negative, no
// null buffer with a non-zero total. Returns the send and receive totals in bytes.
absl::Status CheckAllToAllVArgs(int world_size, const void* send, std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_offsets, const void* recv,
                                std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                                int64_t* send_total, int64_t* recv_total);

// How the ranks of one group find each other.
struct GroupConfig {
  int rank = 0;
  int world_size = 1;
  // Rendezvous: a directory shared by all ranks (local mode: a temp dir), or "host:port" of rank 0's store
  // (Kubernetes: the pod ordinal is the rank, rank 0's address comes from a headless Service).
  std::string rendezvous_dir;
  std::string master_addr;     // host of rank 0 (TCP store)
  int master_port = 0;
  std::string interface_host = "127.0.0.1";  // address this rank's transport binds to
  std::string group_name = "quarry";          // namespaces keys so groups can share a store
  std::chrono::milliseconds timeout{30000};   // per collective; a dead peer surfaces as an error within it
};

// Gloo over TCP (CPU). Blocks until all ranks joined (or the timeout passes).
absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(const GroupConfig& config);

}  // namespace quarry
