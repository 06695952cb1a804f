// CudaDeviceOps: stream, cuBLAS, graphs; each op forwards to its kernel in kernels/cuda.
#include "worker/model/device/cuda_device_ops.h"

#include <cuda_runtime_api.h>

#include <cstdlib>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/cublas_linear.h"
#include "kernels/cuda/grouped_gemm_tc.h"
#include "kernels/cuda/linear_tc.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

absl::Status CudaCheck(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

class CudaDeviceOps final : public DeviceOps {
 public:
  CudaDeviceOps(const CudaDeviceOptions& o, std::string name, cudaStream_t stream)
      : options_(o), name_(std::move(name)), stream_(stream) {}
  ~CudaDeviceOps() override {
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    cublas_.reset();
    cudaStreamDestroy(stream_);
  }

  absl::Status Init() {
    if (options_.max_gemm_input_elems > 0) {
      auto cublas = CublasLinear::Create(stream_, options_.max_gemm_input_elems);
      if (!cublas.ok()) return cublas.status();
      cublas_ = std::move(*cublas);
    }
    return absl::OkStatus();
  }

  std::string name() const override { return name_; }
  absl::Status BindThread() override { return CudaCheck(cudaSetDevice(options_.device), "cudaSetDevice"); }

  absl::StatusOr<void*> Alloc(size_t bytes, const char* what) override {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(
          absl::StrCat("GPU allocation of ", bytes, " bytes for ", what, " failed: ", cudaGetErrorString(err)));
    }
    return p;
  }
  void Free(void* ptr) override { cudaFree(ptr); }
  absl::Status Upload(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return CudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload to the GPU");
  }
  absl::Status Upload2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                        size_t rows) override {
    if (rows == 0 || row_bytes == 0) return absl::OkStatus();
    return CudaCheck(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyHostToDevice, stream_),
                     "2D upload to the GPU");
  }
  absl::Status Download(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) {
      if (absl::Status s = CudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                                     "download from the GPU");
          !s.ok()) {
        return s;
      }
    }
    return Synchronize();
  }
  absl::Status Zero(void* dst, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return CudaCheck(cudaMemsetAsync(dst, 0, bytes, stream_), "GPU memset");
  }
  absl::Status Synchronize() override { return CudaCheck(cudaStreamSynchronize(stream_), "GPU stream"); }
  absl::StatusOr<uint64_t> FreeBytes() override {
    size_t free_b = 0, total = 0;
    if (absl::Status s = CudaCheck(cudaMemGetInfo(&free_b, &total), "cudaMemGetInfo"); !s.ok()) return s;
    return static_cast<uint64_t>(free_b);
  }

  bool graphs() const override { return true; }
  absl::Status CaptureGraph(int key, const std::function<absl::Status()>& body) override {
    if (absl::Status s = CudaCheck(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                                   "begin graph capture");
        !s.ok()) {
      return s;
    }
    absl::Status body_status = body();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!body_status.ok() || end != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      if (!body_status.ok()) return body_status;
      return CudaCheck(end, "end graph capture");
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (absl::Status s = CudaCheck(inst, "instantiate graph"); !s.ok()) return s;
    if (auto it = graphs_.find(key); it != graphs_.end()) cudaGraphExecDestroy(it->second);
    graphs_[key] = exec;
    return absl::OkStatus();
  }
  bool HasGraph(int key) const override { return graphs_.count(key) > 0; }
  absl::Status LaunchGraph(int key) override {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return absl::NotFoundError(absl::StrCat("no CUDA graph for key ", key));
    return CudaCheck(cudaGraphLaunch(it->second, stream_), "graph launch");
  }

  absl::Status Embedding(const EmbeddingParams& p) override { return EmbeddingCuda(p, stream_); }
  absl::Status RmsNorm(const RmsNormParams& p) override { return RmsNormCuda(p, stream_); }
  absl::Status AddRmsNorm(const AddRmsNormParams& p) override { return AddRmsNormCuda(p, stream_); }
  absl::Status GatedRmsNorm(const GatedRmsNormParams& p) override { return GatedRmsNormCuda(p, stream_); }
  absl::Status Linear(const LinearParams& p) override {
    // 17..32 rows with a 16-bit x (decode): the tensor-core kernel, epilogues in its launch (no cuBLAS + conv /
    // KV append launches).
    if (LinearTcEligible(p)) return LinearCuda(p, stream_);
    if (cublas_ != nullptr && !p.swiglu_input && p.norm_weight == nullptr && p.m > options_.small_m &&
        p.w.dtype != DType::kF32 &&
        p.m * p.w.cols <= options_.max_gemm_input_elems) {
      if (p.conv.n == 0 && p.kv.t == 0) return cublas_->Run(p);
      LinearParams gemm = p;  // cuBLAS has no epilogue of ours: the conv step / KV append as launches after it
      gemm.conv = {}, gemm.kv = {};
      if (absl::Status s = cublas_->Run(gemm); !s.ok()) return s;
      if (p.kv.t != 0) return KvAppendCuda(p.kv, stream_);
      return ConvUpdateBatchCuda(p.conv, stream_);
    }
    return LinearCuda(p, stream_);
  }
  absl::Status Swiglu(const SwigluParams& p) override { return SwigluCuda(p, stream_); }
  absl::Status TopKSoftmax(const TopKSoftmaxParams& p) override { return TopKSoftmaxCuda(p, stream_); }
  absl::Status GatherRows(const GatherRowsParams& p) override { return GatherRowsCuda(p, stream_); }
  absl::Status CausalConv1d(const CausalConv1dParams& p) override { return CausalConv1dCuda(p, stream_); }
  absl::Status SsdScan(const SsdParams& p) override { return SsdScanCuda(p, stream_); }
  absl::Status SsdUpdateBatch(const SsdUpdateBatchParams& p) override { return SsdUpdateBatchCuda(p, stream_); }
  absl::Status KvAppend(const KvAppendParams& p) override { return KvAppendCuda(p, stream_); }
  absl::Status Attention(const AttentionParams& p) override { return AttentionCuda(p, stream_); }
  absl::Status AttentionDecode(const AttentionDecodeParams& p) override { return AttentionDecodeCuda(p, stream_); }
  absl::Status MoePermute(const MoePermuteParams& p) override { return MoePermuteCuda(p, stream_); }
  absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) override {
    return MoeRouteCuda(topk, permute, stream_);
  }
  absl::Status GroupedLinear(const GroupedLinearParams& p) override { return GroupedLinearCuda(p, stream_); }
  absl::Status GroupedLinearMany(const GroupedLinearParams& p) override {
    return GroupedLinearTensorCoreCuda(p, stream_);
  }
  absl::Status MoeCombine(const MoeCombineParams& p) override { return MoeCombineCuda(p, stream_); }
  absl::Status Argmax(const ArgmaxParams& p) override { return ArgmaxCuda(p, stream_); }
  absl::Status Sample(const SampleParams& p) override { return SampleCuda(p, stream_); }
  absl::Status LogitsAdjust(const LogitsAdjustParams& p) override { return LogitsAdjustCuda(p, stream_); }
  absl::Status Logprobs(const LogprobsParams& p) override { return LogprobsCuda(p, stream_); }

 private:
  CudaDeviceOptions options_;
  std::string name_;
  cudaStream_t stream_;
  std::unique_ptr<CublasLinear> cublas_;
  std::map<int, cudaGraphExec_t> graphs_;
};

