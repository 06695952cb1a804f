// Quarry CUDA emulator (tests/cuda_emu): __half and its conversions. float -> half rounds to nearest even
// bit-exactly as the GPU's cvt.rn.f16.f32 (subnormals kept, overflow to infinity, NaN -> 0x7fff); half ->
// float is exact. Arithmetic operators go through float and round back, as CUDA's do.
#pragma once

#include <cstdint>
#include <cstring>

namespace emu {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline unsigned short FloatToHalfRn(float f) {
  const uint32_t x = FloatBits(f);
  const unsigned short sign = static_cast<unsigned short>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return a == 0x7f800000u ? static_cast<unsigned short>(sign | 0x7c00u) : 0x7fffu;
  if (a >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // >= 65520: rounds to infinity
  uint32_t mant, shift;
  uint32_t base;
  if (a >= 0x38800000u) {  // normal half (>= 2^-14): drop 13 mantissa bits
    mant = a & 0x7fffffu;
    shift = 13;
    base = ((a >> 23) - 127 + 15) << 10;
  } else {  // subnormal half: the value in units of 2^-24, rounded
    if (a < 0x33000000u) return sign;  // < 2^-25 (2^-25 itself is a tie that rounds to 0)
    mant = (a & 0x7fffffu) | 0x800000u;
    shift = 126 - (a >> 23);  // 14 .. 24
    base = 0;
  }
  uint32_t h = base + (mant >> shift);
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the exponent: still correct
  return static_cast<unsigned short>(sign | h);
}

inline float HalfToFloatExact(unsigned short h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return BitsFloat(sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x400000u : 0u));  // inf / quiet NaN
  if (e != 0) return BitsFloat(sign | ((e - 15 + 127) << 23) | (m << 13));
  if (m == 0) return BitsFloat(sign);
  int exp = -14;  // subnormal: normalise
  while ((m & 0x400u) == 0) {
    m <<= 1;
    --exp;
  }
  return BitsFloat(sign | (static_cast<uint32_t>(exp + 127) << 23) | ((m & 0x3ffu) << 13));
}

}  // namespace emu

struct __half_raw {
  unsigned short x;
};

struct __half {
  unsigned short __x;
  __half() = default;
  __half(__half_raw r) : __x(r.x) {}
  __half(float f) : __x(emu::FloatToHalfRn(f)) {}
  __half(double d) : __x(emu::FloatToHalfRn(static_cast<float>(d))) {}
  __half(int i) : __x(emu::FloatToHalfRn(static_cast<float>(i))) {}
  operator float() const { return emu::HalfToFloatExact(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};
static_assert(sizeof(__half) == 2 && alignof(__half) == 2);

inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __short_as_half(short s) { return __ushort_as_half(static_cast<unsigned short>(s)); }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __float2half_rn(float f) { return __ushort_as_half(emu::FloatToHalfRn(f)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return emu::HalfToFloatExact(h.__x); }
inline float __low2float(__half h) { return __half2float(h); }

inline __half __hadd(__half a, __half b) { return __float2half_rn(__half2float(a) + __half2float(b)); }
inline __half __hsub(__half a, __half b) { return __float2half_rn(__half2float(a) - __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
inline __half __hdiv(__half a, __half b) { return __float2half_rn(__half2float(a) / __half2float(b)); }
inline __half __hfma(__half a, __half b, __half c) {
  return __float2half_rn(static_cast<float>(static_cast<double>(__half2float(a)) * __half2float(b) + __half2float(c)));
}
inline __half __hneg(__half a) { return __ushort_as_half(static_cast<unsigned short>(a.__x ^ 0x8000u)); }
inline bool __hisnan(__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }
