// What an engine runs on: the model (CPU Model, or DeviceModel on a DeviceOps backend) and its state pools
// in the same memory. For device engines this also sizes the pools from the memory left after the weights
// and the workspace (EngineOptions::gpu_memory_utilization) and logs the plan.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/engine.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_ops.h"
#include "worker/model/step_model.h"

namespace quarry {

struct EngineBackend {
  std::unique_ptr<DeviceOps> ops;  // nullptr for the CPU engine; outlives model and pools (declared first)
  std::unique_ptr<StepModel> model;
  std::unique_ptr<StateSlotPool> slots;
  std::unique_ptr<KvBlockPool> kv;
  std::string summary;  // one line: device, weights, workspace, pools
};

// `options` must be resolved (ResolveEngineOptions); device engines fill in kv_blocks when it is 0.
// RESOURCE_EXHAUSTED names the sizes when the state slots do not fit.
absl::StatusOr<EngineBackend> CreateEngineBackend(const ModelWeights& weights, EngineOptions* options);

}  // namespace quarry
