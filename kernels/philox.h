// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// counter-based RNG of the sampler, plus the other host/device math that SampleCpu and SampleCuda must compute
// bit for bit the same way (the token weight w = exp((x - m) / T)). Usable from host C++ and from CUDA device
// code; written from the published algorithm.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QUARRY_PHILOX_HD __host__ __device__ __forceinline__
#else
#define QUARRY_PHILOX_HD inline
#endif

namespace quarry {

struct Philox4x32Ctr {
  uint32_t v[4];
};

namespace philox_internal {

constexpr uint32_t kM0 = 0xD2511F53u;  // round multipliers
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // key bumps (golden ratio, sqrt(3) - 1)
constexpr uint32_t kW1 = 0xBB67AE85u;

// hi and lo 32 bits of the 64-bit product a * b.
QUARRY_PHILOX_HD void MulHiLo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  *lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
#endif
}

}  // namespace philox_internal

// Ten rounds of Philox-4x32 over `ctr` under `key` (k0, k1). One round, with (hi0, lo0) = M0 * c0 and
// (hi1, lo1) = M1 * c2:  c' = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the key is bumped by (W0, W1) between
// rounds (the first round uses the key as given).
QUARRY_PHILOX_HD Philox4x32Ctr Philox4x32_10(Philox4x32Ctr ctr, uint32_t k0, uint32_t k1) {
  using namespace philox_internal;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    MulHiLo(kM0, ctr.v[0], &hi0, &lo0);
    MulHiLo(kM1, ctr.v[2], &hi1, &lo1);
    ctr = Philox4x32Ctr{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// The sampler's uniform draw for (seed, step): key = (seed low 32, seed high 32), counter = (step low 32,
// step high 32, 0, 0); the top 24 bits of the first output word, scaled to [0, 1) (exact in float).
QUARRY_PHILOX_HD float PhiloxUniform(uint64_t seed, uint64_t step) {
  const Philox4x32Ctr out =
      Philox4x32_10(Philox4x32Ctr{{static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), 0u, 0u}},
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(out.v[0] >> 8) * (1.0f / 16777216.0f);
}

// ---- The sampler's token weight, identical on host and device ----
//
// CUDA's expf and the host libm's expf may differ by an ulp or two, which would move the sampler's thresholds
// and sums apart; SamplerExp uses only operations that IEEE-754 rounds the same way everywhere (multiply,
// rintf, explicit fmaf), so host and device produce the same bits. Every multiply-add is an explicit fmaf, so
// neither -ffp-contract=fast on the host nor nvcc's -fmad can change the result.

namespace philox_internal {

QUARRY_PHILOX_HD float FmaF(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

QUARRY_PHILOX_HD float RintF(float v) {
#if defined(__CUDA_ARCH__)
  return rintf(v);
#else
  return std::rint(v);
#endif
}

QUARRY_PHILOX_HD float BitsToFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

}  // namespace philox_internal

// exp(y) for y <= 0, within about 1 ulp; 0 below y = -86 (so every nonzero result is a normal float) and for
// NaN. Method: n = rint(y / ln 2), r = y - n ln 2 (Cody-Waite, two fmaf), |r| <= ln(2) / 2, e^r by its degree-7
// Taylor polynomial (truncation < 1e-8 relative), times 2^n built from the exponent bits.
QUARRY_PHILOX_HD float SamplerExp(float y) {
  using namespace philox_internal;
  if (!(y >= -86.0f)) return 0.0f;  // also NaN
  if (y >= 0.0f) return 1.0f;       // not reached by SamplerWeight (x <= m), kept for safety
  const float n = RintF(y * 1.44269504088896341f);  // in [-124, 0]
  float r = FmaF(-n, 0.693145751953125f, y);        // ln 2 high part (exact product)
  r = FmaF(-n, 1.428606820309417232e-6f, r);        // ln 2 low part
  float q = 1.0f / 5040.0f;
  q = FmaF(q, r, 1.0f / 720.0f);
  q = FmaF(q, r, 1.0f / 120.0f);
  q = FmaF(q, r, 1.0f / 24.0f);
  q = FmaF(q, r, 1.0f / 6.0f);
  q = FmaF(q, r, 0.5f);
  q = FmaF(q, r, 1.0f);
  q = FmaF(q, r, 1.0f);
  const int e = static_cast<int>(n) + 127;  // in [3, 127]: 2^n is a normal float
  return q * BitsToFloat(static_cast<uint32_t>(e) << 23);
}

// The sampler's weight of logit x in a row with maximum m (NaN ignored) at temperature T > 0, given
// inv_temperature = 1 / T (rounded once per row, the same on host and device; a per-element IEEE division
// costs a slow-path call and a stack frame in the CUDA kernel's hot loops): w = exp((x - m) * (1 / T)) in
// [0, 1]. NaN logits weigh 0; x == m weighs exactly 1 (so +inf or -inf maxima give their tokens weight 1
// instead of exp(NaN)).
QUARRY_PHILOX_HD float SamplerWeight(float x, float m, float inv_temperature) {
  if (x != x) return 0.0f;
  if (x == m) return 1.0f;
  return SamplerExp((x - m) * inv_temperature);
}

// 1 / T rounded to nearest, identically on host and device.
QUARRY_PHILOX_HD float SamplerInvTemperature(float temperature) {
#if defined(__CUDA_ARCH__)
  return __frcp_rn(temperature);
#else
  return 1.0f / temperature;
#endif
}

}  // namespace quarry

#undef QUARRY_PHILOX_HD
