// NCCL backend of Communicator (GPU processes; built only with CUDA: library quarry_parallel_nccl, which
// defines QUARRY_WITH_NCCL for its users).
//
// Buffers: every pointer and span passed to this backend's collectives is DEVICE memory on `cuda_device`
// (spans of device memory: the host never dereferences them). Each call enqueues on the communicator's own
// CUDA stream and returns when the operation completed, so the caller must have finished producing the input
// (e.g. synchronized its stream) before the call, and may use the output on any stream afterwards.
//
// Bootstrap: rank 0 makes the ncclUniqueId and publishes it through the group's rendezvous store (the same
// FileStore / TCP store as Gloo, key "<group_name>/nccl_unique_id"); world_size 1 without rendezvous settings
// needs no store. The communicator is non-blocking (ncclConfig_t.blocking = 0): init and every collective are
// polled (ncclCommGetAsyncError, cudaStreamQuery) against config.timeout; past it, or on an asynchronous
// NCCL error (a peer died), the communicator calls ncclCommAbort and is broken: DEADLINE_EXCEEDED /
// UNAVAILABLE for that call, UNAVAILABLE for every later one, healthy() == false.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/parallel/communicator.h"

namespace quarry {

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const GroupConfig& config, int cuda_device);

}  // namespace quarry
