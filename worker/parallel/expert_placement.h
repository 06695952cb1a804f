// Which rank of an expert-parallel group holds which routed expert: contiguous blocks by default
// (rank r holds [r*E/W, (r+1)*E/W)), or any explicit expert -> rank map (for load balancing later).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry {

class ExpertPlacement {
 public:
  // INVALID_ARGUMENT unless world_size >= 1 divides num_experts.
  static absl::StatusOr<ExpertPlacement> Contiguous(int num_experts, int world_size);
  // owner[e] = rank of expert e; every rank in [0, world_size) must hold at least one expert.
  static absl::StatusOr<ExpertPlacement> FromMap(std::vector<int32_t> owner, int world_size);

  int num_experts() const { return static_cast<int>(owner_.size()); }
  int world_size() const { return world_size_; }
  int32_t owner(int expert) const { return owner_[expert]; }
  const std::vector<int32_t>& experts_of(int rank) const { return experts_of_[rank]; }
  bool holds(int rank, int expert) const { return owner_[expert] == rank; }

 private:
  ExpertPlacement() = default;
  int world_size_ = 1;
  std::vector<int32_t> owner_;
  std::vector<std::vector<int32_t>> experts_of_;
};

}  // namespace quarry
