// AttentionPrefillTcCuda (kernels/cuda/attention_tc.h): causal GQA prefill over a bf16 KV cache on the tensor
// cores, flash-attention style (online softmax over key tiles, nothing of size t x t in memory), for head
// dimensions kD = 16, 32, 64 and 128.
//
// Block = (tile of 64 query rows, q head hq); warp w owns rows [16 w, 16 w + 16) of the tile. The block walks the
// keys [0, last row's position] in tiles of 64:
//   1. stage: the tile's K and V rows (bf16, 16-byte chunks straight from the paged cache; zero past the keys)
//      into shared memory, row stride kD + 8 (16-byte aligned rows, fragment rows 32-byte aligned);
//   2. scores: each warp S (16 x 64) = Q_w (16 x kD) · Kᵀ with WMMA 16 x 16 x 16 (bf16 in, f32 accumulate);
//      Q_w's kD / 16 fragments were loaded once (the q rows rounded to bf16 when staged); S goes to the warp's
//      f32 scratch in shared memory;
//   3. online softmax in f32 on the CUDA cores: lane l owns row l / 2 of the warp and keys [32 (l % 2), +32):
//      scale, causal mask (key > the row's position: -inf), the row's running max m across the lane pair, the
//      rescale alpha = exp(m_old - m_new) of its running sum and output, p = exp(s - m_new) written as bf16 to
//      the warp's P tile;
//   4. O_tile (16 x kD) = P (16 x 64) · V (64 x kD) with WMMA into the warp's scratch (over S, consumed), then
//      each lane adds its row's half of O_tile to its output registers (row l / 2, columns [kD/2 (l % 2), +kD/2)).
// At the end each row is divided by its sum (the lane pair's partial sums added) and stored in f32.
//
// Rounding: q, p (and k, v: the cache) are bf16 at the MMAs, products are exact in f32 and summed in f32; scores,
// softmax and the output accumulation are f32. That is FlashAttention's precision for a bf16 model; against
// AttentionCpu (f32 q and p) the outputs differ by up to ~3e-3 of the value scale (tested at 1e-2). Hence the rule in
// AttentionCuda: tensor cores only over a bf16 KV cache (already rounded); an f32 cache keeps the exact kernel.
#include "kernels/cuda/attention_tc.h"

#include <cuda_bf16.h>
#include <mma.h>

#include <atomic>
#include <string>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/paged_kv.cuh"

namespace quarry {
namespace {

namespace wmma = nvcuda::wmma;

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarps = attention_tc::kWarps;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = attention_tc::kRows;  // query rows per block, 16 per warp
constexpr int kKeys = 64;                   // keys per tile
constexpr int kLdS = kKeys + 4;             // S row stride in the scratch (f32)
constexpr int kLdP = kKeys + 8;             // P row stride (bf16)

std::atomic<bool> g_tensor_cores{true};

// Shared memory (bytes): Q [kRows][kLd] | K [kKeys][kLd] | V [kKeys][kLd] (bf16) | per warp scratch [16][kLdO] f32
// (S with row stride kLdS, or the O tile) | per warp P [16][kLdP] bf16. Every region and fragment row starts
// 32-byte aligned (WMMA's requirement): 16 * kLd * 2, 16 * kLdO * 4 and 16 * kLdP * 2 are multiples of 32.
template <int kD>
struct Layout {
  static constexpr int kLd = kD + 8;
  static constexpr int kLdO = kD + 4;
  static constexpr int kScratchFloats = 16 * (kLdO > kLdS ? kLdO : kLdS);  // per warp: S or the O tile
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + size_t{kRows} * kLd * 2;
  static constexpr size_t kV = kK + size_t{kKeys} * kLd * 2;
  static constexpr size_t kScratch = kV + size_t{kKeys} * kLd * 2;
  static constexpr size_t kP = kScratch + size_t{kWarps} * kScratchFloats * 4;
  static constexpr size_t kBytes = kP + size_t{kWarps} * 16 * kLdP * 2;
  static_assert((16 * kLd * 2) % 32 == 0 && (16 * kLdO * 4) % 32 == 0 && (16 * kLdP * 2) % 32 == 0, "alignment");
  static_assert((kScratchFloats * 4) % 32 == 0 && (16 * kLdS * 4) % 32 == 0, "alignment");
  static_assert(kK % 32 == 0 && kV % 32 == 0 && kScratch % 32 == 0 && kP % 32 == 0, "alignment");
};

template <int kD>
__global__ void __launch_bounds__(kThreads) AttentionPrefillTcKernel(AttentionParams p) {
  using L = Layout<kD>;
  constexpr int kFrags = kD / 16;
  constexpr int kHalfD = kD / 2;
  extern __shared__ float4 smem4[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem4);
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem + L::kQ);
  auto* sk = reinterpret_cast<__nv_bfloat16*>(smem + L::kK);
  auto* sv = reinterpret_cast<__nv_bfloat16*>(smem + L::kV);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  float* scratch = reinterpret_cast<float*>(smem + L::kScratch) + warp * L::kScratchFloats;
  auto* sp = reinterpret_cast<__nv_bfloat16*>(smem + L::kP) + warp * 16 * kLdP;

