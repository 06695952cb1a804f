// ForwardingDeviceOps: a DeviceOps that forwards every call to another backend unchanged. The base of the
// decorators that observe some of the calls (ProfilingDeviceOps; the tests' CountingDeviceOps): a subclass
// overrides what it observes and calls the same method of inner() for the work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "worker/model/device/device_ops.h"

namespace quarry {

class ForwardingDeviceOps : public DeviceOps {
 public:
  explicit ForwardingDeviceOps(DeviceOps* inner) : inner_(inner) {}

  std::string name() const override { return inner_->name(); }
  absl::Status BindThread() override { return inner_->BindThread(); }
  absl::StatusOr<void*> Alloc(size_t bytes, const char* what) override { return inner_->Alloc(bytes, what); }
  void Free(void* ptr) override { inner_->Free(ptr); }
  absl::Status Upload(void* dst, const void* src, size_t bytes) override { return inner_->Upload(dst, src, bytes); }
  absl::Status Upload2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                        size_t rows) override {
    return inner_->Upload2D(dst, dst_pitch, src, src_pitch, row_bytes, rows);
  }
  absl::Status Download(void* dst, const void* src, size_t bytes) override {
    return inner_->Download(dst, src, bytes);
  }
  absl::Status Zero(void* dst, size_t bytes) override { return inner_->Zero(dst, bytes); }
  absl::Status Synchronize() override { return inner_->Synchronize(); }
  absl::StatusOr<uint64_t> FreeBytes() override { return inner_->FreeBytes(); }
  bool graphs() const override { return inner_->graphs(); }
  bool host_memory() const override { return inner_->host_memory(); }
  absl::Status CaptureGraph(int key, const std::function<absl::Status()>& body) override {
    return inner_->CaptureGraph(key, body);
  }
  bool HasGraph(int key) const override { return inner_->HasGraph(key); }
  absl::Status LaunchGraph(int key) override { return inner_->LaunchGraph(key); }

  absl::Status Embedding(const EmbeddingParams& p) override { return inner_->Embedding(p); }
  absl::Status RmsNorm(const RmsNormParams& p) override { return inner_->RmsNorm(p); }
  absl::Status GatedRmsNorm(const GatedRmsNormParams& p) override { return inner_->GatedRmsNorm(p); }
  absl::Status AddRmsNorm(const AddRmsNormParams& p) override { return inner_->AddRmsNorm(p); }
  absl::Status Linear(const LinearParams& p) override { return inner_->Linear(p); }
  absl::Status Swiglu(const SwigluParams& p) override { return inner_->Swiglu(p); }
  absl::Status TopKSoftmax(const TopKSoftmaxParams& p) override { return inner_->TopKSoftmax(p); }
  absl::Status GatherRows(const GatherRowsParams& p) override { return inner_->GatherRows(p); }
  absl::Status CausalConv1d(const CausalConv1dParams& p) override { return inner_->CausalConv1d(p); }
  absl::Status SsdScan(const SsdParams& p) override { return inner_->SsdScan(p); }
  absl::Status SsdUpdateBatch(const SsdUpdateBatchParams& p) override { return inner_->SsdUpdateBatch(p); }
  absl::Status KvAppend(const KvAppendParams& p) override { return inner_->KvAppend(p); }
  absl::Status Attention(const AttentionParams& p) override { return inner_->Attention(p); }
  absl::Status AttentionDecode(const AttentionDecodeParams& p) override { return inner_->AttentionDecode(p); }
  absl::Status MoePermute(const MoePermuteParams& p) override { return inner_->MoePermute(p); }
  absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) override {
    return inner_->MoeRoute(topk, permute);
  }
  absl::Status GroupedLinear(const GroupedLinearParams& p) override { return inner_->GroupedLinear(p); }
  absl::Status GroupedLinearMany(const GroupedLinearParams& p) override { return inner_->GroupedLinearMany(p); }
  absl::Status MoeCombine(const MoeCombineParams& p) override { return inner_->MoeCombine(p); }
  absl::Status Argmax(const ArgmaxParams& p) override { return inner_->Argmax(p); }
  absl::Status Sample(const SampleParams& p) override { return inner_->Sample(p); }
  absl::Status LogitsAdjust(const LogitsAdjustParams& p) override { return inner_->LogitsAdjust(p); }
  absl::Status Logprobs(const LogprobsParams& p) override { return inner_->Logprobs(p); }

 protected:
  DeviceOps* inner() const { return inner_; }

 private:
  DeviceOps* inner_;
};

}  // namespace quarry
