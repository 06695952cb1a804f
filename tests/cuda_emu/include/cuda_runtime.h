// Quarry CUDA emulator (tests/cuda_emu): what nvcc includes implicitly into every .cu file (convert_cu.py adds
// `#include <cuda_runtime.h>` at the top of each converted file): the runtime API and the device built-ins.
#pragma once

#include "cuda_runtime_api.h"
#include "emu_device.h"
