// Writes safetensors checkpoints (single file or shards + model.safetensors.index.json), streaming each
// tensor's bytes from a callback so multi-GB checkpoints never sit in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/io/safetensors.h"

namespace quarry {

struct TensorToWrite {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  // Fills `out` (`count` elements of `dtype`, raw bytes) with elements [first, first + count) of the
  // tensor in row-major order. Called with consecutive ranges.
  std::function<void(int64_t first, int64_t count, void* out)> fill;
};

struct WriteOptions {
  uint64_t max_shard_bytes = 0;  // 0 = one model.safetensors; otherwise model-0000i-of-0000n.safetensors + index
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;  // may be empty
};

// Writes into `dir` (created if needed).
absl::Status WriteSafetensors(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                              const WriteOptions& options);
// One file at `path`, no index (used for tests, fixtures and reference files).
absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace quarry
