// HostDeviceOps: host allocations (64-byte aligned) and the CPU kernels.
#include "worker/model/device/host_device_ops.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

class HostDeviceOps final : public DeviceOps {
 public:
  std::string name() const override { return "host (CPU reference kernels)"; }
  bool host_memory() const override { return true; }

  absl::StatusOr<void*> Alloc(size_t bytes, const char* what) override {
    const size_t rounded = (bytes + 63) / 64 * 64 + 64;
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("host allocation of ", bytes, " bytes for ", what, " failed"));
    }
    return p;
  }
  void Free(void* ptr) override { std::free(ptr); }
  absl::Status Upload(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Upload2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                        size_t rows) override {
    for (size_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, row_bytes);
    }
    return absl::OkStatus();
  }
  absl::Status Download(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Zero(void* dst, size_t bytes) override {
    if (bytes > 0) std::memset(dst, 0, bytes);
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  absl::StatusOr<uint64_t> FreeBytes() override {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return absl::InternalError("sysconf cannot report the available memory");
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  }

  absl::Status Embedding(const EmbeddingParams& p) override { return EmbeddingCpu(p); }
  absl::Status RmsNorm(const RmsNormParams& p) override { return RmsNormCpu(p); }
  absl::Status AddRmsNorm(const AddRmsNormParams& p) override { return AddRmsNormCpu(p); }
  absl::Status GatedRmsNorm(const GatedRmsNormParams& p) override { return GatedRmsNormCpu(p); }
  absl::Status Linear(const LinearParams& p) override { return LinearCpu(p); }
  absl::Status Swiglu(const SwigluParams& p) override { return SwigluCpu(p); }
  absl::Status TopKSoftmax(const TopKSoftmaxParams& p) override { return TopKSoftmaxCpu(p); }
  absl::Status GatherRows(const GatherRowsParams& p) override { return GatherRowsCpu(p); }
  absl::Status CausalConv1d(const CausalConv1dParams& p) override { return CausalConv1dCpu(p); }
  absl::Status SsdScan(const SsdParams& p) override { return SsdChunkedScanCpu(p); }
  absl::Status SsdUpdateBatch(const SsdUpdateBatchParams& p) override { return SsdUpdateBatchCpu(p); }
  absl::Status KvAppend(const KvAppendParams& p) override { return KvAppendCpu(p); }
  absl::Status Attention(const AttentionParams& p) override { return AttentionCpu(p); }
  absl::Status AttentionDecode(const AttentionDecodeParams& p) override { return AttentionDecodeCpu(p); }
  absl::Status MoePermute(const MoePermuteParams& p) override { return MoePermuteCpu(p); }
  absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) override {
    return MoeRouteCpu(topk, permute);
  }
  absl::Status GroupedLinear(const GroupedLinearParams& p) override { return GroupedLinearCpu(p); }
  absl::Status GroupedLinearMany(const GroupedLinearParams& p) override { return GroupedLinearCpu(p); }
  absl::Status MoeCombine(const MoeCombineParams& p) override { return MoeCombineCpu(p); }
  absl::Status Argmax(const ArgmaxParams& p) override { return ArgmaxCpu(p); }
  absl::Status Sample(const SampleParams& p) override { return SampleCpu(p); }
  absl::Status LogitsAdjust(const LogitsAdjustParams& p) override { return LogitsAdjustCpu(p); }
  absl::Status Logprobs(const LogprobsParams& p) override { return LogprobsCpu(p); }
};

}  // namespace

std::unique_ptr<DeviceOps> CreateHostDeviceOps() { return std::make_unique<HostDeviceOps>(); }

}  // namespace quarry
