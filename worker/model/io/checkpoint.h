// A Hugging Face checkpoint directory: config.json plus model.safetensors or sharded files listed in
// model.safetensors.index.json. Resolves tensor names to memory-mapped data and checks them before use.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/io/safetensors.h"

namespace quarry {

struct TensorRef {
  const TensorInfo* info = nullptr;
  const SafetensorsFile* file = nullptr;
};

class Checkpoint {
 public:
  // Opens every shard (validating each header). NOT_FOUND when neither model.safetensors nor
  // model.safetensors.index.json exists; INVALID_ARGUMENT for a malformed index (naming the entry),
  // or a tensor the index maps to a file that does not hold it.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // nullptr info when absent.
  TensorRef Find(std::string_view name) const;
  // Present, dtype among `allowed`, shape equal to `shape`; errors name tensor and file
  // (NOT_FOUND for a missing tensor, INVALID_ARGUMENT for dtype/shape).
  absl::StatusOr<TensorRef> Require(std::string_view name, const std::vector<int64_t>& shape,
                                    const std::vector<StDType>& allowed) const;
  std::vector<std::string> TensorNames() const;
  uint64_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::pair<std::string, size_t>> names_;  // sorted: name -> file index
};

}  // namespace quarry
