// Lockstep protocol: one AllReduceMax per step; 1 = a step follows, 2 = done.
#include "worker/engine/lockstep.h"

#include <cstdint>

#include "kernels/status_macros.h"

namespace quarry {
namespace {
constexpr int64_t kStep = 1;
constexpr int64_t kDone = 2;
}  // namespace

void BecomeLockstepLeader(Communicator* comm, StepModel* leader_model) {
  leader_model->set_before_forward([comm] {
    int64_t code = kStep;
    return comm->AllReduceMax({&code, 1});
  });
}

absl::Status FinishLockstep(Communicator* comm) {
  int64_t code = kDone;
  return comm->AllReduceMax({&code, 1});
}

absl::Status FollowLockstep(Communicator* comm, StepModel* model) {
  while (true) {
    int64_t code = 0;
    QUARRY_RETURN_IF_ERROR(comm->AllReduceMax({&code, 1}));
    if (code == kDone) return absl::OkStatus();
    QUARRY_RETURN_IF_ERROR(model->Forward({}, nullptr));
  }
}

}  // namespace quarry
