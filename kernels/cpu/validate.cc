// The shared Validate<Op> functions of every kernel contract (used by the CPU and CUDA entry points).
//
// Conventions: feature sizes (d, k, heads, ...) must be positive; token counts (m, n, t) may be 0, which
// makes the op a no-op, and then the per-token pointers may be null. Errors are INVALID_ARGUMENT naming the
// op, the field and the value.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/conv1d.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/mamba_decode.h"
#include "kernels/moe.h"
#include "kernels/moe_grouped.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"
#include "kernels/ssd_scan.h"

namespace quarry {
namespace {

absl::Status Positive(const char* op, const char* field, int64_t v) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, " must be positive, got ", v));
}

absl::Status NonNegative(const char* op, const char* field, int64_t v) {
  if (v >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, " must be non-negative, got ", v));
}

absl::Status NotNull(const char* op, const char* field, const void* ptr) {
  if (ptr != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, " is null"));
}

// Exactly one of two (k, v) pointer pairs is set, and that pair completely (f32 or bf16 KV).
absl::Status OnePair(const char* op, const char* a_name, const void* a_k, const void* a_v, const char* b_name,
                     const void* b_k, const void* b_v) {
  const bool a = a_k != nullptr || a_v != nullptr, b = b_k != nullptr || b_v != nullptr;
  if (a == b) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": exactly one of ", a_name, " (f32) and ", b_name, " (bf16) must be set"));
  }
  if (a ? (a_k == nullptr || a_v == nullptr) : (b_k == nullptr || b_v == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", a ? a_name : b_name, ": one of the two is null"));
  }
  return absl::OkStatus();
}

absl::Status Stride(const char* op, const char* field, int64_t ld, int64_t width) {
  if (ld >= width) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": row stride ", field, " = ", ld, " is smaller than the row width ", width));
}

absl::Status Divides(const char* op, const char* num_field, int64_t num, const char* den_field, int64_t den) {
  if (den > 0 && num % den == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", den_field, " = ", den, " does not divide ", num_field, " = ", num));
}

absl::Status CheckMatrix(const char* op, const char* field, const MatrixView& w) {
  const int dt = static_cast<int>(w.dtype);
  if (dt < 0 || dt > 2) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, ".dtype has invalid value ", dt));
  }
  if (w.data == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, ".data is null"));
  if (w.rows <= 0 || w.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", field, " must have positive rows and cols, got [", w.rows, ", ", w.cols, "]"));
  }
  return absl::OkStatus();
}

#define KERNEL_RETURN_IF_ERROR(expr)           \
  do {                                         \
    if (absl::Status s_ = (expr); !s_.ok()) {  \
      return s_;                               \
    }                                          \
  } while (0)


// An optional 16-bit output copy of `width` columns: BF16 or F16, row stride >= width.
absl::Status CheckCopy16(const char* op, const Copy16& c, int64_t width) {
  if (c.data == nullptr) return absl::OkStatus();
  if (c.dtype != DType::kBF16 && c.dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": y16 must be BF16 or F16, got ", DTypeName(c.dtype)));
  }
  return Stride(op, "y16.ld", c.ld, width);
}
}  // namespace

