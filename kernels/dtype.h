// Element types of checkpoint tensors and the scalar conversions between them (bf16/f16 <-> f32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace quarry {

enum class DType : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

inline size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
  }
  return "?";
}

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half <-> float, exact for every half value (subnormals included).
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);

// An optional 16-bit copy of an op's f32 output: each value rounded to nearest even to `dtype` (BF16 or F16),
// row stride ld. For a tensor-core consumer that would otherwise round the values itself (prefill expert
// GEMMs); data == nullptr: none.
struct Copy16 {
  uint16_t* data = nullptr;
  int64_t ld = 0;
  DType dtype = DType::kBF16;
};

inline uint16_t FloatTo16(float f, DType t) { return t == DType::kF16 ? FloatToHalf(f) : FloatToBf16(f); }

}  // namespace quarry
