// Attention kernels: KvAppendCuda (paged cache writes), AttentionCuda (prefill, flash-style tiles in f32; over a
// bf16 cache with more than 16 query rows the tensor-core kernel of kernels/cuda/attention_tc.cu) and
// AttentionDecodeCuda (one query token per sequence over the page pool). Causal GQA without positional
// encoding; scores, softmax and accumulation in f32 with the online (running max / running sum) softmax.
// The KV cache is f32 or bf16 (template parameter T = float / uint16_t): bf16 is widened exactly on load and
// rounded to nearest even on append, as the CPU references.
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_ops.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace quarry {
namespace {

constexpr unsigned int kFull = 0xffffffffu;
constexpr int64_t kMaxHeadDim = 256;  // d_h <= 32 lanes * 8 output elements per lane
constexpr int64_t kMaxPositions = 0x7fffffffLL;  // positions use 32-bit index math on the device

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

__device__ __forceinline__ int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float Dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }
bool Aligned8(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 8 == 0; }

// KV element loads: f32, or bf16 bits widened (exact). The 4-wide forms need 16-byte (f32) or 8-byte (bf16)
// alignment of p + i.
__device__ __forceinline__ float KvLoad(const float* p, int64_t i) { return __ldg(p + i); }
__device__ __forceinline__ float KvLoad(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(__ldg(p + i)) << 16);
}
__device__ __forceinline__ float4 KvLoad4(const float* p, int64_t i) {
  return __ldg(reinterpret_cast<const float4*>(p + i));
}
__device__ __forceinline__ float4 KvLoad4(const uint16_t* p, int64_t i) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p + i));
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}
using cuda::KvStore;  // kernels/cuda/kv_store.cuh
// Alignment a 4-wide load of T needs.
template <typename T>
bool AlignedVec4(const T* ptr) {
  return sizeof(T) == 4 ? Aligned16(ptr) : Aligned8(ptr);
}

// ---------------------------------------------------------------------------------------------------------
// KvAppend: one block per token (grid-stride over tokens), its threads copy the kv_dim floats of k and v.

