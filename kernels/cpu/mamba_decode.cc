// ConvUpdateBatchCpu / SsdUpdateBatchCpu: the batched decode contracts as a loop of the single-sequence CPU
// references (one token per row, each row on its own state).
#include "kernels/mamba_decode.h"

#include "kernels/conv1d.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/ssd_scan.h"

namespace quarry {

absl::Status ConvUpdateBatchCpu(const ConvUpdateBatchParams& p) {
  if (absl::Status s = ValidateConvUpdateBatch(p); !s.ok()) return s;
  for (int64_t r = 0; r < p.n; ++r) {
    CausalConv1dParams cp;
    cp.x = p.x + r * p.ldx;
    cp.ldx = p.ldx;
    cp.weight = p.weight;
    cp.bias = p.bias;
    cp.state = p.k > 1 ? p.states[r] : nullptr;
    cp.y = p.y + r * p.ldy;
    cp.ldy = p.ldy;
    cp.t = 1;
    cp.c = p.c;
    cp.k = p.k;
    cp.silu = p.silu;
    if (absl::Status s = CausalConv1dUpdateCpu(cp); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SsdUpdateBatchCpu(const SsdUpdateBatchParams& p) {
  if (absl::Status s = ValidateSsdUpdateBatch(p); !s.ok()) return s;
  for (int64_t r = 0; r < p.n; ++r) {
    SsdParams sp;
    sp.x = p.x + r * p.ldx;
    sp.ldx = p.ldx;
    sp.dt_raw = p.dt_raw + r * p.lddt;
    sp.lddt = p.lddt;
    sp.dt_bias = p.dt_bias;
    sp.a = p.a;
    sp.b = p.b + r * p.ldb;
    sp.ldb = p.ldb;
    sp.c = p.c + r * p.ldc;
    sp.ldc = p.ldc;
    sp.d = p.d;
    sp.state = p.states != nullptr ? p.states[r] : nullptr;
    sp.state_bf16 = p.states_bf16 != nullptr ? p.states_bf16[r] : nullptr;
    sp.y = p.y + r * p.ldy;
    sp.ldy = p.ldy;
    sp.t = 1;
    sp.h = p.h;
    sp.p = p.p;
    sp.groups = p.groups;
    sp.n = p.d_state;
    sp.chunk_size = 1;
    if (absl::Status s = SsdStateUpdateCpu(sp); !s.ok()) return s;
    if (p.z != nullptr) {  // g = y * silu(z), as GatedRmsNormCpu forms it
      float* y = p.y + r * p.ldy;
      cpu::SiluMul(p.z + r * p.ldz, y, y, p.h * p.p);
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