absl::Status ValidateLinear(const LinearParams& p) {
  constexpr const char* kOp = "Linear";
  KERNEL_RETURN_IF_ERROR(CheckMatrix(kOp, "w", p.w));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "m", p.m));
  if (p.m == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.swiglu_input ? 2 * p.w.cols : p.w.cols));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.w.rows));
  if (!std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: scale must be finite, got ", p.scale));
  }
  if (p.norm_weight != nullptr && (p.swiglu_input || p.x16 != nullptr || !(p.norm_eps >= 0.0f))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Linear: the norm prologue takes a plain f32 input (no swiglu_input, no x16) and norm_eps >= 0, got eps ",
        p.norm_eps));
  }
  if (p.x16 != nullptr) {
    if (p.w.dtype == DType::kF32 || p.swiglu_input) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Linear: x16 needs 16-bit weights and a plain input (w is ", DTypeName(p.w.dtype),
          p.swiglu_input ? ", swiglu_input set)" : ")"));
    }
    KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx16", p.ldx16, p.w.cols));
  }
  if (p.conv.n != 0) {
    if (absl::Status s = ValidateConvUpdateBatch(p.conv); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("Linear: conv epilogue: ", s.message()));
    }
    if (p.conv_col < 0 || p.conv_col + p.conv.c > p.w.rows || p.conv.x != p.y + p.conv_col ||
        p.conv.ldx != p.ldy || p.conv.n > p.m || p.accumulate) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Linear: the conv epilogue must read columns [conv_col, conv_col + c) = [", p.conv_col, ", ",
          p.conv_col + p.conv.c, ") of y (of ", p.w.rows, "; conv.x == y + conv_col, conv.ldx == ldy), at most m = ",
          p.m, " rows (got ", p.conv.n, ") and no accumulate"));
    }
  }
  if (p.kv.t != 0) {
    if (absl::Status s = ValidateKvAppend(p.kv); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("Linear: kv epilogue: ", s.message()));
    }
    const int64_t d = p.kv.kv_dim;
    if (p.conv.n != 0 || p.accumulate || p.kv.t > p.m || p.kv_k_col < 0 || p.kv_v_col < 0 ||
        p.kv_k_col + d > p.w.rows || p.kv_v_col + d > p.w.rows || p.kv.k != p.y + p.kv_k_col ||
        p.kv.v != p.y + p.kv_v_col || p.kv.ldk != p.ldy || p.kv.ldv != p.ldy) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Linear: the kv epilogue must read columns [kv_k_col, +kv_dim) and [kv_v_col, +kv_dim) of y (of ", p.w.rows,
          "; kv.k == y + kv_k_col, kv.v == y + kv_v_col, kv.ldk == kv.ldv == ldy), at most m = ", p.m,
          " rows (got ", p.kv.t, "), no accumulate and no conv epilogue"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEmbeddingShape(const EmbeddingParams& p) {
  constexpr const char* kOp = "Embedding";
  KERNEL_RETURN_IF_ERROR(CheckMatrix(kOp, "table", p.table));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "ids", p.ids));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  if (p.norm_weight != nullptr) {
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "norm_y", p.norm_y));
    KERNEL_RETURN_IF_ERROR(Stride(kOp, "ld_norm_y", p.ld_norm_y, p.table.cols));
    if (p.norm_y == p.y || !(p.norm_eps >= 0.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Embedding: the norm needs norm_y apart from y and norm_eps >= 0, got eps ", p.norm_eps));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEmbedding(const EmbeddingParams& p) {
  KERNEL_RETURN_IF_ERROR(ValidateEmbeddingShape(p));
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.ids[i] < 0 || p.ids[i] >= p.table.rows) {
      return absl::InvalidArgumentError(absl::StrCat("Embedding: token id ", p.ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", p.table.rows, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRmsNorm(const RmsNormParams& p) {
  constexpr const char* kOp = "RmsNorm";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d", p.d));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weight", p.weight));
  if (!(p.eps >= 0.0f)) return absl::InvalidArgumentError(absl::StrCat("RmsNorm: eps must be >= 0, got ", p.eps));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.d));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.d));
  return absl::OkStatus();
}

absl::Status ValidateAddRmsNorm(const AddRmsNormParams& p) {
  constexpr const char* kOp = "AddRmsNorm";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d", p.d));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weight", p.weight));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "h", p.h));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldh", p.ldh, p.d));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.d));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.d));
  if (static_cast<const void*>(p.y) == static_cast<const void*>(p.h) ||
      static_cast<const void*>(p.y) == static_cast<const void*>(p.x)) {
    return absl::InvalidArgumentError("AddRmsNorm: y must not alias h or x");
  }
  if (p.moe_y != nullptr) {
    KERNEL_RETURN_IF_ERROR(Positive(kOp, "moe_k", p.moe_k));
    if (p.moe_k > 16) return absl::InvalidArgumentError(absl::StrCat("AddRmsNorm: moe_k = ", p.moe_k, " exceeds 16"));
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "moe_indices", p.moe_indices));
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "moe_pair_row", p.moe_pair_row));
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "moe_weights", p.moe_weights));
    KERNEL_RETURN_IF_ERROR(Stride(kOp, "ld_moe_y", p.ld_moe_y, p.d));
  }
  KERNEL_RETURN_IF_ERROR(CheckCopy16(kOp, p.y16, p.d));
  return absl::OkStatus();
}

