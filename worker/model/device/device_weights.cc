// DeviceWeights::Upload: tensor by tensor into the backend's memory (tied LM head uploaded once).
#include "worker/model/device/device_weights.h"

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) ops_->Free(p);
}

absl::StatusOr<MatrixView> DeviceWeights::Matrix(const MatrixView& host, const char* what) {
  MatrixView v = host;
  if (host.data == nullptr) return v;  // absent (e.g. no experts)
  const size_t bytes = static_cast<size_t>(host.bytes());
  QUARRY_ASSIGN_OR_RETURN(void* dst, ops_->Alloc(bytes, what));
  allocations_.push_back(dst);
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dst, host.data, bytes));
  bytes_ += bytes;
  v.data = dst;
  return v;
}

absl::StatusOr<MatrixView> DeviceWeights::Stacked(std::initializer_list<MatrixView> parts, const char* what) {
  MatrixView v = *parts.begin();
  v.rows = 0;
  size_t total = 0;
  for (const MatrixView& p : parts) v.rows += p.rows, total += static_cast<size_t>(p.bytes());
  QUARRY_ASSIGN_OR_RETURN(void* dst, ops_->Alloc(total, what));
  allocations_.push_back(dst);
  size_t off = 0;
  for (const MatrixView& p : parts) {
    QUARRY_RETURN_IF_ERROR(ops_->Upload(static_cast<char*>(dst) + off, p.data, static_cast<size_t>(p.bytes())));
    off += static_cast<size_t>(p.bytes());
  }
  bytes_ += total;
  v.data = dst;
  return v;
}

absl::StatusOr<MatrixView> DeviceWeights::Experts(const MatrixView& host, std::span<const int32_t> experts,
                                                   int64_t num_experts, const char* what) {
  if (host.data == nullptr || experts.empty()) return Matrix(host, what);
  const int64_t per = host.rows / num_experts;
  MatrixView v = host;
  v.rows = per * static_cast<int64_t>(experts.size());
  const size_t block = static_cast<size_t>(host.SliceRows(0, per).bytes());
  QUARRY_ASSIGN_OR_RETURN(void* dst, ops_->Alloc(block * experts.size(), what));
  allocations_.push_back(dst);
  for (size_t i = 0; i < experts.size(); ++i) {
    if (experts[i] < 0 || experts[i] >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": local expert ", experts[i], " is outside [0, ",
                                                     num_experts, ")"));
    }
    QUARRY_RETURN_IF_ERROR(ops_->Upload(static_cast<char*>(dst) + i * block,
                                        host.SliceRows(experts[i] * per, per).data, block));
  }
  bytes_ += block * experts.size();
  v.data = dst;
  return v;
}

