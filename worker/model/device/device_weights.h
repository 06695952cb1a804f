// The model's weights copied into a DeviceOps backend's memory, matrices in their checkpoint dtype (bf16 for
// Granite), per-channel vectors in f32. One allocation per tensor; freed with the object.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/matrix.h"
#include "worker/model/device/device_ops.h"
#include "worker/model/weights.h"

namespace quarry {

struct DeviceMambaWeights {
  MatrixView in_proj, out_proj;
  const float* conv_weight = nullptr;  // [conv_dim, d_conv]
  const float* conv_bias = nullptr;    // [conv_dim] or nullptr
  const float* dt_bias = nullptr;      // [n_heads]
  const float* a = nullptr;            // [n_heads]
  const float* d = nullptr;            // [n_heads]
  const float* norm = nullptr;         // [d_inner]
};

struct DeviceAttentionWeights {
  MatrixView q_proj, k_proj, v_proj, o_proj;
  // q_proj, k_proj and v_proj rows stacked ([n_q d_h + 2 n_kv d_h, H]) when they share a dtype: one projection
  // pass for q, k and v (q_proj / k_proj / v_proj are then unset). data == nullptr otherwise.
  MatrixView qkv_proj;
};

struct DeviceMoeWeights {
  MatrixView router, input_linear, output_linear, shared_input, shared_output;
  // shared_input rows followed by the router rows ([2 I_s + E, H]) when both exist in one dtype: the shared
  // expert's gate|up and the router logits come from one pass over the layer input. data == nullptr otherwise.
  MatrixView shared_router;
};

struct DeviceLayerWeights {
  LayerType type = LayerType::kMamba;
  const float* input_layernorm = nullptr;
  const float* post_attention_layernorm = nullptr;
  DeviceMambaWeights mamba;
  DeviceAttentionWeights attention;
  DeviceMoeWeights moe;
};

class DeviceWeights {
 public:
  // Copies every tensor; RESOURCE_EXHAUSTED (naming the tensor) when the device runs out of memory.
  // `local_experts` (expert parallelism; global ids): only these routed experts are copied, stacked in that
  // order (local expert i = local_experts[i]); empty = all experts.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> Upload(const ModelWeights& w, DeviceOps* ops,
                                                               std::span<const int32_t> local_experts = {});
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  MatrixView embed_tokens, lm_head;
  const float* norm = nullptr;
  std::vector<DeviceLayerWeights> layers;
  uint64_t bytes() const { return bytes_; }

 private:
  explicit DeviceWeights(DeviceOps* ops) : ops_(ops) {}
  absl::StatusOr<MatrixView> Matrix(const MatrixView& host, const char* what);
  // The row blocks [e * rows_per_expert, (e + 1) * rows_per_expert) of `host` for each e of `experts`, stacked.
  absl::StatusOr<MatrixView> Experts(const MatrixView& host, std::span<const int32_t> experts, int64_t num_experts,
                                     const char* what);
  // The parts' rows one after another in one allocation (same dtype and cols; the caller checks).
  absl::StatusOr<MatrixView> Stacked(std::initializer_list<MatrixView> parts, const char* what);
  absl::StatusOr<const float*> Vector(const std::vector<float>& host, const char* what);

  DeviceOps* ops_;
  std::vector<void*> allocations_;
  uint64_t bytes_ = 0;
};

}  // namespace quarry