absl::Status ValidateGatedRmsNorm(const GatedRmsNormParams& p) {
  constexpr const char* kOp = "GatedRmsNorm";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d", p.d));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "group_size", p.group_size));
  KERNEL_RETURN_IF_ERROR(Divides(kOp, "d", p.d, "group_size", p.group_size));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weight", p.weight));
  if (!(p.eps >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("GatedRmsNorm: eps must be >= 0, got ", p.eps));
  }
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "z", p.z));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.d));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldz", p.ldz, p.d));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.d));
  KERNEL_RETURN_IF_ERROR(CheckCopy16(kOp, p.y16, p.d));
  return absl::OkStatus();
}

absl::Status ValidateCausalConv1d(const CausalConv1dParams& p) {
  constexpr const char* kOp = "CausalConv1d";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "c", p.c));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "t", p.t));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weight", p.weight));
  if (p.k > 1) KERNEL_RETURN_IF_ERROR(NotNull(kOp, "state", p.state));
  if (p.t == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.c));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.c));
  if (static_cast<const void*>(p.x) == static_cast<const void*>(p.y)) {
    return absl::InvalidArgumentError("CausalConv1d: y must not alias x");
  }
  return absl::OkStatus();
}

absl::Status ValidateSsd(const SsdParams& p) {
  constexpr const char* kOp = "Ssd";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "h", p.h));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "p", p.p));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "groups", p.groups));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(Divides(kOp, "h", p.h, "groups", p.groups));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "chunk_size", p.chunk_size));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "t", p.t));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "dt_bias", p.dt_bias));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "a", p.a));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "d", p.d));
  if ((p.state == nullptr) == (p.state_bf16 == nullptr)) {
    return absl::InvalidArgumentError("Ssd: exactly one of state and state_bf16 must be set");
  }
  if (p.t == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "dt_raw", p.dt_raw));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "b", p.b));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "c", p.c));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.h * p.p));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "lddt", p.lddt, p.h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldb", p.ldb, p.groups * p.n));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldc", p.ldc, p.groups * p.n));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.h * p.p));
  if (p.workspace != nullptr && p.workspace_floats < SsdScanWorkspaceFloats(p.t, p.h, p.p, p.groups, p.n)) {
    return absl::InvalidArgumentError(absl::StrCat("Ssd: workspace of ", p.workspace_floats, " floats is below the ",
                                                   SsdScanWorkspaceFloats(p.t, p.h, p.p, p.groups, p.n), " a scan of t = ",
                                                   p.t, " tokens needs"));
  }
  return absl::OkStatus();
}

int64_t SsdScanSplits(int64_t t) {
  if (t < 2 * kSsdScanMinSplitTokens) return 1;
  return std::min(kSsdScanMaxSplits, t / kSsdScanMinSplitTokens);
}

int64_t SsdScanWorkspaceFloats(int64_t t, int64_t h, int64_t p, int64_t groups, int64_t n) {
  if (t < kSsdChunkedMinTokens) return 0;
  const int64_t state = h * p * n;
  const int64_t chunks = std::min((t + kSsdChunkTokens - 1) / kSsdChunkTokens, kSsdChunkedRoundChunks);
  const int64_t chunked = (chunks + 2) * state + chunks * h + chunks * groups * kSsdChunkTokens * kSsdChunkTokens;
  const int64_t splits = SsdScanSplits(t);
  const int64_t split = splits <= 1 ? 0 : (splits + 1) * state + splits * h;
  return std::max(chunked, split);
}

