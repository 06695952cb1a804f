// DeviceModel's expert parallelism: one layer's routed experts across the group (the protocol of
// worker/parallel/moe_dispatch.h with the rows kept in the backend's memory).
//   1. the layer's top-k comes to the host; pairs (token, j) are grouped by the rank holding their expert, in
//      token order (the send layout);
//   2. row counts and the rows' expert ids go over `comm` (host memory, small);
//   3. the hidden rows are gathered into the send layout on the device and exchanged over `payload_comm`
//      (NCCL on a GPU: device memory to device memory);
//   4. the received rows run this rank's experts: permute by local expert, grouped GEMM, SwiGLU, grouped GEMM,
//      un-permute (MoeCombine with k = 1, weight 1);
//   5. the results go back the same way, and MoeCombine adds them into mix_ with the routing weights in
//      ascending expert order per token (the single-rank order).
// Every rank makes the same four exchanges per layer, also with no tokens of its own (EmptyStep).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "worker/model/device/device_model.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

absl::Status DeviceModel::EmptyStep() {
  for (int layer = 0; layer < config_.num_hidden_layers; ++layer) {
    if (config_.num_local_experts == 0) break;
    QUARRY_RETURN_IF_ERROR(MoeExchange(layer, 0));
  }
  ++stats_.empty_steps;
  return absl::OkStatus();
}

