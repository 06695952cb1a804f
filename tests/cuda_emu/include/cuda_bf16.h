// Quarry CUDA emulator (tests/cuda_emu): __nv_bfloat16 and its conversions. float -> bf16 rounds to nearest
// even bit-exactly as the GPU's cvt.rn.bf16.f32 (NaN -> 0x7fff); bf16 -> float is exact (a 16-bit shift).
#pragma once

#include <cstdint>

#include "cuda_fp16.h"

namespace emu {

inline unsigned short FloatToBf16Rn(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>(u >> 16);
}
inline float Bf16ToFloatExact(unsigned short b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

}  // namespace emu

struct __nv_bfloat16_raw {
  unsigned short x;
};

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(emu::FloatToBf16Rn(f)) {}
  __nv_bfloat16(double d) : __x(emu::FloatToBf16Rn(static_cast<float>(d))) {}
  __nv_bfloat16(int i) : __x(emu::FloatToBf16Rn(static_cast<float>(i))) {}
  operator float() const { return emu::Bf16ToFloatExact(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
static_assert(sizeof(__nv_bfloat16) == 2 && alignof(__nv_bfloat16) == 2);
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __ushort_as_bfloat16(emu::FloatToBf16Rn(f)); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return emu::Bf16ToFloatExact(h.__x); }
inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
