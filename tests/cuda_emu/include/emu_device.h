// Quarry CUDA emulator (tests/cuda_emu): device-side built-ins (what nvcc makes implicitly visible in .cu
// files): execution-space keywords, threadIdx & co., warp and block synchronisation, warp-wide intrinsics,
// bit tricks, atomics, cache-hinted loads and the device math functions (as host math).
//
// Warp-wide intrinsics take a trailing defaulted std::source_location: the lanes of one operation must call
// it from the same source line and column (a cheap stand-in for "the same instruction"). Two lanes reaching
// the same line through different inlined callers are not told apart.
#pragma once

#include <math.h>  // the global-namespace math functions (expf, fmaxf, isnan, ...) CUDA provides

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "cuda_runtime_api.h"
#include "emu_runtime.h"

// Execution-space and memory-space keywords. `__shared__` is deliberately NOT a macro: convert_cu.py
// rewrites every declaration, so an unconverted use fails to compile.
#define __global__
#define __device__
#define __host__
// (__noinline__ is not defined: libstdc++ spells GCC's attribute that way. __restrict__ is a GCC keyword.)
#define __forceinline__ inline
#define __constant__
#define __managed__
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
// convert_cu.py turns __launch_bounds__ on kernels into an entry check; elsewhere it is ignored.
#define __launch_bounds__(...)

extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
inline constexpr int warpSize = 32;

// ---- Block and warp synchronisation ----

inline void __syncthreads(const emu::Loc& loc = emu::Loc::current()) {
  emu::BlockBarrier("__syncthreads", 0, 0, loc);
}
inline int __syncthreads_count(int pred, const emu::Loc& loc = emu::Loc::current()) {
  return emu::BlockBarrier("__syncthreads_count", 1, pred, loc);
}
inline int __syncthreads_and(int pred, const emu::Loc& loc = emu::Loc::current()) {
  return emu::BlockBarrier("__syncthreads_and", 2, pred, loc);
}
inline int __syncthreads_or(int pred, const emu::Loc& loc = emu::Loc::current()) {
  return emu::BlockBarrier("__syncthreads_or", 3, pred, loc);
}

