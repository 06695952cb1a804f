// Quarry CUDA emulator (tests/cuda_emu): CUDA's built-in vector types with CUDA's sizes and alignments.
#pragma once

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define QUARRY_EMU_VEC2(name, T, align) \
  struct alignas(align) name {          \
    T x, y;                             \
  };                                    \
  inline constexpr name make_##name(T x, T y) { return name{x, y}; }
#define QUARRY_EMU_VEC3(name, T)   \
  struct name {                    \
    T x, y, z;                     \
  };                               \
  inline constexpr name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define QUARRY_EMU_VEC4(name, T, align) \
  struct alignas(align) name {          \
    T x, y, z, w;                       \
  };                                    \
  inline constexpr name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

QUARRY_EMU_VEC2(char2, signed char, 2)
QUARRY_EMU_VEC4(char4, signed char, 4)
QUARRY_EMU_VEC2(uchar2, unsigned char, 2)
QUARRY_EMU_VEC4(uchar4, unsigned char, 4)
QUARRY_EMU_VEC2(short2, short, 4)
QUARRY_EMU_VEC4(short4, short, 8)
QUARRY_EMU_VEC2(ushort2, unsigned short, 4)
QUARRY_EMU_VEC4(ushort4, unsigned short, 8)
QUARRY_EMU_VEC2(int2, int, 8)
QUARRY_EMU_VEC3(int3, int)
QUARRY_EMU_VEC4(int4, int, 16)
QUARRY_EMU_VEC2(uint2, unsigned int, 8)
QUARRY_EMU_VEC4(uint4, unsigned int, 16)
QUARRY_EMU_VEC2(longlong2, long long, 16)
QUARRY_EMU_VEC2(ulonglong2, unsigned long long, 16)
QUARRY_EMU_VEC2(float2, float, 8)
QUARRY_EMU_VEC3(float3, float)
QUARRY_EMU_VEC4(float4, float, 16)
QUARRY_EMU_VEC2(double2, double, 16)
inline constexpr uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

#undef QUARRY_EMU_VEC2
#undef QUARRY_EMU_VEC3
#undef QUARRY_EMU_VEC4
