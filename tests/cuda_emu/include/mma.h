// Quarry CUDA emulator (tests/cuda_emu): nvcuda::wmma for 16-bit inputs (__half, __nv_bfloat16) with float (or
// __half) accumulators, shapes 16x16x16, 32x8x16 and 8x32x16.
//
// Model: every lane's fragment holds the whole tile (x[] in logical row-major order, num_elements = rows *
// cols), and element e is "owned" by lane e % 32. load_matrix_sync, store_matrix_sync and mma_sync are warp
// collectives: all 32 lanes must call them (from the same source location, else the emulator aborts), with the
// same pointer, ldm and layout for loads and stores. The last lane to arrive does the work once: a load fills
// every lane's fragment; a store and an mma read each element from its owner lane's fragment, and an mma
// writes the result to every lane's fragment. Pointers must be 256-bit aligned and ldm a multiple of 16 bytes
// (checked). fill_fragment is per lane, as in CUDA. The products of 16-bit inputs are exact in float; the
// accumulation is sequential float FMAs in k order (a tensor core's internal order and rounding may differ).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu_device.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace emu_detail {

template <typename Use, int M, int N, int K>
struct Dims;
template <int M, int N, int K>
struct Dims<matrix_a, M, N, K> {
  static constexpr int kRows = M, kCols = K;
};
template <int M, int N, int K>
struct Dims<matrix_b, M, N, K> {
  static constexpr int kRows = K, kCols = N;
};
template <int M, int N, int K>
struct Dims<accumulator, M, N, K> {
  static constexpr int kRows = M, kCols = N;
};

template <typename T>
inline float ToFloat(T v) {
  return static_cast<float>(v);
}

template <int M, int N, int K>
inline constexpr bool kShapeOk = (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                                 (M == 8 && N == 32 && K == 16);

template <typename T>
inline void CheckPointer(const T* p, unsigned ldm, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) {
    emu::Fail("%s: pointer %p is not 256-bit aligned", what, static_cast<const void*>(p));
  }
  if ((ldm * sizeof(T)) % 16 != 0) emu::Fail("%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}

}  // namespace emu_detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  static_assert(emu_detail::kShapeOk<M, N, K>, "the emulator supports the 16x16x16, 32x8x16 and 8x32x16 shapes");
  static_assert(std::is_same_v<Use, accumulator>
                    ? (std::is_same_v<T, float> || std::is_same_v<T, __half>)
                    : (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>),
                "the emulator supports __half / __nv_bfloat16 inputs and float / __half accumulators");

 public:
  static constexpr int kRows = emu_detail::Dims<Use, M, N, K>::kRows;
  static constexpr int kCols = emu_detail::Dims<Use, M, N, K>::kCols;
  static constexpr int num_elements = kRows * kCols;
  using element_type = T;
  using storage_element_type = T;
  T x[num_elements];  // logical row-major: element (r, c) is x[r * kCols + c]
};

template <typename Use, int M, int N, int K, typename T, typename L, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  const T tv = static_cast<T>(v);
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = tv;
}

