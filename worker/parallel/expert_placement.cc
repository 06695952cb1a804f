// ExpertPlacement: validation and the per-rank expert lists.
#include "worker/parallel/expert_placement.h"

#include "absl/strings/str_cat.h"

namespace quarry {

absl::StatusOr<ExpertPlacement> ExpertPlacement::Contiguous(int num_experts, int world_size) {
  if (world_size < 1 || num_experts < 1 || num_experts % world_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("expert parallel size ", world_size,
                                                   " must be >= 1 and divide num_local_experts = ", num_experts));
  }
  std::vector<int32_t> owner(num_experts);
  const int per = num_experts / world_size;
  for (int e = 0; e < num_experts; ++e) owner[e] = e / per;
  return FromMap(std::move(owner), world_size);
}

absl::StatusOr<ExpertPlacement> ExpertPlacement::FromMap(std::vector<int32_t> owner, int world_size) {
  if (world_size < 1) return absl::InvalidArgumentError(absl::StrCat("world_size = ", world_size, " must be >= 1"));
  ExpertPlacement p;
  p.world_size_ = world_size;
  p.experts_of_.resize(world_size);
  for (size_t e = 0; e < owner.size(); ++e) {
    if (owner[e] < 0 || owner[e] >= world_size) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", e, " is placed on rank ", owner[e],
                                                     ", outside [0, ", world_size, ")"));
    }
    p.experts_of_[owner[e]].push_back(static_cast<int32_t>(e));
  }
  for (int r = 0; r < world_size; ++r) {
    if (p.experts_of_[r].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, " holds no expert"));
    }
  }
  p.owner_ = std::move(owner);
  return p;
}

}  // namespace quarry
