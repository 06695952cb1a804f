// Model::MambaMixer: in_proj -> causal conv1d -> SSD scan -> gated RMSNorm -> out_proj (spec §4).
#include "kernels/conv1d.h"
#include "kernels/linear.h"
#include "kernels/rms_norm.h"
#include "kernels/ssd_scan.h"
#include "kernels/status_macros.h"
#include "worker/model/model.h"
#include "worker/model/model_batch.h"

namespace quarry {

absl::Status Model::MambaMixer(int layer, const Batch& b, const float* u, float* out) {
  const ModelConfig& c = w_.config;
  const MambaWeights& mw = w_.layers[layer].mamba;
  const int64_t T = b.tokens, H = c.hidden_size;
  const int64_t d_inner = c.mamba_d_inner(), conv_dim = c.mamba_conv_dim(), w_in = c.mamba_in_proj_dim();
  const int64_t gn = c.mamba_n_groups * c.mamba_d_state;

  // proj [T, W_in] = [z | xBC | dt_raw]
  proj_.resize(T * w_in);
  QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, mw.in_proj, proj_.data(), w_in, T, false}));
  conv_.resize(T * conv_dim);  // xBC after conv + SiLU: [x | B | C]
  y_.resize(T * d_inner);

  for (const Batch::Span& s : b.spans) {
    const MambaLayerState& st = s.seq->mamba[ordinal_[layer]];
    CausalConv1dParams cp;
    cp.x = proj_.data() + s.row * w_in + d_inner;
    cp.ldx = w_in;
    cp.weight = mw.conv_weight.data();
    cp.bias = mw.conv_bias.empty() ? nullptr : mw.conv_bias.data();
    cp.state = st.conv;
    cp.y = conv_.data() + s.row * conv_dim;
    cp.ldy = conv_dim;
    cp.t = s.n;
    cp.c = conv_dim;
    cp.k = c.mamba_d_conv;
    cp.silu = true;
    QUARRY_RETURN_IF_ERROR(s.n == 1 ? CausalConv1dUpdateCpu(cp) : CausalConv1dCpu(cp));

    const float* xbc = conv_.data() + s.row * conv_dim;
    SsdParams sp;
    sp.x = xbc;
    sp.ldx = conv_dim;
    sp.dt_raw = proj_.data() + s.row * w_in + d_inner + conv_dim;
    sp.lddt = w_in;
    sp.dt_bias = mw.dt_bias.data();
    sp.a = mw.a.data();
    sp.b = xbc + d_inner;
    sp.ldb = conv_dim;
    sp.c = xbc + d_inner + gn;
    sp.ldc = conv_dim;
    sp.d = mw.d.data();
    sp.state = st.ssm;
    sp.state_bf16 = st.ssm_bf16;
    sp.y = y_.data() + s.row * d_inner;
    sp.ldy = d_inner;
    sp.t = s.n;
    sp.h = c.mamba_n_heads;
    sp.p = c.mamba_d_head;
    sp.groups = c.mamba_n_groups;
    sp.n = c.mamba_d_state;
    sp.chunk_size = options_.mamba_chunk_size > 0 ? options_.mamba_chunk_size : c.mamba_chunk_size;
    QUARRY_RETURN_IF_ERROR(s.n == 1 ? SsdStateUpdateCpu(sp) : SsdChunkedScanCpu(sp));
  }

  // Gated RMSNorm over the whole inner width (gate z = proj[:, 0:d_inner]), in place into y.
  GatedRmsNormParams gp;
  gp.x = y_.data();
  gp.ldx = d_inner;
  gp.z = proj_.data();
  gp.ldz = w_in;
  gp.weight = mw.norm.data();
  gp.y = y_.data();
  gp.ldy = d_inner;
  gp.n = T;
  gp.d = d_inner;
  gp.group_size = d_inner;
  gp.eps = static_cast<float>(c.rms_norm_eps);
  QUARRY_RETURN_IF_ERROR(GatedRmsNormCpu(gp));
  return LinearCpu({y_.data(), d_inner, mw.out_proj, out, H, T, false});
}

}  // namespace quarry