// A kernel variant chosen by an environment variable (see the factory below).
struct KernelSwitch {
  const char* env;
  bool default_on;
  void (*set)(bool);
};

const KernelSwitch kKernelSwitches[] = {
    // Experimental, off unless =1: programmatic dependent launch of the decode kernels (kernels/cuda/pdl.cuh).
    {"QUARRY_CUDA_PDL", false, SetProgrammaticLaunch},
    // =0: the norm after each MoE block as its own launch at decode, not inside the experts' down projection.
    {"QUARRY_CUDA_FUSE_AFTER", true, SetGroupedAfterFusion},
    // =0: the prefill SSD scan as the split recurrence, not the chunked form (kernels/cuda/ssd_chunked.cu).
    {"QUARRY_CUDA_SSD_CHUNKED", true, SetSsdChunkedScan},
    // =0: the prefill expert GEMM's main loop staged through registers, not the cp.async pipeline.
    {"QUARRY_CUDA_TC_PIPELINE", true, SetGroupedTcPipeline},
    // =0: prefill attention over a bf16 KV cache on the f32 kernel, not the tensor cores (attention_tc.cu).
    {"QUARRY_CUDA_ATTN_TC", true, SetAttentionTensorCores},
    // =0: decode products of 17-32 rows on cuBLAS (+ conv / KV launches), not the tensor-core kernel (linear_tc.cu).
    {"QUARRY_CUDA_LINEAR_TC", true, SetLinearTensorCores},
    // =0: expert products of a few to 32 rows per expert (decode batches ~90-300) on the 64-row-tile GEMM, not the
    // 16-row-tile kernel (kernels/cuda/grouped_tc_small.cu).
    {"QUARRY_CUDA_GROUPED_TC_SMALL", true, SetGroupedTcSmall},
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceOps>> CreateCudaDeviceOps(const CudaDeviceOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "--device cuda: no usable CUDA device (", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices found",
        "); run on a machine with an NVIDIA GPU and driver, or use --device cpu"));
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " devices)"));
  }
  if (absl::Status s = CudaCheck(cudaSetDevice(options.device), "cudaSetDevice"); !s.ok()) return s;
  cudaDeviceProp prop{};
  if (absl::Status s = CudaCheck(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties"); !s.ok()) {
    return s;
  }
  if (prop.major < 9) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA device ", options.device, " (", prop.name,
                                                      ") has compute capability ", prop.major, ".", prop.minor,
                                                      "; Quarry is built for sm_90a (H100 / H200)"));
  }
  cudaStream_t stream = nullptr;
  if (absl::Status s = CudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  // Process-wide kernel switches from the environment, for measuring one variant against another on a GPU;
  // the backend's name lists those not at their default.
  std::string switched;
  for (const KernelSwitch& sw : kKernelSwitches) {
    const char* v = std::getenv(sw.env);
    const bool on = sw.default_on ? (v == nullptr || std::string(v) != "0") : (v != nullptr && std::string(v) == "1");
    sw.set(on);
    if (on != sw.default_on) absl::StrAppend(&switched, " (", sw.env, on ? "=1)" : "=0)");
  }
  auto ops = std::make_unique<CudaDeviceOps>(options, absl::StrCat("cuda:", options.device, " ", prop.name, switched),
                                             stream);
  if (absl::Status s = ops->Init(); !s.ok()) return s;
  return std::unique_ptr<DeviceOps>(std::move(ops));
}

}  // namespace quarry