absl::Status ValidateAttention(const AttentionParams& p) {
  constexpr const char* kOp = "Attention";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n_q", p.n_q));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n_kv", p.n_kv));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d_h", p.d_h));
  KERNEL_RETURN_IF_ERROR(Divides(kOp, "n_q", p.n_q, "n_kv", p.n_kv));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "t", p.t));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "kv_len", p.kv_len));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "q_pos0", p.q_pos0));
  if (p.q_pos0 + p.t > p.kv_len) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: q_pos0 + t = ", p.q_pos0, " + ", p.t,
                                                   " exceeds kv_len = ", p.kv_len));
  }
  if (p.t == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "q", p.q));
  KERNEL_RETURN_IF_ERROR(OnePair(kOp, "k / v", p.k, p.v, "k16 / v16", p.k16, p.v16));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "out", p.out));
  if (p.block_table != nullptr) KERNEL_RETURN_IF_ERROR(Positive(kOp, "block_size", p.block_size));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldq", p.ldq, p.n_q * p.d_h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldk", p.ldk, p.n_kv * p.d_h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldv", p.ldv, p.n_kv * p.d_h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldo", p.ldo, p.n_q * p.d_h));
  return absl::OkStatus();
}

absl::Status ValidateTopKSoftmax(const TopKSoftmaxParams& p) {
  constexpr const char* kOp = "TopKSoftmax";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "e", p.e));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  if (p.k > p.e) {
    return absl::InvalidArgumentError(absl::StrCat("TopKSoftmax: k = ", p.k, " exceeds the expert count e = ", p.e));
  }
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  if (p.ld != 0) KERNEL_RETURN_IF_ERROR(Stride(kOp, "ld", p.ld, p.e));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "logits", p.logits));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "indices", p.indices));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weights", p.weights));
  return absl::OkStatus();
}

absl::Status ValidateSwiglu(const SwigluParams& p) {
  constexpr const char* kOp = "Swiglu";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "i", p.i));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "gate_up", p.gate_up));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ld_in", p.ld_in, 2 * p.i));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.i));
  KERNEL_RETURN_IF_ERROR(CheckCopy16(kOp, p.y16, p.i));
  return absl::OkStatus();
}

absl::Status ValidateMoeExperts(const MoeExpertsParams& p) {
  constexpr const char* kOp = "MoeExperts";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "hidden", p.hidden));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "intermediate", p.intermediate));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "expert_begin", p.expert_begin));
  if (p.expert_end <= p.expert_begin) {
    return absl::InvalidArgumentError(absl::StrCat("MoeExperts: expert_end = ", p.expert_end,
                                                   " must exceed expert_begin = ", p.expert_begin));
  }
  const int64_t local = p.expert_end - p.expert_begin;
  KERNEL_RETURN_IF_ERROR(CheckMatrix(kOp, "input_linear", p.input_linear));
  KERNEL_RETURN_IF_ERROR(CheckMatrix(kOp, "output_linear", p.output_linear));
  if (p.input_linear.rows != local * 2 * p.intermediate || p.input_linear.cols != p.hidden) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeExperts: input_linear is [", p.input_linear.rows, ", ", p.input_linear.cols, "], expected [",
        local * 2 * p.intermediate, ", ", p.hidden, "] for ", local, " local experts"));
  }
  if (p.output_linear.rows != local * p.hidden || p.output_linear.cols != p.intermediate) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeExperts: output_linear is [", p.output_linear.rows, ", ", p.output_linear.cols, "], expected [",
        local * p.hidden, ", ", p.intermediate, "] for ", local, " local experts"));
  }
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "indices", p.indices));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weights", p.weights));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  return absl::OkStatus();
}

absl::Status ValidateConvUpdateBatch(const ConvUpdateBatchParams& p) {
  constexpr const char* kOp = "ConvUpdateBatch";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "c", p.c));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weight", p.weight));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  if (p.k > 1) KERNEL_RETURN_IF_ERROR(NotNull(kOp, "states", p.states));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.c));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.c));
  if (static_cast<const void*>(p.x) == static_cast<const void*>(p.y)) {
    return absl::InvalidArgumentError("ConvUpdateBatch: y must not alias x");
  }
  return absl::OkStatus();
}