  const int64_t i0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * kRows;  // latest (longest) tiles first
  const int rows = static_cast<int>(p.t - i0 < kRows ? p.t - i0 : kRows);
  const int hq = static_cast<int>(blockIdx.y);
  const int hk = hq / static_cast<int>(p.n_q / p.n_kv);
  const int64_t kv_end = p.q_pos0 + i0 + rows;  // keys [0, kv_end) are seen by some row of the block
  const int warp_rows = max(0, min(16, rows - warp * 16));
  const int64_t warp_end = warp_rows > 0 ? p.q_pos0 + i0 + warp * 16 + warp_rows : 0;
  const int r = lane >> 1;     // this lane's row of the warp's 16
  const int half = lane & 1;   // and its half of the keys / output columns
  const int64_t qpos = p.q_pos0 + i0 + warp * 16 + r;  // past the last row for padding rows (never stored)

  // Q rows of the tile, rounded to bf16 (zero past t).
  for (int idx = threadIdx.x; idx < kRows * kD; idx += kThreads) {
    const int row = idx / kD;
    const int d = idx % kD;
    const float v = row < rows ? p.q[(i0 + row) * p.ldq + static_cast<int64_t>(hq) * kD + d] : 0.0f;
    sq[row * L::kLd + d] = __float2bfloat16_rn(v);
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qa[kFrags];
#pragma unroll
  for (int f = 0; f < kFrags; ++f) wmma::load_matrix_sync(qa[f], sq + warp * 16 * L::kLd + 16 * f, L::kLd);

  float o[kHalfD];
#pragma unroll
  for (int i = 0; i < kHalfD; ++i) o[i] = 0.0f;
  float m = -INFINITY;
  float lsum = 0.0f;  // this lane's share of its row's sum (its half of the keys)

  const auto* k16 = reinterpret_cast<const uint4*>(p.k16);
  const auto* v16 = reinterpret_cast<const uint4*>(p.v16);
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  for (int64_t k0 = 0; k0 < kv_end; k0 += kKeys) {
    __syncthreads();  // every warp is done with the previous tile's K and V
    for (int idx = threadIdx.x; idx < kKeys * kChunks; idx += kThreads) {
      const int j = idx / kChunks;
      const int c = idx % kChunks;
      const int64_t pos = k0 + j;
      uint4 kc = make_uint4(0u, 0u, 0u, 0u), vc = kc;
      if (pos < kv_end) {
        const int64_t row = cuda::KvRow(p, pos);
        // Element offsets are multiples of 8 (ldk, ldv, kD and the chunk): whole 16-byte chunks.
        kc = __ldg(k16 + (row * p.ldk + static_cast<int64_t>(hk) * kD) / 8 + c);
        vc = __ldg(v16 + (row * p.ldv + static_cast<int64_t>(hk) * kD) / 8 + c);
      }
      *reinterpret_cast<uint4*>(sk + j * L::kLd + 8 * c) = kc;
      *reinterpret_cast<uint4*>(sv + j * L::kLd + 8 * c) = vc;
    }
    __syncthreads();
    if (k0 >= warp_end) continue;  // warp-uniform: every key of the tile is masked for all the warp's rows

    // 2. S = Q_w · Kᵀ (K staged [key][d] is Kᵀ in column-major order).
#pragma unroll
    for (int nb = 0; nb < kKeys / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int f = 0; f < kFrags; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kb;
        wmma::load_matrix_sync(kb, sk + nb * 16 * L::kLd + 16 * f, L::kLd);
        wmma::mma_sync(acc, qa[f], kb, acc);
      }
      wmma::store_matrix_sync(scratch + 16 * nb, acc, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // 3. Online softmax of row r over keys k0 + 32 half + [0, 32).
    float s[32];
    float tmax = -INFINITY;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int64_t key = k0 + 32 * half + j;
      const float v = scratch[r * kLdS + 32 * half + j] * p.scale;
      s[j] = key <= qpos && key < kv_end ? v : -INFINITY;
      tmax = fmaxf(tmax, s[j]);
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 1));
    const float m_new = fmaxf(m, tmax);  // finite: key 0 <= qpos is in every warp's first tile
    const float alpha = expf(m - m_new);  // first tile: exp(-inf) = 0
    float psum = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const float pj = expf(s[j] - m_new);  // masked: 0
      psum += pj;
      sp[r * kLdP + 32 * half + j] = __float2bfloat16_rn(pj);
    }
    lsum = lsum * alpha + psum;
    m = m_new;
#pragma unroll
    for (int i = 0; i < kHalfD; ++i) o[i] *= alpha;
    __syncwarp();  // P complete; S consumed (the O tile overwrites it)

