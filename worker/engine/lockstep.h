// Lockstep for an expert-parallel group driven by one rank (quarry verify --ep, tests): before each of the
// leader's forward passes every rank is told "step", and the followers run an empty forward so that they
// join every MoE exchange; "done" releases them.
#pragma once

#include "absl/status/status.h"
#include "worker/model/step_model.h"
#include "worker/parallel/communicator.h"

namespace quarry {

// Installs the leader's announcement on `leader_model` (rank 0).
void BecomeLockstepLeader(Communicator* comm, StepModel* leader_model);
// Leader: releases the followers (after its last forward).
absl::Status FinishLockstep(Communicator* comm);
// Followers: join the leader's forward passes until it finishes.
absl::Status FollowLockstep(Communicator* comm, StepModel* model);

}  // namespace quarry
