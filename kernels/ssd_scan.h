// Mamba2 state-space scan (SSD): chunked algorithm for prefill, single-step recurrence for decode.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// Per head hd (group g = hd / (h / groups)), token t:
//   dt      = softplus(dt_raw[t][hd] + dt_bias[hd])            (torch softplus: x > 20 -> x)
//   S[hd]   = exp(dt * a[hd]) * S[hd] + dt * x[t][hd] ⊗ b[t][g]   (S: [p, n])
//   y[t][hd]= S[hd] · c[t][g] + d[hd] * x[t][hd]
// `state` is read as the state before token 0 and overwritten with the state after the last token.
struct SsdParams {
  const float* x = nullptr;        // [t, h, p], token stride ldx
  int64_t ldx = 0;
  const float* dt_raw = nullptr;   // [t, h], token stride lddt (before bias and softplus)
  int64_t lddt = 0;
  const float* dt_bias = nullptr;  // [h]
  const float* a = nullptr;        // [h], = -exp(A_log)
  const float* b = nullptr;        // [t, groups, n], token stride ldb
  int64_t ldb = 0;
  const float* c = nullptr;        // [t, groups, n], token stride ldc
  int64_t ldc = 0;
  const float* d = nullptr;        // [h]
  float* state = nullptr;          // [h, p, n], f32 ...
  uint16_t* state_bf16 = nullptr;  // ... or stored in bf16 (exactly one of the two; math stays f32, the
                                   // state is rounded to bf16 once per call when written back)
  float* y = nullptr;              // [t, h, p], token stride ldy
  int64_t ldy = 0;
  int64_t t = 0;
  int64_t h = 0;                   // heads
  int64_t p = 0;                   // head dim
  int64_t groups = 0;              // divides h
  int64_t n = 0;                   // state size
  int64_t chunk_size = 256;        // chunked scan only
  // SsdScanCuda only (the CPU scans ignore it): scratch of at least SsdScanWorkspaceFloats(t, h, p, groups, n)
  // floats in device memory lets the scan run token-parallel: the chunked SSD form (chunks of kSsdChunkTokens,
  // t >= kSsdChunkedMinTokens; kernels/cuda/ssd_chunked.cu), or, with the chunked form switched off
  // (SetSsdChunkedScan), the recurrence split into up to kSsdScanMaxSplits parts. Null: the recurrence in one
  // pass over the tokens (the same y up to rounding; fewer warps in flight).
  float* workspace = nullptr;
  int64_t workspace_floats = 0;
};

// The token-parallel recurrence (CUDA): parts of at least kSsdScanMinSplitTokens tokens, at most kSsdScanMaxSplits.
inline constexpr int64_t kSsdScanMinSplitTokens = 64;
inline constexpr int64_t kSsdScanMaxSplits = 16;
// Parts the split recurrence cuts t tokens into (1: no split).
int64_t SsdScanSplits(int64_t t);
// The chunked CUDA scan: chunks of kSsdChunkTokens tokens, at most kSsdChunkedRoundChunks of them per round of
// launches (longer scans run several rounds, the state carried in f32), used from kSsdChunkedMinTokens tokens.
inline constexpr int64_t kSsdChunkTokens = 64;
inline constexpr int64_t kSsdChunkedRoundChunks = 32;
inline constexpr int64_t kSsdChunkedMinTokens = 16;
// Workspace floats for a token-parallel scan of t tokens, enough for either form (0 below kSsdChunkedMinTokens):
//   chunked: with C = min(ceil(t / kSsdChunkTokens), kSsdChunkedRoundChunks): (C + 2) states [h, p, n]
//            (chunk start states, the carry between rounds) + C x h chunk decays + C x groups Gram matrices
//            C·Bᵀ of kSsdChunkTokens² floats;
//   split recurrence: (splits + 1) start states + splits x h decays.
int64_t SsdScanWorkspaceFloats(int64_t t, int64_t h, int64_t p, int64_t groups, int64_t n);

absl::Status ValidateSsd(const SsdParams& p);
// Prefill: the chunked SSD algorithm (intra-chunk quadratic form + inter-chunk state passing),
// chunks of chunk_size tokens; equal to the recurrence up to rounding for any t and chunk_size.
absl::Status SsdChunkedScanCpu(const SsdParams& p);
// The recurrence token by token (decode uses t == 1); the reference for the chunked scan.
absl::Status SsdStateUpdateCpu(const SsdParams& p);

}  // namespace quarry