absl::StatusOr<const float*> DeviceWeights::Vector(const std::vector<float>& host, const char* what) {
  if (host.empty()) return static_cast<const float*>(nullptr);
  const size_t bytes = host.size() * sizeof(float);
  QUARRY_ASSIGN_OR_RETURN(void* dst, ops_->Alloc(bytes, what));
  allocations_.push_back(dst);
  QUARRY_RETURN_IF_ERROR(ops_->Upload(dst, host.data(), bytes));
  bytes_ += bytes;
  return static_cast<const float*>(dst);
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const ModelWeights& w, DeviceOps* ops,
                                                                   std::span<const int32_t> local_experts) {
  const int64_t E = w.config.num_local_experts;
  std::unique_ptr<DeviceWeights> d(new DeviceWeights(ops));
  QUARRY_ASSIGN_OR_RETURN(d->embed_tokens, d->Matrix(w.embed_tokens, "model.embed_tokens.weight"));
  if (w.lm_head.data == w.embed_tokens.data) {
    d->lm_head = d->embed_tokens;
  } else {
    QUARRY_ASSIGN_OR_RETURN(d->lm_head, d->Matrix(w.lm_head, "lm_head.weight"));
  }
  QUARRY_ASSIGN_OR_RETURN(d->norm, d->Vector(w.norm, "model.norm.weight"));
  for (const LayerWeights& lw : w.layers) {
    DeviceLayerWeights dl;
    dl.type = lw.type;
    QUARRY_ASSIGN_OR_RETURN(dl.input_layernorm, d->Vector(lw.input_layernorm, "input_layernorm"));
    QUARRY_ASSIGN_OR_RETURN(dl.post_attention_layernorm, d->Vector(lw.post_attention_layernorm, "post_attention_layernorm"));
    if (lw.type == LayerType::kMamba) {
      const MambaWeights& m = lw.mamba;
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.in_proj, d->Matrix(m.in_proj, "mamba.in_proj"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.out_proj, d->Matrix(m.out_proj, "mamba.out_proj"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.conv_weight, d->Vector(m.conv_weight, "mamba.conv1d.weight"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.conv_bias, d->Vector(m.conv_bias, "mamba.conv1d.bias"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.dt_bias, d->Vector(m.dt_bias, "mamba.dt_bias"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.a, d->Vector(m.a, "mamba.A_log"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.d, d->Vector(m.d, "mamba.D"));
      QUARRY_ASSIGN_OR_RETURN(dl.mamba.norm, d->Vector(m.norm, "mamba.norm"));
    } else {
      const AttentionWeights& a = lw.attention;
      if (a.q_proj.dtype == a.k_proj.dtype && a.q_proj.dtype == a.v_proj.dtype && a.q_proj.cols == a.k_proj.cols &&
          a.q_proj.cols == a.v_proj.cols) {
        QUARRY_ASSIGN_OR_RETURN(dl.attention.qkv_proj,
                                d->Stacked({a.q_proj, a.k_proj, a.v_proj}, "self_attn.q_proj + k_proj + v_proj"));
      } else {
        QUARRY_ASSIGN_OR_RETURN(dl.attention.q_proj, d->Matrix(a.q_proj, "self_attn.q_proj"));
        QUARRY_ASSIGN_OR_RETURN(dl.attention.k_proj, d->Matrix(a.k_proj, "self_attn.k_proj"));
        QUARRY_ASSIGN_OR_RETURN(dl.attention.v_proj, d->Matrix(a.v_proj, "self_attn.v_proj"));
      }
      QUARRY_ASSIGN_OR_RETURN(dl.attention.o_proj, d->Matrix(a.o_proj, "self_attn.o_proj"));
    }
    const MoeWeights& e = lw.moe;
    if (e.shared_input.data != nullptr && e.router.data != nullptr && e.shared_input.dtype == e.router.dtype &&
        e.shared_input.cols == e.router.cols) {
      QUARRY_ASSIGN_OR_RETURN(dl.moe.shared_router,
                              d->Stacked({e.shared_input, e.router}, "shared_mlp.input_linear + router"));
    } else {
      QUARRY_ASSIGN_OR_RETURN(dl.moe.router, d->Matrix(e.router, "block_sparse_moe.router"));
      QUARRY_ASSIGN_OR_RETURN(dl.moe.shared_input, d->Matrix(e.shared_input, "shared_mlp.input_linear"));
    }
    QUARRY_ASSIGN_OR_RETURN(dl.moe.input_linear,
                            d->Experts(e.input_linear, local_experts, E, "block_sparse_moe.input_linear"));
    QUARRY_ASSIGN_OR_RETURN(dl.moe.output_linear,
                            d->Experts(e.output_linear, local_experts, E, "block_sparse_moe.output_linear"));
    QUARRY_ASSIGN_OR_RETURN(dl.moe.shared_output, d->Matrix(e.shared_output, "shared_mlp.output_linear"));
    d->layers.push_back(dl);
  }
  QUARRY_RETURN_IF_ERROR(ops->Synchronize());
  return d;
}

}  // namespace quarry