    // 4. O_tile = P · V, then into this lane's output registers.
#pragma unroll
    for (int db = 0; db < kFrags; ++db) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kb = 0; kb < kKeys / 16; ++kb) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
        wmma::load_matrix_sync(pa, sp + 16 * kb, kLdP);
        wmma::load_matrix_sync(vb, sv + kb * 16 * L::kLd + 16 * db, L::kLd);
        wmma::mma_sync(acc, pa, vb, acc);
      }
      wmma::store_matrix_sync(scratch + 16 * db, acc, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < kHalfD; ++i) o[i] += scratch[r * L::kLdO + kHalfD * half + i];
    __syncwarp();  // the scratch is read before the next tile's S overwrites it
  }

  const float l = lsum + __shfl_xor_sync(kFull, lsum, 1);
  if (warp * 16 + r < rows) {
    const float inv = 1.0f / l;
    float* out = p.out + (i0 + warp * 16 + r) * p.ldo + static_cast<int64_t>(hq) * kD + kHalfD * half;
#pragma unroll
    for (int i = 0; i < kHalfD; ++i) out[i] = o[i] * inv;
  }
}

template <int kD>
absl::Status Launch(const AttentionParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = Layout<kD>::kBytes;
  if (cudaError_t err = cudaFuncSetAttribute(AttentionPrefillTcKernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(kSmem));
      err != cudaSuccess) {
    return absl::InternalError(std::string("AttentionCuda: shared memory opt-in failed: ") + cudaGetErrorString(err));
  }
  const int64_t tiles = (p.t + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(p.n_q));
  AttentionPrefillTcKernel<kD><<<grid, kThreads, kSmem, stream>>>(p);
  return cuda::LaunchStatus("AttentionCuda");
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

void SetAttentionTensorCores(bool on) { g_tensor_cores.store(on, std::memory_order_relaxed); }
bool AttentionTensorCores() { return g_tensor_cores.load(std::memory_order_relaxed); }

bool AttentionPrefillTcEligible(const AttentionParams& p) {
  return AttentionTensorCores() && p.k16 != nullptr &&
         (p.d_h == 16 || p.d_h == 32 || p.d_h == 64 || p.d_h == 128) &&
         p.t > attention_tc::kMinRows && p.ldk % 8 == 0 && p.ldv % 8 == 0 && Aligned16(p.k16) &&
         Aligned16(p.v16) && p.t / kRows < 0x7fffffffLL && p.n_q <= 65535 && p.kv_len <= 0x7fffffffLL &&
         p.block_size <= 0x7fffffffLL;  // grid limits; 32-bit position math in KvRow
}

absl::Status AttentionPrefillTcCuda(const AttentionParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  if (!AttentionPrefillTcEligible(p)) {
    return absl::InvalidArgumentError("AttentionPrefillTcCuda: needs a bf16 KV cache with 16-byte aligned rows, "
                                      "d_h 16, 32, 64 or 128 and more than 16 query rows (AttentionCuda picks)");
  }
  switch (p.d_h) {
    case 16:
      return Launch<16>(p, stream);
    case 32:
      return Launch<32>(p, stream);
    case 64:
      return Launch<64>(p, stream);
    default:
      return Launch<128>(p, stream);
  }
}

}  // namespace quarry