template <bool kVec4, typename T>
__global__ void KvAppendKernel(KvAppendParams p, T* k_cache, T* v_cache) {
  for (int64_t i = blockIdx.x; i < p.t; i += gridDim.x) {
    const int64_t slot = p.slots[i];
    if (slot < 0) continue;  // padding row (block-uniform: every thread reads the same slot)
    const float* ks = p.k + i * p.ldk;
    const float* vs = p.v + i * p.ldv;
    T* kd = k_cache + slot * p.kv_dim;
    T* vd = v_cache + slot * p.kv_dim;
    if constexpr (sizeof(T) == 2) {
      for (int64_t e = threadIdx.x; e < p.kv_dim; e += blockDim.x) {
        KvStore(kd, e, ks[e]);
        KvStore(vd, e, vs[e]);
      }
    } else if (kVec4) {  // kv_dim, ldk, ldv multiples of 4 and all four bases 16-byte aligned (checked on the host)
      for (int64_t e = threadIdx.x; e < p.kv_dim / 4; e += blockDim.x) {
        reinterpret_cast<float4*>(kd)[e] = reinterpret_cast<const float4*>(ks)[e];
        reinterpret_cast<float4*>(vd)[e] = reinterpret_cast<const float4*>(vs)[e];
      }
    } else {
      for (int64_t e = threadIdx.x; e < p.kv_dim; e += blockDim.x) {
        kd[e] = ks[e];
        vd[e] = vs[e];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Prefill. Block = (tile of kPreRows query rows, q head); warp w owns rows w * kRowsPerWarp + r of the tile.
// The block walks the keys [0, last row's position] in tiles of 32 staged in shared memory. Score phase:
// lane j scores key j of the tile against each of the warp's rows (float4 smem reads, K rows padded so the
// lanes' reads hit distinct banks). Output phase: lane l accumulates elements l, l + 32, ... of each row,
// p_j broadcast by shuffle. Softmax state (running max m, per-lane partial sums l) stays in registers.

constexpr int kPreWarps = 4;
constexpr int kPreThreads = 32 * kPreWarps;
constexpr int kRowsPerWarp = 4;
constexpr int kPreRows = kPreWarps * kRowsPerWarp;  // query rows per block
constexpr int kTileKeys = 32;                       // one key per lane in the score phase

using cuda::KvRow;  // kernels/cuda/paged_kv.cuh
using cuda::PagedRow;

// Shared memory (floats): q [kPreRows][dp] | K tile [kTileKeys][kstride] | V tile [kTileKeys][32 * kDPer].
// dp = d_h rounded up to 4, kstride = dp or dp + 4 (kstride / 4 odd); all padding is zero.
template <int kDPer, typename T>
__global__ void __launch_bounds__(kPreThreads)
    AttentionPrefillKernel(AttentionParams p, const T* kp, const T* vp, int dp, int kstride, bool vec4) {
  constexpr int kVStride = 32 * kDPer;
  extern __shared__ float4 smem4[];
  float* sq = reinterpret_cast<float*>(smem4);
  float* sk = sq + kPreRows * dp;
  float* sv = sk + kTileKeys * kstride;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int d_h = static_cast<int>(p.d_h);
  const int64_t i0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * kPreRows;  // latest (longest) tiles first
  const int rows = static_cast<int>(Min64(kPreRows, p.t - i0));
  const int hq = static_cast<int>(blockIdx.y);
  const int hk = hq / static_cast<int>(p.n_q / p.n_kv);  // n_q <= 65535
  const int64_t kv_end = p.q_pos0 + i0 + rows;  // keys [0, kv_end) are seen by some row of the block
  // Keys [0, warp_end) are seen by some row of this warp (warp_end = 0: the warp has no rows).
  const int warp_rows = max(0, min(kRowsPerWarp, rows - warp * kRowsPerWarp));
  const int64_t warp_end = warp_rows > 0 ? p.q_pos0 + i0 + warp * kRowsPerWarp + warp_rows : 0;

  for (int idx = threadIdx.x; idx < kPreRows * dp; idx += kPreThreads) {
    const int lr = idx / dp;
    const int d = idx % dp;
    sq[idx] = (lr < rows && d < d_h) ? p.q[(i0 + lr) * p.ldq + hq * d_h + d] : 0.0f;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kDPer];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDPer; ++i) o[r][i] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < kv_end; k0 += kTileKeys) {
    __syncthreads();  // the previous tile is consumed (first pass: orders nothing, harmless)
    // Stage keys k0 .. k0 + 31 (zeros past kv_end): warp w loads rows w, w + 4, ...; lanes stride over d.
    for (int j = warp; j < kTileKeys; j += kPreWarps) {
      const int64_t pos = k0 + j;
      const bool valid = pos < kv_end;
      const T* kr = kp;
      const T* vr = vp;
      if (valid) {
        const int64_t row = KvRow(p, pos);
        kr = kp + row * p.ldk + hk * d_h;
        vr = vp + row * p.ldv + hk * d_h;
      }
      float* skj = sk + j * kstride;
      float* svj = sv + j * kVStride;
      if (vec4) {  // d_h, ldk, ldv multiples of 4, k and v aligned for 4-wide loads of T
        for (int d = 4 * lane; d < kstride; d += 128) {
          const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          *reinterpret_cast<float4*>(skj + d) = (valid && d < d_h) ? KvLoad4(kr, d) : z;
        }
        for (int d = 4 * lane; d < kVStride; d += 128) {
          const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          *reinterpret_cast<float4*>(svj + d) = (valid && d < d_h) ? KvLoad4(vr, d) : z;
        }
      } else {
        for (int d = lane; d < kstride; d += 32) skj[d] = (valid && d < d_h) ? KvLoad(kr, d) : 0.0f;
        for (int d = lane; d < kVStride; d += 32) svj[d] = (valid && d < d_h) ? KvLoad(vr, d) : 0.0f;
      }
    }
    __syncthreads();
    if (k0 >= warp_end) continue;  // warp-uniform: every key of this tile is masked for all the warp's rows

    // Scores of key k0 + lane for the warp's rows (zero q rows past t give 0, ignored below).
    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.0f;
    const float* kj = sk + lane * kstride;
    const float* qw = sq + warp * kRowsPerWarp * dp;
    for (int d = 0; d < dp; d += 4) {
      const float4 kv = *reinterpret_cast<const float4*>(kj + d);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) s[r] += Dot4(*reinterpret_cast<const float4*>(qw + r * dp + d), kv);
    }

    // Online softmax per row; pr[r] = this lane's probability weight for key k0 + lane (0 when masked).
    const int64_t kpos = k0 + lane;
    float pr[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      pr[r] = 0.0f;
      const int64_t qpos = p.q_pos0 + i0 + warp * kRowsPerWarp + r;
      if (r >= warp_rows || k0 > qpos) continue;  // warp-uniform; m stays as is (finite after tile 0)
      const float sc = kpos <= qpos ? s[r] * p.scale : -INFINITY;
      const float m_new = fmaxf(m[r], WarpMax(sc));  // finite: key k0 <= qpos is unmasked
      const float alpha = expf(m[r] - m_new);         // first tile: exp(-inf) = 0
      pr[r] = expf(sc - m_new);                       // masked: exp(-inf) = 0
      l[r] = l[r] * alpha + pr[r];
      m[r] = m_new;
#pragma unroll
      for (int i = 0; i < kDPer; ++i) o[r][i] *= alpha;
    }

    // o[r][i] += sum_j p_j * V[j][lane + 32 i] over the keys any row of the warp sees (others have p = 0;
    // staged V past kv_end is zero, so no 0 * garbage).
    const int nk = static_cast<int>(Min64(kTileKeys, warp_end - k0));
#pragma unroll 4
    for (int j = 0; j < nk; ++j) {
      float v[kDPer];
#pragma unroll
      for (int i = 0; i < kDPer; ++i) v[i] = sv[j * kVStride + lane + 32 * i];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float pj = __shfl_sync(kFull, pr[r], j);
#pragma unroll
        for (int i = 0; i < kDPer; ++i) o[r][i] += pj * v[i];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (r >= warp_rows) continue;  // warp-uniform
    const float inv = 1.0f / WarpSum(l[r]);
    float* out = p.out + (i0 + warp * kRowsPerWarp + r) * p.ldo + hq * d_h;
#pragma unroll
    for (int i = 0; i < kDPer; ++i) {
      const int d = lane + 32 * i;
      if (d < d_h) out[d] = o[r][i] * inv;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decode. Block = (sequence r, kv head hk, slice of up to kDecGroup q heads of hk's group, split s): the q
// heads of a GQA group share every K/V read; split s takes the s-th of `splits` equal ranges of the sequence's
// keys (multiples of 32). Warp w takes the key chunks [32 c, 32 c + 32) of the range for c = w, w + 4, ...; in
// a chunk lane j scores key 32 c + j (its K row read directly, 4-wide when aligned) for each q head, then the
// warp accumulates p_j * V[j] with lane l owning output elements l, l + 32, ... The four warps' partial
// softmax states are merged through shared memory at the end; with one split the block writes the output,
// otherwise its (max, sum, unnormalised output) go to the partials and AttentionMergeKernel combines the
// splits. At batch 1 one block per KV head would walk a 1K-token context alone (latency-bound, ~0.3 ms on an
// H200); splitting the keys puts enough blocks in flight.

constexpr int kDecWarps = 4;
constexpr int kDecThreads = 32 * kDecWarps;

constexpr int kDecGroup = 8;  // q heads per block; larger GQA groups take several blocks (slices)

// Merges the splits of AttentionDecodeKernel for one (sequence, q head) row, by a block of kMergeThreads threads
// (every thread calls it): the merge kernel's block, or the decode kernel's last split block. The splits' weights
// f_s = e^(m_s - M) (M the largest m_s) and l_s f_s go to shared memory first, one split per thread, so the
// per-element sums below issue independent loads: out = sum_s o_s f_s / sum_s l_s f_s (0 when no split saw a
// key, as the one-pass kernel). The partials are read from L2 (other blocks of the same launch may have written
// them).
constexpr int kMergeThreads = 128;
constexpr int kMaxSplits = 256;
static_assert(kMergeThreads == kDecThreads, "the decode kernel's last split block merges as a merge block would");

__device__ __forceinline__ void MergeRow(const AttentionDecodeParams& p, int splits, int64_t row, float* s_f,
                                         float* s_red) {
  const int64_t r = row / p.n_q;
  const int64_t hq = row % p.n_q;
  const int64_t stride = p.d_h + 2;
  const float* part = p.partials + row * splits * stride;
  float m_local = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += kMergeThreads) m_local = fmaxf(m_local, __ldcg(part + s * stride));
  // Block max (as BlockSum, with max).
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m_local = fmaxf(m_local, __shfl_xor_sync(0xffffffffu, m_local, o));
  __syncthreads();  // s_red / s_f may still be read for a previous row
  if ((threadIdx.x & 31) == 0) s_red[threadIdx.x >> 5] = m_local;
  __syncthreads();
  float mx = -INFINITY;
  for (int w = 0; w < kMergeThreads / 32; ++w) mx = fmaxf(mx, s_red[w]);
  float l_local = 0.0f;
  for (int s = threadIdx.x; s < splits; s += kMergeThreads) {
    const float ms = __ldcg(part + s * stride);
    const float f = ms == -INFINITY ? 0.0f : expf(ms - mx);  // a split without keys weighs nothing
    s_f[s] = f;
    l_local += __ldcg(part + s * stride + 1) * f;
  }
  __syncthreads();  // s_red is reused below, s_f is complete
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) l_local += __shfl_xor_sync(0xffffffffu, l_local, o);
  if ((threadIdx.x & 31) == 0) s_red[threadIdx.x >> 5] = l_local;
  __syncthreads();
  float sum = 0.0f;
  for (int w = 0; w < kMergeThreads / 32; ++w) sum += s_red[w];
  for (int64_t d = threadIdx.x; d < p.d_h; d += kMergeThreads) {
    float acc = 0.0f;
#pragma unroll 8
    for (int s = 0; s < splits; ++s) acc += __ldcg(part + s * stride + 2 + d) * s_f[s];
    p.out[r * p.ldo + hq * p.d_h + d] = sum > 0.0f ? acc / sum : 0.0f;
  }
}

// AttentionDecodeParams::split_counts: after this block wrote its partials, the block whose count completes
// counter `counter` (the `rows` q heads from row0 of one sequence and KV head) merges their splits, then resets
// the counter. Every thread of the block calls it.
__device__ __forceinline__ void LastSplitMerges(const AttentionDecodeParams& p, int splits, int64_t counter,
                                                int64_t row0, int rows) {
  __shared__ float s_f[kMaxSplits];
  __shared__ float s_red[32];
  __shared__ int s_last;
  __threadfence();  // this block's partials, visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(p.split_counts + counter, 1u) + 1u == static_cast<unsigned>(splits);
  __syncthreads();
  if (!s_last) return;  // block-uniform
  __threadfence();  // the other splits' partials (counted before ours) are visible to the reads below
  for (int g = 0; g < rows; ++g) MergeRow(p, splits, row0 + g, s_f, s_red);
  if (threadIdx.x == 0) p.split_counts[counter] = 0u;
}

// Shared memory (floats): q [kDecGroup][dp] | partial o [kDecWarps][kDecGroup][32 * kDPer] |
// partial m [kDecWarps][kDecGroup] | partial l [kDecWarps][kDecGroup].
template <int kDPer, bool kVec4, typename T>
__global__ void __launch_bounds__(kDecThreads)
    AttentionDecodeKernel(AttentionDecodeParams p, const T* k_cache, const T* v_cache, int slices, int dp,
                          int splits) {
  cuda::TriggerDependents();  // o_proj's GEMV may launch early (kernels/cuda/pdl.cuh)
  constexpr int kVStride = 32 * kDPer;
  extern __shared__ float4 smem4[];
  float* sq = reinterpret_cast<float*>(smem4);
  float* so = sq + kDecGroup * dp;
  float* sm = so + kDecWarps * kDecGroup * kVStride;
  float* sl = sm + kDecWarps * kDecGroup;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int d_h = static_cast<int>(p.d_h);
  // blockIdx.x = ((r * n_kv + hk) * slices + slice) * splits + split; n_q and the block count fit int32
  // (checked on the host).
  const int n_kv = static_cast<int>(p.n_kv);
  const int group = static_cast<int>(p.n_q / p.n_kv);
  const int split = static_cast<int>(blockIdx.x % splits);
  const int64_t bx = blockIdx.x / splits;
  const int slice = static_cast<int>(bx % slices);
  const int hk = static_cast<int>((bx / slices) % n_kv);
  const int64_t r = bx / (static_cast<int64_t>(slices) * n_kv);
  const int64_t hq0 = int64_t{hk} * group + slice * kDecGroup;  // first q head of the block
  const int gn = min(kDecGroup, group - slice * kDecGroup);
  // kv_lens[r] outside [1, max_blocks * block_size] (invalid, or a padding row) gives a zero output row.
  int64_t kv_len = p.kv_lens[r];
  if (kv_len > p.max_blocks * p.block_size || kv_len < 0) kv_len = 0;
  // This split's keys [key_begin, key_end): ranges of a multiple of 32 keys, the last one possibly short or empty.
  // At least 128 keys per split (one chunk per warp): short contexts use fewer splits, the rest exit at once.
  int64_t per_split = (kv_len + int64_t{splits} * 32 - 1) / (int64_t{splits} * 32) * 32;
  if (per_split < 128) per_split = 128;
  const int64_t key_begin = Min64(int64_t{split} * per_split, kv_len);
  const int64_t key_end = Min64(key_begin + per_split, kv_len);

  for (int idx = threadIdx.x; idx < gn * dp; idx += kDecThreads) {
    const int g = idx / dp;
    const int d = idx % dp;
    sq[idx] = d < d_h ? p.q[r * p.ldq + (hq0 + g) * d_h + d] : 0.0f;
  }
  __syncthreads();

  float m[kDecGroup], l[kDecGroup], o[kDecGroup][kDPer];
#pragma unroll
  for (int g = 0; g < kDecGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDPer; ++i) o[g][i] = 0.0f;
  }

  const int32_t* table = p.block_tables + r * p.max_blocks;
  const int64_t pos_stride = p.n_kv * p.d_h;  // cache row stride (one position of all kv heads)
  const T* kbase = k_cache + hk * d_h;
  const T* vbase = v_cache + hk * d_h;
  for (int64_t c0 = key_begin + int64_t{warp} * 32; c0 < key_end; c0 += kDecWarps * 32) {  // warp-uniform
    const int64_t key = c0 + lane;
    const bool valid = key < key_end;
    int64_t row = 0;
    float s[kDecGroup];
#pragma unroll
    for (int g = 0; g < kDecGroup; ++g) s[g] = 0.0f;
    if (valid) {  // divergent, no shuffles inside
      row = PagedRow(table, key, p.block_size);
      const T* kr = kbase + row * pos_stride;
      if (kVec4) {  // d_h % 4 == 0 and k_cache aligned for 4-wide loads: so is every row start
        for (int d = 0; d < d_h; d += 4) {
          const float4 kv = KvLoad4(kr, d);
#pragma unroll
          for (int g = 0; g < kDecGroup; ++g) {
            if (g < gn) s[g] += Dot4(*reinterpret_cast<const float4*>(sq + g * dp + d), kv);
          }
        }
      } else {
        for (int d = 0; d < d_h; ++d) {
          const float kv = KvLoad(kr, d);
#pragma unroll
          for (int g = 0; g < kDecGroup; ++g) {
            if (g < gn) s[g] += sq[g * dp + d] * kv;
          }
        }
      }
    }
    float pr[kDecGroup];
#pragma unroll
    for (int g = 0; g < kDecGroup; ++g) {
      pr[g] = 0.0f;
      if (g >= gn) continue;  // block-uniform
      const float sc = valid ? s[g] * p.scale : -INFINITY;
      const float m_new = fmaxf(m[g], WarpMax(sc));  // finite: lane 0's key c0 < key_end is valid
      const float alpha = expf(m[g] - m_new);
      pr[g] = expf(sc - m_new);
      l[g] = l[g] * alpha + pr[g];
      m[g] = m_new;
#pragma unroll
      for (int i = 0; i < kDPer; ++i) o[g][i] *= alpha;
    }
    const int nk = static_cast<int>(Min64(32, key_end - c0));  // valid keys of the chunk (uniform)
#pragma unroll 4
    for (int j = 0; j < nk; ++j) {
      const int64_t rj = __shfl_sync(kFull, row, j);
      const T* vr = vbase + rj * pos_stride;
      float v[kDPer];
#pragma unroll
      for (int i = 0; i < kDPer; ++i) {
        const int d = lane + 32 * i;
        v[i] = d < d_h ? KvLoad(vr, d) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kDecGroup; ++g) {
        if (g >= gn) continue;  // block-uniform
        const float pj = __shfl_sync(kFull, pr[g], j);
#pragma unroll
        for (int i = 0; i < kDPer; ++i) o[g][i] += pj * v[i];
      }
    }
  }

  // Each warp's partial state (warps without keys publish m = -inf, l = 0, o = 0).
#pragma unroll
  for (int g = 0; g < kDecGroup; ++g) {
    if (g >= gn) continue;  // block-uniform
    const float lsum = WarpSum(l[g]);
    const int slot = warp * kDecGroup + g;
    if (lane == 0) {
      sm[slot] = m[g];
      sl[slot] = lsum;
    }
#pragma unroll
    for (int i = 0; i < kDPer; ++i) so[slot * kVStride + lane + 32 * i] = o[g][i];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < gn * d_h; idx += kDecThreads) {
    const int g = idx / d_h;
    const int d = idx % d_h;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) mx = fmaxf(mx, sm[w * kDecGroup + g]);
    float sum = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) {
      const int slot = w * kDecGroup + g;
      if (sm[slot] == -INFINITY) continue;  // the warp saw no key
      const float f = expf(sm[slot] - mx);
      sum += sl[slot] * f;
      acc += so[slot * kVStride + d] * f;
    }
    if (splits == 1) {
      p.out[r * p.ldo + (hq0 + g) * d_h + d] = sum > 0.0f ? acc / sum : 0.0f;
    } else {  // this split's state: [m, l, o[0 .. d_h)] relative to m (m = -inf, l = 0, o = 0 without keys)
      float* part = p.partials + ((r * p.n_q + hq0 + g) * splits + split) * (p.d_h + 2);
      if (d == 0) {
        part[0] = mx;
        part[1] = sum;
      }
      part[2 + d] = mx == -INFINITY ? 0.0f : acc;
    }
  }
  if (splits > 1 && p.split_counts != nullptr) LastSplitMerges(p, splits, bx, r * p.n_q + hq0, gn);
}

// The second launch of split-K decode without split_counts: one block per (sequence, q head).
__global__ void __launch_bounds__(kMergeThreads) AttentionMergeKernel(AttentionDecodeParams p, int splits) {
  cuda::TriggerDependents();
  __shared__ float s_f[kMaxSplits];
  __shared__ float s_red[32];
  MergeRow(p, splits, blockIdx.x, s_f, s_red);
}

// Output elements per lane for d_h (d_h <= 32 * kDPer), 1, 2, 4 or 8.
int DPerLane(int64_t d_h) { return d_h <= 32 ? 1 : d_h <= 64 ? 2 : d_h <= 128 ? 4 : 8; }

constexpr size_t kDefaultSmem = 48 * 1024;

// Opts the kernel into more than the default 48 KiB of dynamic shared memory when needed.
template <typename Kernel>
cudaError_t AllowSmem(Kernel kernel, size_t bytes) {
  if (bytes <= kDefaultSmem) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <int kDPer, typename T>
absl::Status LaunchPrefill(const AttentionParams& p, const T* kp, const T* vp, cudaStream_t stream) {
  const int dp = static_cast<int>((p.d_h + 3) / 4 * 4);
  const int kstride = (dp / 4) % 2 == 1 ? dp : dp + 4;
  const size_t smem = sizeof(float) * (size_t{kPreRows} * dp + size_t{kTileKeys} * kstride +
                                       size_t{kTileKeys} * 32 * kDPer);
  const bool vec4 = p.d_h % 4 == 0 && p.ldk % 4 == 0 && p.ldv % 4 == 0 && AlignedVec4(kp) && AlignedVec4(vp);
  const int64_t tiles = (p.t + kPreRows - 1) / kPreRows;
  if (tiles > 0x7fffffffLL) return absl::InvalidArgumentError("AttentionCuda: t exceeds the grid limit");
  if (cudaError_t err = AllowSmem(AttentionPrefillKernel<kDPer, T>, smem); err != cudaSuccess) {
    return absl::InternalError(std::string("AttentionCuda: shared memory opt-in failed: ") + cudaGetErrorString(err));
  }
  const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(p.n_q));
  AttentionPrefillKernel<kDPer, T><<<grid, kPreThreads, smem, stream>>>(p, kp, vp, dp, kstride, vec4);
  return cuda::LaunchStatus("AttentionCuda");
}

// Splits of the keys for a decode launch (see AttentionDecodeParams): explicit, or enough blocks for two per SM,
// limited by the partials' room and by the keys a sequence can hold (one chunk of 32 each at least).
int DecodeSplits(const AttentionDecodeParams& p, int64_t slices) {
  if (p.partials == nullptr) return 1;
  int64_t want = p.splits;
  if (want <= 0) {
    static const int sms = [] {
      int device = 0, count = 0;
      if (cudaGetDevice(&device) != cudaSuccess ||
          cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || count <= 0) {
        cudaGetLastError();
        return 132;
      }
      return count;
    }();
    const int64_t blocks = p.n * p.n_kv * slices;
    want = (2 * int64_t{sms} + blocks - 1) / blocks;
  }
  want = std::min<int64_t>(want, (p.max_blocks * p.block_size + 31) / 32);
  want = std::min<int64_t>(want, kMaxSplits);
  const int64_t per = p.n * p.n_q * (p.d_h + 2);
  want = std::min<int64_t>(want, per > 0 ? p.partial_floats / per : 1);
  return static_cast<int>(std::max<int64_t>(want, 1));
}

template <int kDPer, typename T>
absl::Status LaunchDecode(const AttentionDecodeParams& p, const T* kc, const T* vc, cudaStream_t stream) {
  const int dp = static_cast<int>((p.d_h + 3) / 4 * 4);
  const int64_t group = p.n_q / p.n_kv;
  const int64_t slices = (group + kDecGroup - 1) / kDecGroup;
  const int splits = DecodeSplits(p, slices);
  const int64_t blocks = p.n * p.n_kv * slices * splits;
  if (blocks > 0x7fffffffLL) return absl::InvalidArgumentError("AttentionDecodeCuda: n * n_q exceeds the grid limit");
  const size_t smem = sizeof(float) * (size_t{kDecGroup} * dp + size_t{kDecWarps} * kDecGroup * 32 * kDPer +
                                       2 * size_t{kDecWarps} * kDecGroup);
  const bool vec4 = p.d_h % 4 == 0 && AlignedVec4(kc);
  if (vec4) {
    if (cudaError_t err = AllowSmem(AttentionDecodeKernel<kDPer, true, T>, smem); err != cudaSuccess) {
      return absl::InternalError(std::string("AttentionDecodeCuda: shared memory opt-in failed: ") +
                                 cudaGetErrorString(err));
    }
    AttentionDecodeKernel<kDPer, true, T><<<static_cast<unsigned int>(blocks), kDecThreads, smem, stream>>>(
        p, kc, vc, static_cast<int>(slices), dp, splits);
  } else {
    if (cudaError_t err = AllowSmem(AttentionDecodeKernel<kDPer, false, T>, smem); err != cudaSuccess) {
      return absl::InternalError(std::string("AttentionDecodeCuda: shared memory opt-in failed: ") +
                                 cudaGetErrorString(err));
    }
    AttentionDecodeKernel<kDPer, false, T><<<static_cast<unsigned int>(blocks), kDecThreads, smem, stream>>>(
        p, kc, vc, static_cast<int>(slices), dp, splits);
  }
  if (splits > 1 && p.split_counts == nullptr) {  // (with split_counts the last split block merges)
    if (p.n * p.n_q > 0x7fffffffLL) return absl::InvalidArgumentError("AttentionDecodeCuda: n * n_q exceeds the grid");
    AttentionMergeKernel<<<static_cast<unsigned int>(p.n * p.n_q), kMergeThreads, 0, stream>>>(p, splits);
  }
  return cuda::LaunchStatus("AttentionDecodeCuda");
}

template <typename T>
absl::Status DispatchPrefill(const AttentionParams& p, const T* kp, const T* vp, cudaStream_t stream) {
  switch (DPerLane(p.d_h)) {
    case 1:
      return LaunchPrefill<1>(p, kp, vp, stream);
    case 2:
      return LaunchPrefill<2>(p, kp, vp, stream);
    case 4:
      return LaunchPrefill<4>(p, kp, vp, stream);
    default:
      return LaunchPrefill<8>(p, kp, vp, stream);
  }
}

template <typename T>
absl::Status DispatchDecode(const AttentionDecodeParams& p, const T* kc, const T* vc, cudaStream_t stream) {
  switch (DPerLane(p.d_h)) {
    case 1:
      return LaunchDecode<1>(p, kc, vc, stream);
    case 2:
      return LaunchDecode<2>(p, kc, vc, stream);
    case 4:
      return LaunchDecode<4>(p, kc, vc, stream);
    default:
      return LaunchDecode<8>(p, kc, vc, stream);
  }
}

}  // namespace

