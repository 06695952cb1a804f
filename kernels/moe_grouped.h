// The MoE layer as permute -> grouped expert GEMMs -> weighted combine, the form the GPU runs without a
// host round trip (counts and offsets stay in device memory). Same result as MoeExpertsCpu up to rounding.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/linear.h"
#include "kernels/matrix.h"
#include "kernels/moe.h"
#include "kernels/rms_norm.h"

namespace quarry {

// Groups the n*k selections (token r, slot j) -> expert indices[r*k+j] by local expert: rows of local
// expert e (global id expert_begin + e) are [offsets[e], offsets[e+1]), in ascending (token, slot) order.
// Selections of experts outside [expert_begin, expert_end) get pair_row = -1 and no row.
struct MoePermuteParams {
  const int32_t* indices = nullptr;  // [n, k] global expert ids
  int64_t n = 0;
  int64_t k = 0;
  int32_t expert_begin = 0;
  int32_t expert_end = 0;
  int32_t* offsets = nullptr;        // [experts + 1], experts = expert_end - expert_begin
  int32_t* row_token = nullptr;      // [n*k]: the token of each permuted row (rows >= offsets[experts]: unset)
  int32_t* pair_row = nullptr;       // [n*k]: the permuted row of selection (r, j), or -1
};

absl::Status ValidateMoePermute(const MoePermuteParams& p);
absl::Status MoePermuteCpu(const MoePermuteParams& p);

// Routing = TopKSoftmax(topk) then MoePermute(permute) over the indices it wrote (permute.indices must be
// topk.indices, with the same n and k). One launch on the GPU for decode-sized batches.
absl::Status ValidateMoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute);
absl::Status MoeRouteCpu(const TopKSoftmaxParams& topk, const MoePermuteParams& permute);

// The routing a grouped product can run first (GroupedLinearParams::route); topk.n == 0: none.
struct MoeRouteParams {
  TopKSoftmaxParams topk;
  MoePermuteParams permute;
};

// For each local expert e and each row i in [offsets[e], offsets[e+1]):
//   y[i] = W_e · x[gather ? gather[i] : i]      W_e = rows [e*n_out, (e+1)*n_out) of w
struct GroupedLinearParams {
  const float* x = nullptr;          // [*, w.cols], row stride ldx
  int64_t ldx = 0;
  const int32_t* gather = nullptr;   // [max_rows] source row of x per output row, or nullptr
  MatrixView w;                      // [experts * n_out, k] stacked
  int64_t n_out = 0;
  int64_t experts = 0;
  const int32_t* offsets = nullptr;  // [experts + 1] (device memory on the GPU)
  int64_t max_rows = 0;              // capacity of y (>= offsets[experts]; n*k for a MoE layer)
  float* y = nullptr;                // [max_rows, n_out], row stride ldy
  int64_t ldy = 0;
  bool swiglu_input = false;         // as LinearParams::swiglu_input: x rows are [2k] gate|up, the input is
                                     // silu(gate) * up (not supported by the tensor-core path)
  // Optional: x already rounded to the weights' 16-bit type (row stride ldx16, the same rows as x, gather
  // applies). The tensor-core path reads it instead of rounding x itself (half the bytes); the others ignore it.
  const uint16_t* x16 = nullptr;
  int64_t ldx16 = 0;
  // Optional: a dense product computed by the same call (dense.m == 0: none), exactly as LinearCpu(dense)
  // computes it (decode: the shared expert's down projection beside the routed experts'). On the GPU it shares
  // the small-m launch when it reads SwiGLU input (dense.swiglu_input) and the experts read plain rows (the
  // routed down projection reading the activations of an up projection with swiglu_out), with the same W dtype,
  // no accumulate and at most kGroupedDenseRows rows; otherwise it runs as its own LinearCuda launch. Not
  // supported by the tensor-core path (INVALID_ARGUMENT).
  LinearParams dense;
  // Optional (route.topk.n != 0): MoeRoute(route.topk, route.permute) runs first, and its outputs are this
  // product's offsets and gather (offsets == route.permute.offsets, gather == route.permute.row_token, all
  // experts local: expert_begin 0, expert_end experts). On the GPU the small-m kernel computes the routing in
  // every block's prologue (decode: one launch fewer per layer) for up to kFusedRouteSelections selections and
  // kFusedRouteExperts experts of a plain-input product (the up projection); block (0, 0, 0) writes the routing
  // outputs for the ops after it. Otherwise (and on the tensor-core path) MoeRouteCuda runs as its own launch
  // first.
  MoeRouteParams route;
  // Optional RMSNorm of the x rows first (norm_weight != nullptr), as LinearParams::norm_weight: the experts
  // read the residual stream and normalise it themselves (decode: no separate norm launch). CUDA: only together
  // with a route fused into the launch (GroupedRouteFuses); INVALID_ARGUMENT otherwise, and on the tensor-core
  // path. Not with swiglu_input.
  const float* norm_weight = nullptr;
  float norm_eps = 1e-5f;
  // Optional (after.n != 0): AddRmsNorm(after) once this product (and its dense companion) is complete: the MoE
  // block's combine + residual add + the next layer's norm (decode: no launch of its own). Typically
  // after.moe_y = y and after.x = dense.y. Requirements: each of the after.n tokens has exactly after.moe_k rows
  // in this product (all experts local, no pair_row < 0), after_row_token[i] is the token of row i (MoePermute's
  // row_token), and after.h / after.y alias none of the product's inputs. On the GPU the small-m kernel runs it
  // inside the launch for plain-input products with after.d <= kGroupedAfterMaxD, after.n <= kGroupedAfterMaxTokens
  // and moe_k <= 16 (dense companion joined or absent, dense.m == after.n when present): the block that completes
  // a token's last row
  // normalises that token, bit for bit as AddRmsNormCuda, counting completions in after_counts ([after.n] uint32,
  // zero before and left zero after; device memory). Otherwise AddRmsNormCuda runs as its own launch after the
  // product. Not supported by the tensor-core path (INVALID_ARGUMENT).
  AddRmsNormParams after;
  uint32_t* after_counts = nullptr;
  const int32_t* after_row_token = nullptr;
  // Optional (swiglu_out.n != 0): SwigluCpu(swiglu_out) once the product is complete, over this product's rows
  // (swiglu_out.gate_up == y, ld_in == ldy, 2 * i == n_out, n <= max_rows; rows past offsets[experts] come out
  // unspecified): the up projection of a SwiGLU block writing its activations (and their 16-bit copy). The
  // tensor-core path computes them in its epilogue from the accumulators (tiles of gate and up columns side by
  // side), bit for bit SwigluCuda's values, and does not write y (then only scratch), where its 16-bit input path
  // runs; otherwise y, then SwigluCuda. GroupedLinearCuda's small-m kernel pairs them per warp (two gate rows and
  // the two matching up rows) and stores only the activations, bit for bit SwigluCuda's too (y is then scratch):
  // the down projection reads each activation once instead of every warp of it recomputing Silu(gate) * up from
  // gate|up (swiglu_input), which at decode batch 32 made the expert down projection issue-bound. Not with
  // swiglu_input or after.
  SwigluParams swiglu_out;
};