namespace emu {
void CompleteNothing(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteShuffle(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteBallot(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteAny(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteAll(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteMatchAny(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteMatchAll(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceAdd(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceMin(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceMax(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceMinU(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceMaxU(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceAnd(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceOr(const char* name, unsigned mask, LaneSlot* const* lanes);
void CompleteReduceXor(const char* name, unsigned mask, LaneSlot* const* lanes);

template <typename T>
inline uint64_t ToBits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp intrinsics move at most 8 bytes per lane");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
inline T FromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

// Source lane of a shuffle (CUDA semantics for `width`): -1 when the lane keeps its own value.
template <typename T>
inline T Shuffle(const char* name, unsigned mask, T var, int src, const Loc& loc) {
  LaneSlot in;
  in.value = ToBits(var);
  in.aux = src;
  return FromBits<T>(WarpOp(name, CompleteShuffle, mask, in, loc));
}
inline void CheckWidth(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) Fail("shuffle width %d is not a power of 2 in [1, 32]", width);
}
}  // namespace emu

inline void __syncwarp(unsigned mask = 0xffffffffu, const emu::Loc& loc = emu::Loc::current()) {
  emu::WarpOp("__syncwarp", emu::CompleteNothing, mask, emu::LaneSlot{}, loc);
}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     const emu::Loc& loc = emu::Loc::current()) {
  emu::CheckWidth(width);
  const int lane = static_cast<int>(emu::LaneId());
  const int src = (lane & ~(width - 1)) + (src_lane & (width - 1));
  return emu::Shuffle("__shfl_sync", mask, var, src, loc);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const emu::Loc& loc = emu::Loc::current()) {
  emu::CheckWidth(width);
  const int lane = static_cast<int>(emu::LaneId());
  const int src = lane - static_cast<int>(delta);
  return emu::Shuffle("__shfl_up_sync", mask, var, src < (lane & ~(width - 1)) ? lane : src, loc);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const emu::Loc& loc = emu::Loc::current()) {
  emu::CheckWidth(width);
  const int lane = static_cast<int>(emu::LaneId());
  const int src = lane + static_cast<int>(delta);
  return emu::Shuffle("__shfl_down_sync", mask, var, src >= (lane & ~(width - 1)) + width ? lane : src, loc);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         const emu::Loc& loc = emu::Loc::current()) {
  emu::CheckWidth(width);
  const int lane = static_cast<int>(emu::LaneId());
  const int src = lane ^ lane_mask;
  return emu::Shuffle("__shfl_xor_sync", mask, var, src >= (lane & ~(width - 1)) + width ? lane : src, loc);
}

inline unsigned __ballot_sync(unsigned mask, int pred, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = pred != 0;
  return static_cast<unsigned>(emu::WarpOp("__ballot_sync", emu::CompleteBallot, mask, in, loc));
}
inline int __any_sync(unsigned mask, int pred, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = pred != 0;
  return static_cast<int>(emu::WarpOp("__any_sync", emu::CompleteAny, mask, in, loc));
}
inline int __all_sync(unsigned mask, int pred, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = pred != 0;
  return static_cast<int>(emu::WarpOp("__all_sync", emu::CompleteAll, mask, in, loc));
}
// Lanes of `mask` whose value has the same bits as the caller's.
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value, const emu::Loc& loc = emu::Loc::current()) {
  static_assert(std::is_arithmetic_v<T>, "__match_any_sync takes int, unsigned, long, long long, float or double");
  emu::LaneSlot in;
  in.value = emu::ToBits(value);
  return static_cast<unsigned>(emu::WarpOp("__match_any_sync", emu::CompleteMatchAny, mask, in, loc));
}
template <typename T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, const emu::Loc& loc = emu::Loc::current()) {
  static_assert(std::is_arithmetic_v<T>, "__match_all_sync takes int, unsigned, long, long long, float or double");
  emu::LaneSlot in;
  in.value = emu::ToBits(value);
  const unsigned r = static_cast<unsigned>(emu::WarpOp("__match_all_sync", emu::CompleteMatchAll, mask, in, loc));
  *pred = r != 0;
  return r;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_add_sync", emu::CompleteReduceAdd, mask, in, loc));
}
inline int __reduce_add_sync(unsigned mask, int value, const emu::Loc& loc = emu::Loc::current()) {
  return static_cast<int>(__reduce_add_sync(mask, static_cast<unsigned>(value), loc));
}
inline int __reduce_min_sync(unsigned mask, int value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = static_cast<uint64_t>(static_cast<int64_t>(value));
  return static_cast<int>(emu::WarpOp("__reduce_min_sync", emu::CompleteReduceMin, mask, in, loc));
}
inline int __reduce_max_sync(unsigned mask, int value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = static_cast<uint64_t>(static_cast<int64_t>(value));
  return static_cast<int>(emu::WarpOp("__reduce_max_sync", emu::CompleteReduceMax, mask, in, loc));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_min_sync", emu::CompleteReduceMinU, mask, in, loc));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_max_sync", emu::CompleteReduceMaxU, mask, in, loc));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_and_sync", emu::CompleteReduceAnd, mask, in, loc));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_or_sync", emu::CompleteReduceOr, mask, in, loc));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value, const emu::Loc& loc = emu::Loc::current()) {
  emu::LaneSlot in;
  in.value = value;
  return static_cast<unsigned>(emu::WarpOp("__reduce_xor_sync", emu::CompleteReduceXor, mask, in, loc));
}

// Memory fences order nothing here: one thread runs at a time and every access is a plain host access.
inline void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) {}
[[noreturn]] inline void __trap() { emu::Fail("__trap() called"); }
long long clock64();
inline long clock() { return static_cast<long>(clock64()); }

// ---- Integer intrinsics ----

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __ffsll(unsigned long long x) { return __builtin_ffsll(static_cast<long long>(x)); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}

// ---- Bit casts and conversions ----

inline float __int_as_float(int x) { return emu::FromBits<float>(static_cast<uint32_t>(x)); }
inline int __float_as_int(float x) { return static_cast<int>(static_cast<uint32_t>(emu::ToBits(x))); }
inline float __uint_as_float(unsigned x) { return emu::FromBits<float>(x); }
inline unsigned __float_as_uint(float x) { return static_cast<uint32_t>(emu::ToBits(x)); }
inline double __longlong_as_double(long long x) { return emu::FromBits<double>(static_cast<uint64_t>(x)); }
inline long long __double_as_longlong(double x) { return static_cast<long long>(emu::ToBits(x)); }
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }  // default FE_TONEAREST
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float2int_rd(float x) { return static_cast<int>(floorf(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(ceilf(x)); }
inline unsigned __float2uint_rn(float x) { return static_cast<unsigned>(nearbyintf(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }

// ---- Math: host libm / IEEE operations. The GPU's approximate functions (__expf, rsqrtf, ...) differ from
// these by a few ulps; parity tolerances must cover that anyway. ----

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;  // volatile: never contracted into an FMA after inlining
  return r;
}
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fsub_rn(float a, float b) {
  volatile float r = a - b;
  return r;
}
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// CUDA's integer and floating-point min / max overloads (mixed signedness returns the unsigned type).
#define QUARRY_EMU_MINMAX(R, A, B)                                     \
  inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
QUARRY_EMU_MINMAX(int, int, int)
QUARRY_EMU_MINMAX(unsigned, unsigned, unsigned)
QUARRY_EMU_MINMAX(unsigned, int, unsigned)
QUARRY_EMU_MINMAX(unsigned, unsigned, int)
QUARRY_EMU_MINMAX(long, long, long)
QUARRY_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
QUARRY_EMU_MINMAX(unsigned long, long, unsigned long)
QUARRY_EMU_MINMAX(unsigned long, unsigned long, long)
QUARRY_EMU_MINMAX(long long, long long, long long)
QUARRY_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
QUARRY_EMU_MINMAX(unsigned long long, long long, unsigned long long)
QUARRY_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef QUARRY_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---- Loads and stores with cache hints: plain accesses, with CUDA's natural-alignment requirement checked ----

namespace emu {
template <typename T>
inline void CheckAligned(const T* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
    Fail("%s: address %p is not aligned to %zu bytes (misaligned address on the GPU)", what,
         static_cast<const void*>(p), alignof(T));
  }
}
}  // namespace emu

#define QUARRY_EMU_LOAD(name)                 \
  template <typename T>                       \
  inline T name(const T* p) {                 \
    emu::CheckAligned(p, #name);              \
    return *p;                                \
  }
QUARRY_EMU_LOAD(__ldg)
QUARRY_EMU_LOAD(__ldcg)
QUARRY_EMU_LOAD(__ldca)
QUARRY_EMU_LOAD(__ldcs)
QUARRY_EMU_LOAD(__ldlu)
QUARRY_EMU_LOAD(__ldcv)
#undef QUARRY_EMU_LOAD
#define QUARRY_EMU_STORE(name)                \
  template <typename T>                       \
  inline void name(T* p, T v) {               \
    emu::CheckAligned(p, #name);              \
    *p = v;                                   \
  }
QUARRY_EMU_STORE(__stwb)
QUARRY_EMU_STORE(__stcg)
QUARRY_EMU_STORE(__stcs)
QUARRY_EMU_STORE(__stwt)
#undef QUARRY_EMU_STORE

// ---- Atomics: one emulated thread runs at a time and is never preempted, so a plain read-modify-write is
// atomic. Each returns the old value. ----

namespace emu {
template <typename T>
inline T* CheckAtomic(T* p, const char* what) {
  CheckAligned(p, what);
  return p;
}
}  // namespace emu

template <typename T, typename U>
inline T atomicAdd(T* p, U u) {
  const T v = static_cast<T>(u);
  static_assert(std::is_arithmetic_v<T>, "atomicAdd: arithmetic types only in the emulator");
  T old = *emu::CheckAtomic(p, "atomicAdd");
  *p = old + v;
  return old;
}
template <typename T, typename U>
inline T atomicSub(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicSub");
  *p = old - v;
  return old;
}
template <typename T, typename U>
inline T atomicMax(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicMax");
  *p = old > v ? old : v;
  return old;
}
template <typename T, typename U>
inline T atomicMin(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicMin");
  *p = old < v ? old : v;
  return old;
}
template <typename T, typename U>
inline T atomicExch(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicExch");
  *p = v;
  return old;
}
template <typename T, typename U, typename W>
inline T atomicCAS(T* p, U compare_in, W v_in) {
  const T compare = static_cast<T>(compare_in), v = static_cast<T>(v_in);
  T old = *emu::CheckAtomic(p, "atomicCAS");
  if (old == compare) *p = v;
  return old;
}
template <typename T, typename U>
inline T atomicAnd(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicAnd");
  *p = old & v;
  return old;
}
template <typename T, typename U>
inline T atomicOr(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicOr");
  *p = old | v;
  return old;
}
template <typename T, typename U>
inline T atomicXor(T* p, U u) {
  const T v = static_cast<T>(u);
  T old = *emu::CheckAtomic(p, "atomicXor");
  *p = old ^ v;
  return old;
}
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  const unsigned old = *emu::CheckAtomic(p, "atomicInc");
  *p = old >= limit ? 0u : old + 1u;
  return old;
}
inline unsigned atomicDec(unsigned* p, unsigned limit) {
  const unsigned old = *emu::CheckAtomic(p, "atomicDec");
  *p = (old == 0u || old > limit) ? limit : old - 1u;
  return old;
}
#define atomicAdd_block atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