absl::Status KvAppendCuda(const KvAppendParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateKvAppend(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  constexpr int kThreads = 128;
  const unsigned int grid = cuda::GridFor(p.t, 1);  // one block per token, grid-stride beyond the cap
  if (p.k_cache16 != nullptr) {
    KvAppendKernel<false, uint16_t><<<grid, kThreads, 0, stream>>>(p, p.k_cache16, p.v_cache16);
    return cuda::LaunchStatus("KvAppendCuda");
  }
  const bool vec4 = p.kv_dim % 4 == 0 && p.ldk % 4 == 0 && p.ldv % 4 == 0 && Aligned16(p.k) && Aligned16(p.v) &&
                    Aligned16(p.k_cache) && Aligned16(p.v_cache);
  if (vec4) {
    KvAppendKernel<true, float><<<grid, kThreads, 0, stream>>>(p, p.k_cache, p.v_cache);
  } else {
    KvAppendKernel<false, float><<<grid, kThreads, 0, stream>>>(p, p.k_cache, p.v_cache);
  }
  return cuda::LaunchStatus("KvAppendCuda");
}

absl::Status AttentionCuda(const AttentionParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  if (p.d_h > kMaxHeadDim) {
    return absl::InvalidArgumentError("AttentionCuda: d_h = " + std::to_string(p.d_h) + " exceeds the supported " +
                                      std::to_string(kMaxHeadDim));
  }
  if (p.n_q > 65535) {
    return absl::InvalidArgumentError("AttentionCuda: n_q = " + std::to_string(p.n_q) + " exceeds 65535");
  }
  if (p.kv_len > kMaxPositions || p.block_size > kMaxPositions) {
    return absl::InvalidArgumentError("AttentionCuda: kv_len and block_size must be below 2^31");
  }
  if (AttentionPrefillTcEligible(p)) return AttentionPrefillTcCuda(p, stream);  // kernels/cuda/attention_tc.cu
  if (p.k16 != nullptr) return DispatchPrefill(p, p.k16, p.v16, stream);
  return DispatchPrefill(p, p.k, p.v, stream);
}

absl::Status AttentionDecodeCuda(const AttentionDecodeParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAttentionDecode(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.d_h > kMaxHeadDim) {
    return absl::InvalidArgumentError("AttentionDecodeCuda: d_h = " + std::to_string(p.d_h) +
                                      " exceeds the supported " + std::to_string(kMaxHeadDim));
  }
  if (p.n_q > 65535) {
    return absl::InvalidArgumentError("AttentionDecodeCuda: n_q = " + std::to_string(p.n_q) + " exceeds 65535");
  }
  if (p.max_blocks * p.block_size > kMaxPositions) {
    return absl::InvalidArgumentError("AttentionDecodeCuda: max_blocks * block_size must be below 2^31");
  }
  if (p.k_cache16 != nullptr) return DispatchDecode(p, p.k_cache16, p.v_cache16, stream);
  return DispatchDecode(p, p.k_cache, p.v_cache, stream);
}

}  // namespace quarry
