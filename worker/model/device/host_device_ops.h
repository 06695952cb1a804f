// HostDeviceOps: the DeviceOps backend over host memory and the CPU reference kernels. It runs the device
// model's exact orchestration (batched decode ops, permuted MoE, paged KV, step metadata) without a GPU,
// which is how CI checks it against the golden references.
#pragma once

#include <memory>

#include "worker/model/device/device_ops.h"

namespace quarry {

std::unique_ptr<DeviceOps> CreateHostDeviceOps();

}  // namespace quarry
