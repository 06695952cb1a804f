// In-process Communicator for N threads of one process: the same collective semantics as the Gloo and NCCL
// backends (including the timeout: when one thread never makes a call, the others get DEADLINE_EXCEEDED
// after the timeout and the group is broken), used to unit-test MoE dispatch/combine and lockstep quickly.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "worker/parallel/communicator.h"

namespace quarry {

// N communicators sharing one group; communicator r is rank r and must be used by one thread (each rank
// from its own thread). Arguments every rank checks alike (sizes agree across ranks, counts agree pairwise,
// same kind of call) give INVALID_ARGUMENT on every rank and leave the group usable; a timeout breaks it
// (later calls: UNAVAILABLE). The group state lives as long as any of the communicators.
std::vector<std::unique_ptr<Communicator>> CreateLocalGroup(
    int world_size, std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

}  // namespace quarry
