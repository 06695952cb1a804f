// Expert-parallel MoE exchange for one layer: group each token's selected experts by the rank that holds
// them, all-to-all-v the hidden rows (stamped with source rank and token index) to those ranks, let each
// rank run its local experts on what it received, all-to-all-v the results back in the same order, and
// combine them in the original token order with the routing weights (ascending expert id per token, the
// order of the single-rank path). Ranks with no tokens still take part.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/expert_placement.h"

namespace quarry {

// An all-to-all-v whose pieces are rows of `unit` bytes, `rows[p]` of them for peer p: the byte counts, and the
// byte offsets of the pieces laid out back to back in peer order.
std::vector<int64_t> AllToAllCounts(const std::vector<int64_t>& rows, int64_t unit);
std::vector<int64_t> AllToAllOffsets(const std::vector<int64_t>& rows, int64_t unit);

struct MoeDispatchStats {
  double dispatch_seconds = 0;  // packing + first all-to-all
  double expert_seconds = 0;
  double combine_seconds = 0;   // second all-to-all + weighted sum
  int64_t rows_sent = 0;        // (token, expert) pairs this rank sent
  int64_t rows_received = 0;
  int64_t bytes_sent = 0;       // payload bytes over both exchanges
  std::vector<int64_t> expert_rows;  // rows each (local) expert processed, indexed by global expert id
};

class MoeDispatcher {
 public:
  MoeDispatcher(Communicator* comm, const ExpertPlacement* placement, int64_t hidden);

  // Rows of one local expert: in [n, hidden] -> out [n, hidden]. src_rank/src_token say where each row
  // came from (provenance; tests check it).
  using ExpertFn = std::function<absl::Status(int32_t expert, const float* in, int64_t n, const int32_t* src_rank,
                                              const int32_t* src_token, float* out)>;

  // x [tokens, hidden]; indices / weights [tokens, k]; y [tokens, hidden] gets += Σ_j w[t][j] · expert(x[t]).
  absl::Status Run(const float* x, int64_t tokens, const int32_t* indices, const float* weights, int64_t k,
                   const ExpertFn& compute, float* y);

  const MoeDispatchStats& stats() const { return stats_; }
  void ResetStats() { stats_ = {}; }

 private:
  Communicator* comm_;
  const ExpertPlacement* placement_;
  int64_t hidden_;
  MoeDispatchStats stats_;
  // Scratch reused across calls.
  std::vector<uint8_t> send_, recv_;
  std::vector<float> in_rows_, out_rows_, back_;
};

}  // namespace quarry