absl::Status DeviceModel::MoeExchange(int layer, int64_t T) {
  const ModelConfig& c = config_;
  const DeviceMoeWeights& mw = weights_->layers[layer].moe;
  Communicator* comm = options_.comm;
  Communicator* payload = options_.payload_comm;
  const int W = comm->world_size();
  const int64_t K = c.num_experts_per_tok, H = c.hidden_size, I = c.intermediate_size;
  const int64_t E_local = static_cast<int64_t>(local_experts_.size());
  const auto t0 = Clock::now();

  // 1. Send layout: pair (t, j) goes to owner(e); within a destination, token order.
  ep_idx_.resize(T * K);
  if (T > 0) QUARRY_RETURN_IF_ERROR(ops_->Download(ep_idx_.data(), experts_, T * K * sizeof(int32_t)));
  std::vector<int64_t> send_rows(W, 0), recv_rows(W, 0);
  for (int64_t p = 0; p < T * K; ++p) {
    const int32_t e = ep_idx_[p];
    if (e < 0 || e >= c.num_local_experts) {
      return absl::InternalError(absl::StrCat("MoE exchange (layer ", layer, "): expert id ", e, " out of range"));
    }
    ++send_rows[options_.placement->owner(e)];
  }
  const int64_t S = T * K;
  std::vector<int64_t> cursor = AllToAllOffsets(send_rows, 1);
  // Metadata staging: send_token [S] | pair_row [S] | (after the exchange) local expert [R] | ones [R].
  std::vector<int32_t> send_token(S), pair_row(S);
  ep_send_expert_.resize(S);
  for (int64_t p = 0; p < S; ++p) {
    const int32_t e = ep_idx_[p];
    const int64_t at = cursor[options_.placement->owner(e)]++;
    send_token[at] = static_cast<int32_t>(p / K);
    ep_send_expert_[at] = e;
    pair_row[p] = static_cast<int32_t>(at);
  }

  // 2. Counts, then the rows' expert ids (host memory).
  std::vector<int64_t> unit(W, sizeof(int64_t)), unit_off(W);
  for (int p = 0; p < W; ++p) unit_off[p] = p * static_cast<int64_t>(sizeof(int64_t));
  QUARRY_RETURN_IF_ERROR(comm->AllToAllV(send_rows.data(), unit, unit_off, recv_rows.data(), unit, unit_off));
  const int64_t R = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  ep_recv_expert_.resize(R);
  QUARRY_RETURN_IF_ERROR(comm->AllToAllV(ep_send_expert_.data(), AllToAllCounts(send_rows, 4),
                                         AllToAllOffsets(send_rows, 4), ep_recv_expert_.data(),
                                         AllToAllCounts(recv_rows, 4), AllToAllOffsets(recv_rows, 4)));
  std::vector<int32_t> local(R);
  for (int64_t r = 0; r < R; ++r) {
    const int32_t e = ep_recv_expert_[r];
    if (e < 0 || e >= c.num_local_experts || local_of_[e] < 0) {
      return absl::InternalError(absl::StrCat("MoE exchange (layer ", layer, "): received a row for expert ", e,
                                              ", which this rank does not hold"));
    }
    local[r] = local_of_[e];
    ++ep_stats_.expert_rows[e];
  }

  // Device buffers: f32 send [S, H] | recv [R, H] | gate_up [R, 2I] | act [R, I] | y [R, H] | out [R, H] |
  // back [S, H] | ones [R]; int32 send_token [S] | pair_row [S] | local [R] | offsets [E_local + 1] |
  // row_token [R] | local pair_row [R].
  ScratchSections sec;
  auto section = [&](uint64_t n) { return sec.Add(n); };
  const uint64_t o_meta = section((2 * S + 2 * R) * 4);  // send_token | pair_row | local | ones (one upload)
  const uint64_t o_send = section(S * H * 4), o_recv = section(R * H * 4), o_gu = section(R * 2 * I * 4);
  const uint64_t o_act = section(R * I * 4), o_y = section(R * H * 4), o_out = section(R * H * 4);
  const uint64_t o_back = section(S * H * 4), o_offsets = section((E_local + 1) * 4), o_row_token = section(R * 4);
  const uint64_t o_pair2 = section(R * 4);
  QUARRY_RETURN_IF_ERROR(GrowScratch(&ep_buf_, &ep_cap_, sec.bytes, "expert-parallel exchange buffers"));
  auto at = [&](uint64_t off) { return static_cast<uint8_t*>(ep_buf_) + off; };
  auto* d_send_token = reinterpret_cast<int32_t*>(at(o_meta));
  auto* d_pair_row = d_send_token + S;
  auto* d_local = d_pair_row + S;
  auto* d_ones = reinterpret_cast<float*>(d_local + R);
  auto* send = reinterpret_cast<float*>(at(o_send));
  auto* recv = reinterpret_cast<float*>(at(o_recv));
  auto* back = reinterpret_cast<float*>(at(o_back));
  auto* out = reinterpret_cast<float*>(at(o_out));
  ep_meta_.resize((2 * S + 2 * R) * 4);
  if (!ep_meta_.empty()) {
    std::memcpy(ep_meta_.data(), send_token.data(), S * 4);
    std::memcpy(ep_meta_.data() + S * 4, pair_row.data(), S * 4);
    std::memcpy(ep_meta_.data() + 2 * S * 4, local.data(), R * 4);
    const float one = 1.0f;
    for (int64_t r = 0; r < R; ++r) std::memcpy(ep_meta_.data() + (2 * S + R + r) * 4, &one, 4);
    QUARRY_RETURN_IF_ERROR(ops_->Upload(at(o_meta), ep_meta_.data(), ep_meta_.size()));
  }

  // 3. Hidden rows out (the payload communicator needs its input finished: synchronize first).
  if (S > 0) QUARRY_RETURN_IF_ERROR(ops_->GatherRows({u_, H, d_send_token, S, H, send, H}));
  QUARRY_RETURN_IF_ERROR(ops_->Synchronize());
  const int64_t row_bytes = H * static_cast<int64_t>(sizeof(float));
  QUARRY_RETURN_IF_ERROR(payload->AllToAllV(send, AllToAllCounts(send_rows, row_bytes),
                                            AllToAllOffsets(send_rows, row_bytes), recv,
                                            AllToAllCounts(recv_rows, row_bytes), AllToAllOffsets(recv_rows, row_bytes)));
  ep_stats_.dispatch_seconds += Since(t0);

  // 4. This rank's experts on what arrived.
  const auto t1 = Clock::now();
  if (R > 0) {
    auto* offsets = reinterpret_cast<int32_t*>(at(o_offsets));
    auto* row_token = reinterpret_cast<int32_t*>(at(o_row_token));
    auto* pair2 = reinterpret_cast<int32_t*>(at(o_pair2));
    auto* gu = reinterpret_cast<float*>(at(o_gu));
    auto* act = reinterpret_cast<float*>(at(o_act));
    auto* y = reinterpret_cast<float*>(at(o_y));
    const int32_t experts = static_cast<int32_t>(E_local);
    QUARRY_RETURN_IF_ERROR(ops_->MoePermute({d_local, R, 1, 0, experts, offsets, row_token, pair2}));
    QUARRY_RETURN_IF_ERROR(Experts(mw, E_local, recv, row_token, offsets, R, gu, act, y));
    QUARRY_RETURN_IF_ERROR(ops_->MoeCombine({y, H, d_local, pair2, d_ones, R, 1, H, out, H, false}));
  }
  QUARRY_RETURN_IF_ERROR(ops_->Synchronize());
  ep_stats_.expert_seconds += Since(t1);

  // 5. Results back in the send layout, then the weighted sum into mix_.
  const auto t2 = Clock::now();
  QUARRY_RETURN_IF_ERROR(payload->AllToAllV(out, AllToAllCounts(recv_rows, row_bytes),
                                            AllToAllOffsets(recv_rows, row_bytes), back,
                                            AllToAllCounts(send_rows, row_bytes), AllToAllOffsets(send_rows, row_bytes)));
  if (T > 0) QUARRY_RETURN_IF_ERROR(ops_->MoeCombine({back, H, experts_, d_pair_row, gates_, T, K, H, mix_, H, true}));
  ep_stats_.combine_seconds += Since(t2);
  ep_stats_.rows_sent += S;
  ep_stats_.rows_received += R;
  ep_stats_.bytes_sent += (S + R) * row_bytes;
  return absl::OkStatus();
}

}  // namespace quarry