absl::Status ValidateSsdUpdateBatch(const SsdUpdateBatchParams& p) {
  constexpr const char* kOp = "SsdUpdateBatch";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "h", p.h));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "p", p.p));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "groups", p.groups));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d_state", p.d_state));
  KERNEL_RETURN_IF_ERROR(Divides(kOp, "h", p.h, "groups", p.groups));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "dt_bias", p.dt_bias));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "a", p.a));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "d", p.d));
  if ((p.states == nullptr) == (p.states_bf16 == nullptr)) {
    return absl::InvalidArgumentError("SsdUpdateBatch: exactly one of states and states_bf16 must be set");
  }
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "dt_raw", p.dt_raw));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "b", p.b));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "c", p.c));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.h * p.p));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "lddt", p.lddt, p.h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldb", p.ldb, p.groups * p.d_state));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldc", p.ldc, p.groups * p.d_state));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.h * p.p));
  if (p.z != nullptr) KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldz", p.ldz, p.h * p.p));
  return absl::OkStatus();
}

absl::Status ValidateKvAppend(const KvAppendParams& p) {
  constexpr const char* kOp = "KvAppend";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "kv_dim", p.kv_dim));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "t", p.t));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "pool_rows", p.pool_rows));
  if (p.t == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "k", p.k));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "v", p.v));
  KERNEL_RETURN_IF_ERROR(OnePair(kOp, "k_cache / v_cache", p.k_cache, p.v_cache, "k_cache16 / v_cache16",
                                 p.k_cache16, p.v_cache16));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "slots", p.slots));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldk", p.ldk, p.kv_dim));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldv", p.ldv, p.kv_dim));
  return absl::OkStatus();
}

absl::Status ValidateAttentionDecode(const AttentionDecodeParams& p) {
  constexpr const char* kOp = "AttentionDecode";
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n_q", p.n_q));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n_kv", p.n_kv));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "d_h", p.d_h));
  KERNEL_RETURN_IF_ERROR(Divides(kOp, "n_q", p.n_q, "n_kv", p.n_kv));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "block_size", p.block_size));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "max_blocks", p.max_blocks));
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "q", p.q));
  KERNEL_RETURN_IF_ERROR(OnePair(kOp, "k_cache / v_cache", p.k_cache, p.v_cache, "k_cache16 / v_cache16",
                                 p.k_cache16, p.v_cache16));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "block_tables", p.block_tables));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "kv_lens", p.kv_lens));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "out", p.out));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldq", p.ldq, p.n_q * p.d_h));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldo", p.ldo, p.n_q * p.d_h));
  return absl::OkStatus();
}

absl::Status ValidateMoePermute(const MoePermuteParams& p) {
  constexpr const char* kOp = "MoePermute";
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  if (p.expert_begin < 0 || p.expert_end <= p.expert_begin) {
    return absl::InvalidArgumentError(absl::StrCat("MoePermute: expert range [", p.expert_begin, ", ",
                                                   p.expert_end, ") is empty or negative"));
  }
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "offsets", p.offsets));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "indices", p.indices));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "row_token", p.row_token));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "pair_row", p.pair_row));
  return absl::OkStatus();
}

