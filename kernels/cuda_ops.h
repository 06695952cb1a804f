// CUDA entry points of the kernels: same Params as the CPU versions (device pointers), launched on `stream`.
// Only this header pulls in CUDA; CPU-only code includes the per-op headers instead.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "kernels/logits_process.h"
#include "kernels/mamba_decode.h"
#include "kernels/moe.h"
#include "kernels/moe_grouped.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"
#include "kernels/ssd_scan.h"

namespace quarry {

// Each returns the shared Validate error, or INTERNAL naming the op when the launch fails. The ops are
// asynchronous: execution errors surface at the next synchronising call.
absl::Status RmsNormCuda(const RmsNormParams& p, cudaStream_t stream);
// Programmatic dependent launch of the decode kernels (kernels/cuda/pdl.cuh), process-wide; off by default.
void SetProgrammaticLaunch(bool on);
bool ProgrammaticLaunch();
// GroupedLinearParams::after inside GroupedLinearCuda's launch where it qualifies (process-wide; on by default).
// Off, the after norm always runs as AddRmsNormCuda's own launch: same results, one launch more per MoE block at
// decode (for measuring the fusion on a GPU: QUARRY_CUDA_FUSE_AFTER=0).
void SetGroupedAfterFusion(bool on);
bool GroupedAfterFusion();
absl::Status GatedRmsNormCuda(const GatedRmsNormParams& p, cudaStream_t stream);
absl::Status AddRmsNormCuda(const AddRmsNormParams& p, cudaStream_t stream);
// Table F32, BF16 or F16. Ids cannot be checked on the host: a row whose id is outside [0, vocab) is NaN.
absl::Status EmbeddingCuda(const EmbeddingParams& p, cudaStream_t stream);
absl::Status SwigluCuda(const SwigluParams& p, cudaStream_t stream);
absl::Status TopKSoftmaxCuda(const TopKSoftmaxParams& p, cudaStream_t stream);
absl::Status ScaledAddCuda(const ScaledAddParams& p, cudaStream_t stream);
absl::Status ScaleCuda(const ScaleParams& p, cudaStream_t stream);
// t == 1 only (decode), like CausalConv1dUpdateCpu.
absl::Status CausalConv1dUpdateCuda(const CausalConv1dParams& p, cudaStream_t stream);
// Any t >= 1 (prefill chunk), like CausalConv1dCpu.
absl::Status CausalConv1dCuda(const CausalConv1dParams& p, cudaStream_t stream);
// The recurrence token by token for any t (f32 or bf16 state storage); decode and the reference.
absl::Status SsdStateUpdateCuda(const SsdParams& p, cudaStream_t stream);
// Prefill scan of a chunk of t tokens of one sequence (f32 or bf16 state); equal to SsdChunkedScanCpu up to
// rounding. chunk_size may be ignored by the implementation (documented in the .cu file).
absl::Status SsdScanCuda(const SsdParams& p, cudaStream_t stream);
// Whether SsdScanCuda with a workspace runs the chunked form (kernels/cuda/ssd_chunked.cu; process-wide, on by
// default) or the split recurrence (for measuring one against the other on a GPU: QUARRY_CUDA_SSD_CHUNKED=0).
void SetSsdChunkedScan(bool on);
bool SsdChunkedScan();
// Batched decode (one token per sequence, per-row state pointers in device memory).
absl::Status ConvUpdateBatchCuda(const ConvUpdateBatchParams& p, cudaStream_t stream);
absl::Status SsdUpdateBatchCuda(const SsdUpdateBatchParams& p, cudaStream_t stream);
// Paged KV writes (slots in device memory; not range-checked on the device) and attention.
absl::Status KvAppendCuda(const KvAppendParams& p, cudaStream_t stream);
// Prefill / any t, contiguous or paged (block_table in device memory): tiled, online softmax in f32.
absl::Status AttentionCuda(const AttentionParams& p, cudaStream_t stream);
absl::Status AttentionDecodeCuda(const AttentionDecodeParams& p, cudaStream_t stream);
// MoE as permute -> grouped GEMMs -> combine; counts and offsets stay on the device (graph-capturable).
absl::Status MoePermuteCuda(const MoePermuteParams& p, cudaStream_t stream);
// TopKSoftmaxCuda then MoePermuteCuda; up to 64 rows in one single-block launch.
absl::Status MoeRouteCuda(const TopKSoftmaxParams& topk, const MoePermuteParams& permute, cudaStream_t stream);
absl::Status GroupedLinearCuda(const GroupedLinearParams& p, cudaStream_t stream);
absl::Status MoeCombineCuda(const MoeCombineParams& p, cudaStream_t stream);
absl::Status ArgmaxCuda(const ArgmaxParams& p, cudaStream_t stream);
// Per-row sampling (kernels/sampling.h); row_params in device memory (values are not checked on the device).
absl::Status SampleCuda(const SampleParams& p, cudaStream_t stream);
// The logits processors (kernels/logits_process.h); CSR entries are checked on the host beforehand.
absl::Status LogitsAdjustCuda(const LogitsAdjustParams& p, cudaStream_t stream);
absl::Status LogprobsCuda(const LogprobsParams& p, cudaStream_t stream);
// A negative row yields a NaN row (rows cannot be checked on the host).
absl::Status GatherRowsCuda(const GatherRowsParams& p, cudaStream_t stream);
// W in F32, BF16 or F16. Small m (decode): a bandwidth-bound GEMV-style kernel (W read once, 16-byte loads);
// larger m: a tiled kernel. The cuBLAS path (tensor cores) is CublasLinear (kernels/cuda/cublas_linear.h).
absl::Status LinearCuda(const LinearParams& p, cudaStream_t stream);

// Device-to-device copy bandwidth in GB/s (bytes read + written / time), measured with `iters` copies of
// `bytes` on `stream`: the denominator of the engine benchmark's bandwidth floor.
absl::Status MeasureCopyBandwidthCuda(size_t bytes, int iters, cudaStream_t stream, double* gb_per_s);

}  // namespace quarry
