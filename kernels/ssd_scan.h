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
  // SsdScanCuda only (the CPU scans ignore it): scratch of at least SsdScanWorkspaceFloats(t, h, p, n) floats
  // in device memory lets the scan split the tokens into up to kSsdScanMaxSplits parts that run in parallel
  // (chunk states from zero, a state-passing pass, then the recurrence of every part from its true start
  // state). Null: one pass over the tokens (the same y; fewer warps in flight).
  float* workspace = nullptr;
  int64_t workspace_floats = 0;
};

// The token-parallel CUDA scan: parts of at least kSsdScanMinSplitTokens tokens, at most kSsdScanMaxSplits.
inline constexpr int64_t kSsdScanMinSplitTokens = 64;
inline constexpr int64_t kSsdScanMaxSplits = 16;
// Parts the CUDA scan splits t tokens into (1: no split, no workspace needed).
int64_t SsdScanSplits(int64_t t);
// Workspace floats for a split scan of t tokens: (splits + 1) start states [h, p, n] + splits x h decays
// (0 when SsdScanSplits(t) == 1).
int64_t SsdScanWorkspaceFloats(int64_t t, int64_t h, int64_t p, int64_t n);

absl::Status ValidateSsd(const SsdParams& p);
// Prefill: the chunked SSD algorithm (intra-chunk quadratic form + inter-chunk state passing),
// chunks of chunk_size tokens; equal to the recurrence up to rounding for any t and chunk_size.
absl::Status SsdChunkedScanCpu(const SsdParams& p);
// The recurrence token by token (decode uses t == 1); the reference for the chunked scan.
absl::Status SsdStateUpdateCpu(const SsdParams& p);

}  // namespace quarry