absl::Status ValidateGroupedLinear(const GroupedLinearParams& p) {
  constexpr const char* kOp = "GroupedLinear";
  KERNEL_RETURN_IF_ERROR(CheckMatrix(kOp, "w", p.w));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "n_out", p.n_out));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "experts", p.experts));
  if (p.w.rows != p.experts * p.n_out) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: w has ", p.w.rows, " rows, expected experts * n_out = ",
                                                   p.experts, " * ", p.n_out));
  }
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "max_rows", p.max_rows));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "offsets", p.offsets));
  if (p.dense.m != 0) {
    if (absl::Status s = ValidateLinear(p.dense); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: dense companion: ", s.message()));
    }
  }
  if (p.norm_weight != nullptr && (p.swiglu_input || !(p.norm_eps >= 0.0f))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GroupedLinear: the norm prologue takes a plain input (no swiglu_input) and norm_eps >= 0, got eps ",
        p.norm_eps));
  }
  if (p.route.topk.n != 0) {
    const MoeRouteParams& r = p.route;
    if (absl::Status s = ValidateMoeRoute(r.topk, r.permute); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: route: ", s.message()));
    }
    if (p.offsets != r.permute.offsets || p.gather != r.permute.row_token || r.permute.expert_begin != 0 ||
        r.permute.expert_end != p.experts || p.max_rows < r.topk.n * r.topk.k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GroupedLinear: the route must produce this product's offsets and gather over all ", p.experts,
          " experts (offsets == route.permute.offsets, gather == route.permute.row_token, experts [0, ",
          p.experts, ")) for at most max_rows = ", p.max_rows, " rows; got experts [", r.permute.expert_begin,
          ", ", r.permute.expert_end, ") and ", r.topk.n * r.topk.k, " selections"));
    }
  }
  if (p.after.n != 0) {
    if (absl::Status s = ValidateAddRmsNorm(p.after); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: after: ", s.message()));
    }
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "after_counts", p.after_counts));
    KERNEL_RETURN_IF_ERROR(NotNull(kOp, "after_row_token", p.after_row_token));
    const float* writes[] = {p.after.h, p.after.y};
    for (const float* w : writes) {
      if (w == p.x || (p.dense.m != 0 && w == p.dense.x)) {
        return absl::InvalidArgumentError(
            "GroupedLinear: after.h / after.y alias an input of the product (x or dense.x)");
      }
    }
  }
  if (p.swiglu_out.n != 0) {
    const SwigluParams& sw = p.swiglu_out;
    if (absl::Status s = ValidateSwiglu(sw); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: swiglu_out: ", s.message()));
    }
    if (sw.gate_up != p.y || sw.ld_in != p.ldy || 2 * sw.i != p.n_out || sw.n > p.max_rows || p.swiglu_input ||
        p.after.n != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GroupedLinear: swiglu_out must read this product's rows (gate_up == y, ld_in == ldy, 2 i == n_out = ",
          p.n_out, ", n <= max_rows = ", p.max_rows, "; got i = ", sw.i, ", n = ", sw.n,
          ") and goes with neither swiglu_input nor after"));
    }
  }
  if (p.max_rows == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.swiglu_input ? 2 * p.w.cols : p.w.cols));
  if (p.x16 != nullptr) KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx16", p.ldx16, p.w.cols));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.n_out));
  return absl::OkStatus();
}

absl::Status ValidateMoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) {
  KERNEL_RETURN_IF_ERROR(ValidateTopKSoftmax(topk));
  KERNEL_RETURN_IF_ERROR(ValidateMoePermute(permute));
  if (permute.indices != topk.indices || permute.n != topk.n || permute.k != topk.k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MoeRoute: the permutation must read the top-k's indices (same pointer, n and k); got n ", permute.n,
        " vs ", topk.n, ", k ", permute.k, " vs ", topk.k,
        permute.indices != topk.indices ? ", another indices pointer" : ""));
  }
  return absl::OkStatus();
}

absl::Status ValidateMoeCombine(const MoeCombineParams& p) {
  constexpr const char* kOp = "MoeCombine";
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "n", p.n));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "k", p.k));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "hidden", p.hidden));
  if (p.k > 16) return absl::InvalidArgumentError(absl::StrCat("MoeCombine: k = ", p.k, " exceeds 16"));
  if (p.n == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "y", p.y));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "indices", p.indices));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "pair_row", p.pair_row));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "weights", p.weights));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "out", p.out));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldy", p.ldy, p.hidden));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldo", p.ldo, p.hidden));
  return absl::OkStatus();
}

absl::Status ValidateArgmax(const ArgmaxParams& p) {
  constexpr const char* kOp = "Argmax";
  KERNEL_RETURN_IF_ERROR(NonNegative(kOp, "rows", p.rows));
  KERNEL_RETURN_IF_ERROR(Positive(kOp, "cols", p.cols));
  if (p.rows == 0) return absl::OkStatus();
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "x", p.x));
  KERNEL_RETURN_IF_ERROR(NotNull(kOp, "out", p.out));
  KERNEL_RETURN_IF_ERROR(Stride(kOp, "ldx", p.ldx, p.cols));
  return absl::OkStatus();
}

}  // namespace quarry