// Widest row and most tokens the tail of GroupedLinearParams::after handles inside GroupedLinearCuda's launch.
inline constexpr int64_t kGroupedAfterMaxD = 2048;
inline constexpr int64_t kGroupedAfterMaxTokens = 64;

// Limits of the routing fused into GroupedLinearCuda's launch (GroupedLinearParams::route).
inline constexpr int64_t kFusedRouteSelections = 64;  // n * k
inline constexpr int64_t kFusedRouteExperts = 64;

// Whether GroupedLinearCuda computes `route` inside the launch of a product over `experts` experts.
inline bool GroupedRouteFuses(const TopKSoftmaxParams& topk, int64_t experts, bool swiglu_input) {
  return topk.n * topk.k <= kFusedRouteSelections && experts <= kFusedRouteExperts && topk.k <= 32 && !swiglu_input;
}

// Rows up to which GroupedLinearCuda runs GroupedLinearParams::dense inside its own launch.
inline constexpr int64_t kGroupedDenseRows = 64;

absl::Status ValidateGroupedLinear(const GroupedLinearParams& p);
absl::Status GroupedLinearCpu(const GroupedLinearParams& p);

// out[r] (+)= Σ_j weights[r*k+j] * y[pair_row[r*k+j]] over the selections with pair_row >= 0, added in
// ascending expert order (the order of MoeExpertsCpu; ties by slot).
struct MoeCombineParams {
  const float* y = nullptr;          // [rows, hidden], row stride ldy (permuted expert outputs)
  int64_t ldy = 0;
  const int32_t* indices = nullptr;  // [n, k] (for the summation order)
  const int32_t* pair_row = nullptr; // [n, k]
  const float* weights = nullptr;    // [n, k]
  int64_t n = 0;
  int64_t k = 0;
  int64_t hidden = 0;
  float* out = nullptr;              // [n, hidden], row stride ldo
  int64_t ldo = 0;
  bool accumulate = true;            // out += ... (the shared expert's output is already there)
};

absl::Status ValidateMoeCombine(const MoeCombineParams& p);
absl::Status MoeCombineCpu(const MoeCombineParams& p);

}  // namespace quarry
