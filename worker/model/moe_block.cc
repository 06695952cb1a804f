// Model::MoeBlock: router top-k + softmax, routed SwiGLU experts, plus the shared expert (spec §6).
#include <algorithm>

#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/status_macros.h"
#include "worker/model/model.h"

namespace quarry {

absl::Status Model::MoeBlock(int layer, int64_t tokens, const float* u, float* out) {
  const ModelConfig& c = w_.config;
  const MoeWeights& mw = w_.layers[layer].moe;
  const int64_t T = tokens, H = c.hidden_size, E = c.num_local_experts, k = c.num_experts_per_tok;
  const int64_t Is = c.shared_intermediate_size, I = c.intermediate_size;

  if (T > 0) {
    // Shared expert first, written (not accumulated) into out: [T, H].
    shared_.resize(T * 2 * Is);
    act_.resize(T * Is);
    QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, mw.shared_input, shared_.data(), 2 * Is, T, false}));
    QUARRY_RETURN_IF_ERROR(SwigluCpu({shared_.data(), 2 * Is, act_.data(), Is, T, Is}));
    QUARRY_RETURN_IF_ERROR(LinearCpu({act_.data(), Is, mw.shared_output, out, H, T, false}));
  }
  if (E == 0) return absl::OkStatus();

  router_.resize(T * E);
  experts_.resize(T * k);
  gates_.resize(T * k);
  if (T > 0) {
    QUARRY_RETURN_IF_ERROR(LinearCpu({u, H, mw.router, router_.data(), E, T, false}));  // [T, E]
    QUARRY_RETURN_IF_ERROR(TopKSoftmaxCpu({router_.data(), T, E, k, experts_.data(), gates_.data()}));
  }
  if (dispatcher_) {
    // Expert parallelism: tokens travel to the ranks holding their experts and back.
    auto compute = [&](int32_t e, const float* in, int64_t n, const int32_t*, const int32_t*, float* y) {
      std::vector<float> gate_up(n * 2 * I), act(n * I);
      QUARRY_RETURN_IF_ERROR(LinearCpu({in, H, mw.input_linear.SliceRows(int64_t{e} * 2 * I, 2 * I), gate_up.data(),
                                        2 * I, n, false}));
      QUARRY_RETURN_IF_ERROR(SwigluCpu({gate_up.data(), 2 * I, act.data(), I, n, I}));
      return LinearCpu({act.data(), I, mw.output_linear.SliceRows(int64_t{e} * H, H), y, H, n, false});
    };
    return dispatcher_->Run(u, T, experts_.data(), gates_.data(), k, compute, out);
  }
  MoeExpertsParams mp;
  mp.x = u;
  mp.n = T;
  mp.hidden = H;
  mp.intermediate = I;
  mp.indices = experts_.data();
  mp.weights = gates_.data();
  mp.k = k;
  mp.input_linear = mw.input_linear;
  mp.output_linear = mw.output_linear;
  mp.expert_begin = w_.expert_begin;
  mp.expert_end = w_.expert_end;
  mp.y = out;
  return MoeExpertsCpu(mp);
}

}  // namespace quarry