namespace emu_detail {

// The per-lane arguments of a load / store (compared across lanes) and its fragment.
struct MemArgs {
  const void* mem;
  unsigned ldm;
  bool col_major;
  void* frag;
};

template <typename Frag, typename T>
void CompleteLoad(const char* name, unsigned mask, emu::LaneSlot* const* lanes) {
  const MemArgs& a0 = *static_cast<const MemArgs*>(lanes[0]->ptr);
  for (int l = 1; l < 32; ++l) {
    const MemArgs& a = *static_cast<const MemArgs*>(lanes[l]->ptr);
    if (a.mem != a0.mem || a.ldm != a0.ldm || a.col_major != a0.col_major) {
      emu::Fail("%s: lane %d passes (%p, ldm %u, %s) but lane 0 (%p, ldm %u, %s): the arguments must be warp-uniform",
                name, l, a.mem, a.ldm, a.col_major ? "col-major" : "row-major", a0.mem, a0.ldm,
                a0.col_major ? "col-major" : "row-major");
    }
  }
  const T* p = static_cast<const T*>(a0.mem);
  Frag& f0 = *static_cast<Frag*>(a0.frag);
  for (int r = 0; r < Frag::kRows; ++r) {
    for (int c = 0; c < Frag::kCols; ++c) {
      f0.x[r * Frag::kCols + c] = a0.col_major ? p[static_cast<size_t>(c) * a0.ldm + r] : p[static_cast<size_t>(r) * a0.ldm + c];
    }
  }
  for (int l = 1; l < 32; ++l) *static_cast<Frag*>(static_cast<const MemArgs*>(lanes[l]->ptr)->frag) = f0;
}

template <typename Frag, typename T>
void CompleteStore(const char* name, unsigned mask, emu::LaneSlot* const* lanes) {
  const MemArgs& a0 = *static_cast<const MemArgs*>(lanes[0]->ptr);
  for (int l = 1; l < 32; ++l) {
    const MemArgs& a = *static_cast<const MemArgs*>(lanes[l]->ptr);
    if (a.mem != a0.mem || a.ldm != a0.ldm || a.col_major != a0.col_major) {
      emu::Fail("%s: lane %d passes (%p, ldm %u) but lane 0 (%p, ldm %u): the arguments must be warp-uniform", name, l,
                a.mem, a.ldm, a0.mem, a0.ldm);
    }
  }
  T* p = static_cast<T*>(const_cast<void*>(a0.mem));
  for (int r = 0; r < Frag::kRows; ++r) {
    for (int c = 0; c < Frag::kCols; ++c) {
      const int e = r * Frag::kCols + c;
      const Frag& owner = *static_cast<const Frag*>(static_cast<const MemArgs*>(lanes[e % 32]->ptr)->frag);
      (a0.col_major ? p[static_cast<size_t>(c) * a0.ldm + r] : p[static_cast<size_t>(r) * a0.ldm + c]) = owner.x[e];
    }
  }
}

struct MmaArgs {
  void* d;
  const void* a;
  const void* b;
  const void* c;
};

template <typename FD, typename FA, typename FB, typename FC>
void CompleteMma(const char* name, unsigned mask, emu::LaneSlot* const* lanes) {
  constexpr int M = FA::kRows, K = FA::kCols, N = FB::kCols;
  static_assert(FB::kRows == K && FC::kRows == M && FC::kCols == N && FD::kRows == M && FD::kCols == N);
  auto args = [&](int l) -> const MmaArgs& { return *static_cast<const MmaArgs*>(lanes[l]->ptr); };
  float a[M * K], b[K * N], acc[M * N];
  for (int e = 0; e < M * K; ++e) a[e] = ToFloat(static_cast<const FA*>(args(e % 32).a)->x[e]);
  for (int e = 0; e < K * N; ++e) b[e] = ToFloat(static_cast<const FB*>(args(e % 32).b)->x[e]);
  for (int e = 0; e < M * N; ++e) acc[e] = ToFloat(static_cast<const FC*>(args(e % 32).c)->x[e]);
  for (int r = 0; r < M; ++r) {
    for (int n = 0; n < N; ++n) {
      float s = acc[r * N + n];
      for (int k = 0; k < K; ++k) s = fmaf(a[r * K + k], b[k * N + n], s);
      acc[r * N + n] = s;
    }
  }
  for (int l = 0; l < 32; ++l) {
    FD& d = *static_cast<FD*>(args(l).d);
    for (int e = 0; e < M * N; ++e) d.x[e] = static_cast<typename FD::element_type>(acc[e]);
  }
}

template <typename Frag, typename T>
inline void Load(Frag& f, const T* p, unsigned ldm, bool col_major, const char* name, const emu::Loc& loc) {
  CheckPointer(p, ldm, name);
  MemArgs args{p, ldm, col_major, &f};
  emu::LaneSlot in;
  in.ptr = &args;
  emu::WarpOp(name, CompleteLoad<Frag, T>, 0xffffffffu, in, loc);
}

}  // namespace emu_detail

template <typename Use, int M, int N, int K, typename T, typename L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm,
                             const emu::Loc& loc = emu::Loc::current()) {
  static_assert(!std::is_same_v<Use, accumulator>, "accumulator loads take a layout_t");
  static_assert(std::is_same_v<L, row_major> || std::is_same_v<L, col_major>, "matrix_a / matrix_b need a layout");
  emu_detail::Load(f, p, ldm, std::is_same_v<L, col_major>, "wmma::load_matrix_sync", loc);
}

template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout,
                             const emu::Loc& loc = emu::Loc::current()) {
  emu_detail::Load(f, p, ldm, layout == mem_col_major, "wmma::load_matrix_sync", loc);
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout,
                              const emu::Loc& loc = emu::Loc::current()) {
  using Frag = fragment<accumulator, M, N, K, T>;
  emu_detail::CheckPointer(p, ldm, "wmma::store_matrix_sync");
  emu_detail::MemArgs args{p, ldm, layout == mem_col_major, const_cast<Frag*>(&f)};
  emu::LaneSlot in;
  in.ptr = &args;
  emu::WarpOp("wmma::store_matrix_sync", emu_detail::CompleteStore<Frag, T>, 0xffffffffu, in, loc);
}

template <int M, int N, int K, typename TD, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TD>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c,
                     const emu::Loc& loc = emu::Loc::current()) {
  static_assert(std::is_same_v<TA, TB>, "matrix_a and matrix_b must have the same element type");
  using FD = fragment<accumulator, M, N, K, TD>;
  using FA = fragment<matrix_a, M, N, K, TA, LA>;
  using FB = fragment<matrix_b, M, N, K, TB, LB>;
  using FC = fragment<accumulator, M, N, K, TC>;
  emu_detail::MmaArgs args{&d, &a, &b, &c};
  emu::LaneSlot in;
  in.ptr = &args;
  emu::WarpOp("wmma::mma_sync", emu_detail::CompleteMma<FD, FA, FB, FC>, 0xffffffffu, in, loc);
}

}  // namespace wmma
}  // namespace nvcuda
