// MoeDispatcher::Run: counts exchange, payload exchange, local experts, results exchange, weighted combine.
#include "worker/parallel/moe_dispatch.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A dispatched row: this header, then `hidden` floats.
struct RowHeader {
  int32_t expert;
  int32_t src_rank;
  int32_t src_token;
  int32_t pad;
};

}  // namespace

std::vector<int64_t> AllToAllCounts(const std::vector<int64_t>& rows, int64_t unit) {
  std::vector<int64_t> out(rows);
  for (int64_t& x : out) x *= unit;
  return out;
}

std::vector<int64_t> AllToAllOffsets(const std::vector<int64_t>& rows, int64_t unit) {
  std::vector<int64_t> off(rows.size(), 0);
  for (size_t i = 1; i < rows.size(); ++i) off[i] = off[i - 1] + rows[i - 1] * unit;
  return off;
}

MoeDispatcher::MoeDispatcher(Communicator* comm, const ExpertPlacement* placement, int64_t hidden)
    : comm_(comm), placement_(placement), hidden_(hidden) {}

absl::Status MoeDispatcher::Run(const float* x, int64_t tokens, const int32_t* indices, const float* weights,
                                int64_t k, const ExpertFn& compute, float* y) {
  const int W = comm_->world_size(), me = comm_->rank();
  const int64_t H = hidden_;
  const int64_t row_bytes = static_cast<int64_t>(sizeof(RowHeader)) + H * static_cast<int64_t>(sizeof(float));
  auto t0 = Clock::now();

  // 1. Pairs (token, j) grouped by destination rank, in token order within each rank.
  std::vector<std::vector<int64_t>> pairs(W);  // pair id = t * k + j
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = indices[t * k + j];
      if (e < 0 || e >= placement_->num_experts()) {
        return absl::InvalidArgumentError(absl::StrCat("MoE dispatch: expert id ", e, " out of range"));
      }
      pairs[placement_->owner(e)].push_back(t * k + j);
    }
  }
  std::vector<int64_t> send_rows(W), recv_rows(W, 0);
  for (int p = 0; p < W; ++p) send_rows[p] = static_cast<int64_t>(pairs[p].size());

  // 2. Row counts: every rank tells every peer how many rows to expect.
  std::vector<int64_t> ones(W, sizeof(int64_t)), unit_off(W);
  for (int p = 0; p < W; ++p) unit_off[p] = p * static_cast<int64_t>(sizeof(int64_t));
  QUARRY_RETURN_IF_ERROR(comm_->AllToAllV(send_rows.data(), ones, unit_off, recv_rows.data(), ones, unit_off));

  // 3. Payload: stamped rows.
  const int64_t total_send = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  const int64_t total_recv = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  send_.resize(static_cast<size_t>(std::max<int64_t>(1, total_send * row_bytes)));
  recv_.resize(static_cast<size_t>(std::max<int64_t>(1, total_recv * row_bytes)));
  int64_t r = 0;
  for (int p = 0; p < W; ++p) {
    for (int64_t pid : pairs[p]) {
      uint8_t* row = send_.data() + r * row_bytes;
      const int64_t t = pid / k;
      RowHeader h{indices[pid], me, static_cast<int32_t>(t), 0};
      std::memcpy(row, &h, sizeof(h));
      std::memcpy(row + sizeof(h), x + t * H, H * sizeof(float));
      ++r;
    }
  }
  QUARRY_RETURN_IF_ERROR(comm_->AllToAllV(send_.data(), AllToAllCounts(send_rows, row_bytes),
                                          AllToAllOffsets(send_rows, row_bytes), recv_.data(),
                                          AllToAllCounts(recv_rows, row_bytes), AllToAllOffsets(recv_rows, row_bytes)));
  stats_.dispatch_seconds += Since(t0);
  stats_.rows_sent += total_send;
  stats_.rows_received += total_recv;
  stats_.bytes_sent += total_send * row_bytes + total_recv * H * static_cast<int64_t>(sizeof(float));

  // 4. Local experts over the received rows, grouped per expert.
  auto t1 = Clock::now();
  out_rows_.assign(static_cast<size_t>(total_recv * H), 0.0f);
  std::vector<std::vector<int64_t>> by_expert(placement_->num_experts());
  for (int64_t i = 0; i < total_recv; ++i) {
    RowHeader h;
    std::memcpy(&h, recv_.data() + i * row_bytes, sizeof(h));
    if (h.expert < 0 || h.expert >= placement_->num_experts() || !placement_->holds(me, h.expert)) {
      return absl::InternalError(absl::StrCat("MoE dispatch: rank ", me, " received a row for expert ", h.expert,
                                              " from rank ", h.src_rank, " that it does not hold"));
    }
    by_expert[h.expert].push_back(i);
  }
  std::vector<int32_t> src_rank, src_token;
  stats_.expert_rows.resize(placement_->num_experts(), 0);
  for (int32_t e : placement_->experts_of(me)) {
    const std::vector<int64_t>& rows = by_expert[e];
    if (rows.empty()) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    stats_.expert_rows[e] += n;
    in_rows_.resize(n * H);
    std::vector<float> out(n * H);
    src_rank.resize(n);
    src_token.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      RowHeader h;
      const uint8_t* row = recv_.data() + rows[i] * row_bytes;
      std::memcpy(&h, row, sizeof(h));
      src_rank[i] = h.src_rank;
      src_token[i] = h.src_token;
      std::memcpy(in_rows_.data() + i * H, row + sizeof(h), H * sizeof(float));
    }
    QUARRY_RETURN_IF_ERROR(compute(e, in_rows_.data(), n, src_rank.data(), src_token.data(), out.data()));
    for (int64_t i = 0; i < n; ++i) std::copy_n(out.data() + i * H, H, out_rows_.data() + rows[i] * H);
  }
  stats_.expert_seconds += Since(t1);

  // 5. Results go back along the same paths (sizes swapped), arriving in send order.
  auto t2 = Clock::now();
  const int64_t out_bytes = H * static_cast<int64_t>(sizeof(float));
  back_.resize(static_cast<size_t>(std::max<int64_t>(1, total_send * H)));
  QUARRY_RETURN_IF_ERROR(comm_->AllToAllV(out_rows_.data(), AllToAllCounts(recv_rows, out_bytes),
                                          AllToAllOffsets(recv_rows, out_bytes), back_.data(),
                                          AllToAllCounts(send_rows, out_bytes), AllToAllOffsets(send_rows, out_bytes)));

  // 6. Combine per token in ascending expert id (the single-rank order): y[t] += w · result.
  std::vector<int64_t> where(tokens * k, -1);  // pair id -> row in back_
  r = 0;
  for (int p = 0; p < W; ++p) {
    for (int64_t pid : pairs[p]) where[pid] = r++;
  }
  std::vector<int64_t> order(k);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return indices[t * k + a] < indices[t * k + b]; });
    float* yt = y + t * H;
    for (int64_t j : order) {
      const float w = weights[t * k + j];
      const float* res = back_.data() + where[t * k + j] * H;
      for (int64_t i = 0; i < H; ++i) yt[i] += w * res[i];
    }
  }
  stats_.combine_seconds += Since(t2);
  return absl::OkStatus();
}

}  // namespace quarry
