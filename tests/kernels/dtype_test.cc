// dtype conversions: exhaustive half -> float against F16C hardware, float -> half hand cases and sweeps.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/matrix.h"

namespace quarry {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(DTypeTest, HalfToFloatHandValues) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(Bits(HalfToFloat(0x8000)), 0x80000000u);         // -0
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
}

TEST(DTypeTest, HalfToFloatMatchesHardwareForAllValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ours = HalfToFloat(static_cast<uint16_t>(h));
    const float hw = _cvtsh_ss(static_cast<uint16_t>(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(ours)) << std::hex << h;
    } else {
      ASSERT_EQ(Bits(ours), Bits(hw)) << std::hex << h;
    }
  }
}

TEST(DTypeTest, FloatToHalfHandValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);  // below the halfway point 65520
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // halfway, ties to even -> inf
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);          // exactly half the smallest subnormal: even
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5f, -25)), 0x0001);          // above halfway
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);          // 1.5 ulp ties to even (2)
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);   // halfway between 1 and 1+2^-10: even
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(3.0f, -11)), 0x3c02);   // halfway, odd below -> rounds up
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(-INFINITY), 0xfc00);
  const uint16_t nan = FloatToHalf(NAN);
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
}

TEST(DTypeTest, FloatToHalfMatchesHardwareOnRandomBitPatterns) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    // Bias towards the half range: exponents 100..150 cover subnormals, normals and overflow.
    uint32_t u = rng();
    if (i % 2 == 0) u = (u & 0x807fffffu) | ((100u + (rng() % 51u)) << 23);
    float f;
    std::memcpy(&f, &u, 4);
    const uint16_t hw = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    const uint16_t ours = FloatToHalf(f);
    if (std::isnan(f)) {
      ASSERT_EQ(ours & 0x7c00, 0x7c00);
      ASSERT_NE(ours & 0x3ff, 0);
    } else {
      ASSERT_EQ(ours, hw) << std::hex << u;
    }
  }
}

TEST(DTypeTest, HalfRoundTripIsExact) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) continue;  // NaN payloads
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(DTypeTest, MatrixAtReadsEveryDtype) {
  const float f32[] = {1.5f, -2.0f, 3.25f, 4.0f};
  const uint16_t bf16[] = {FloatToBf16(1.5f), FloatToBf16(-2.0f), FloatToBf16(3.25f), FloatToBf16(4.0f)};
  const uint16_t f16[] = {0x3e00, 0xc000, 0x4280, 0x4400};  // 1.5, -2, 3.25, 4
  for (auto [data, dt] : {std::pair<const void*, DType>{f32, DType::kF32}, {bf16, DType::kBF16}, {f16, DType::kF16}}) {
    MatrixView m{data, dt, 2, 2};
    EXPECT_EQ(MatrixAt(m, 0, 0), 1.5f) << DTypeName(dt);
    EXPECT_EQ(MatrixAt(m, 0, 1), -2.0f) << DTypeName(dt);
    EXPECT_EQ(MatrixAt(m, 1, 0), 3.25f) << DTypeName(dt);
    EXPECT_EQ(MatrixAt(m.SliceRows(1, 1), 0, 1), 4.0f) << DTypeName(dt);
  }
}

}  // namespace
}  // namespace quarry
