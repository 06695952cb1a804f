// The op backend of the device model: memory management, transfers and every kernel of the forward pass
// with the kernels' Params contracts, all pointers in the backend's memory. Two implementations:
// CudaDeviceOps (the GPU: a stream, cuBLAS, CUDA graphs) and HostDeviceOps (the CPU references on host
// memory), so the device model's orchestration is tested on machines without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual std::string name() const = 0;  // e.g. "cuda:0 NVIDIA H200" or "host (CPU references)"

  // Makes the calling thread use this backend's device (a step thread calls it once before any op).
  virtual absl::Status BindThread() { return absl::OkStatus(); }

  // Memory. Alloc fails with RESOURCE_EXHAUSTED naming `what` and the size.
  virtual absl::StatusOr<void*> Alloc(size_t bytes, const char* what) = 0;
  virtual void Free(void* ptr) = 0;
  // Ordered with the ops; `src` must stay valid and unchanged until the next Synchronize / Download.
  virtual absl::Status Upload(void* dst, const void* src, size_t bytes) = 0;
  // `rows` rows of `row_bytes` from a host array of pitch `src_pitch` to a device array of pitch `dst_pitch`.
  virtual absl::Status Upload2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                                size_t rows) = 0;
  // Waits for every queued op, then copies.
  virtual absl::Status Download(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Zero(void* dst, size_t bytes) = 0;
  virtual absl::Status Synchronize() = 0;
  // Bytes still free for pools (the GPU's free memory; the host reports its available RAM).
  virtual absl::StatusOr<uint64_t> FreeBytes() = 0;

  // Graphs (whole-step capture). Backends without graphs return false from graphs(); the model runs eager.
  virtual bool graphs() const { return false; }
  // True when the backend's memory is host memory (the host reference backend): host code may read it.
  virtual bool host_memory() const { return false; }
  // Runs `body` under stream capture and keeps the graph as `key` (replacing an older one).
  virtual absl::Status CaptureGraph(int key, const std::function<absl::Status()>& body) {
    (void)key, (void)body;
    return absl::UnimplementedError("this backend has no graphs");
  }
  virtual bool HasGraph(int key) const { (void)key; return false; }
  virtual absl::Status LaunchGraph(int key) {
    (void)key;
    return absl::UnimplementedError("this backend has no graphs");
  }

  // Ops (see the kernel headers for the contracts).
  virtual absl::Status Embedding(const EmbeddingParams& p) = 0;
  virtual absl::Status RmsNorm(const RmsNormParams& p) = 0;
  virtual absl::Status GatedRmsNorm(const GatedRmsNormParams& p) = 0;
  virtual absl::Status AddRmsNorm(const AddRmsNormParams& p) = 0;
  virtual absl::Status Linear(const LinearParams& p) = 0;
  virtual absl::Status Swiglu(const SwigluParams& p) = 0;
  virtual absl::Status TopKSoftmax(const TopKSoftmaxParams& p) = 0;
  virtual absl::Status GatherRows(const GatherRowsParams& p) = 0;
  virtual absl::Status CausalConv1d(const CausalConv1dParams& p) = 0;  // a prefill chunk of one sequence
  virtual absl::Status SsdScan(const SsdParams& p) = 0;                // a prefill chunk of one sequence
  virtual absl::Status SsdUpdateBatch(const SsdUpdateBatchParams& p) = 0;
  virtual absl::Status KvAppend(const KvAppendParams& p) = 0;
  virtual absl::Status Attention(const AttentionParams& p) = 0;  // a prefill chunk of one sequence
  virtual absl::Status AttentionDecode(const AttentionDecodeParams& p) = 0;
  virtual absl::Status MoePermute(const MoePermuteParams& p) = 0;
  virtual absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) = 0;
  virtual absl::Status GroupedLinear(const GroupedLinearParams& p) = 0;
  // The same contract for many rows per expert (prefill): tensor cores on the GPU (the input is rounded to the
  // weights' 16-bit type). Weights must be BF16 or F16.
  virtual absl::Status GroupedLinearMany(const GroupedLinearParams& p) = 0;
  virtual absl::Status MoeCombine(const MoeCombineParams& p) = 0;
  virtual absl::Status Argmax(const ArgmaxParams& p) = 0;
  virtual absl::Status Sample(const SampleParams& p) = 0;
  virtual absl::Status LogitsAdjust(const LogitsAdjustParams& p) = 0;  // CSR entries checked on the host
  virtual absl::Status Logprobs(const LogprobsParams& p) = 0;
};

}  // namespace quarry
