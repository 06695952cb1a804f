// DecodeWeightBytes: see decode_bytes.h.
#include "bench/decode_bytes.h"

#include <cmath>

namespace quarry {

double DecodeWeightBytes(const ModelWeights& w, int batch) {
  const ModelConfig& c = w.config;
  double bytes = static_cast<double>(w.lm_head.bytes());
  const double E = static_cast<double>(c.num_local_experts), k = static_cast<double>(c.num_experts_per_tok);
  for (const LayerWeights& l : w.layers) {
    if (l.type == LayerType::kMamba) bytes += l.mamba.in_proj.bytes() + l.mamba.out_proj.bytes();
    else bytes += l.attention.q_proj.bytes() + l.attention.k_proj.bytes() + l.attention.v_proj.bytes() +
                  l.attention.o_proj.bytes();
    bytes += l.moe.router.bytes() + l.moe.shared_input.bytes() + l.moe.shared_output.bytes();
    if (E > 0) {
      const double per_expert = (l.moe.input_linear.bytes() + l.moe.output_linear.bytes()) / E;
      const double touched = batch == 1 ? k : E * (1.0 - std::pow(1.0 - k / E, batch));
      bytes += touched * per_expert;
    }
  }
  return bytes;
}

}  // namespace quarry
