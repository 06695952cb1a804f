// A DeviceOps decorator for tests: forwards every call to another backend and counts the kernel ops by name
// (one CUDA launch each, except split-K decode attention and routing beyond 64 rows, which launch two).
// Over a host-memory backend it also checks every 16-bit input copy a product is given (LinearParams::x16,
// GroupedLinearParams::x16): each value must be its f32 input rounded to the weights' type (x16_checked /
// x16_mismatches), i.e. the copy the model passes is the one written for this very input.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kernels/dtype.h"
#include "worker/model/device/forwarding_device_ops.h"

namespace quarry::testing {

class CountingDeviceOps final : public ForwardingDeviceOps {
 public:
  explicit CountingDeviceOps(std::unique_ptr<DeviceOps> inner)
      : ForwardingDeviceOps(inner.get()), owned_(std::move(inner)) {}

  // Kernel ops since the last Reset, by op name, and their total.
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  int64_t total() const {
    int64_t t = 0;
    for (const auto& [name, n] : counts_) t += n;
    return t;
  }
  void Reset() { counts_.clear(); }
  int64_t x16_checked() const { return x16_checked_; }        // products given a 16-bit input copy
  int64_t x16_mismatches() const { return x16_mismatches_; }  // values of those copies that were not x rounded

#define QUARRY_COUNTED_OP(Op, Params)            \
  absl::Status Op(const Params& p) override {    \
    ++counts_[#Op];                              \
    return inner()->Op(p);                       \
  }
  QUARRY_COUNTED_OP(Embedding, EmbeddingParams)
  QUARRY_COUNTED_OP(RmsNorm, RmsNormParams)
  QUARRY_COUNTED_OP(GatedRmsNorm, GatedRmsNormParams)
  QUARRY_COUNTED_OP(AddRmsNorm, AddRmsNormParams)
  QUARRY_COUNTED_OP(Swiglu, SwigluParams)
  QUARRY_COUNTED_OP(TopKSoftmax, TopKSoftmaxParams)
  QUARRY_COUNTED_OP(GatherRows, GatherRowsParams)
  QUARRY_COUNTED_OP(CausalConv1d, CausalConv1dParams)
  QUARRY_COUNTED_OP(SsdScan, SsdParams)
  QUARRY_COUNTED_OP(SsdUpdateBatch, SsdUpdateBatchParams)
  QUARRY_COUNTED_OP(KvAppend, KvAppendParams)
  QUARRY_COUNTED_OP(Attention, AttentionParams)
  QUARRY_COUNTED_OP(AttentionDecode, AttentionDecodeParams)
  QUARRY_COUNTED_OP(MoePermute, MoePermuteParams)
  QUARRY_COUNTED_OP(GroupedLinear, GroupedLinearParams)
  QUARRY_COUNTED_OP(MoeCombine, MoeCombineParams)
  QUARRY_COUNTED_OP(Argmax, ArgmaxParams)
  QUARRY_COUNTED_OP(Sample, SampleParams)
  QUARRY_COUNTED_OP(LogitsAdjust, LogitsAdjustParams)
  QUARRY_COUNTED_OP(Logprobs, LogprobsParams)
#undef QUARRY_COUNTED_OP
  absl::Status Linear(const LinearParams& p) override {
    ++counts_["Linear"];
    if (p.x16 != nullptr && inner()->host_memory()) {
      ++x16_checked_;
      for (int64_t r = 0; r < p.m; ++r) CheckRow(p.x + r * p.ldx, p.x16 + r * p.ldx16, p.w.cols, p.w.dtype);
    }
    return inner()->Linear(p);
  }
  absl::Status GroupedLinearMany(const GroupedLinearParams& p) override {
    ++counts_["GroupedLinearMany"];
    if (p.x16 != nullptr && inner()->host_memory()) {
      ++x16_checked_;
      for (int64_t i = 0; i < p.offsets[p.experts]; ++i) {
        const int64_t src = p.gather != nullptr ? p.gather[i] : i;
        CheckRow(p.x + src * p.ldx, p.x16 + src * p.ldx16, p.w.cols, p.w.dtype);
      }
    }
    return inner()->GroupedLinearMany(p);
  }
  absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) override {
    ++counts_["MoeRoute"];
    return inner()->MoeRoute(topk, permute);
  }

 private:
  void CheckRow(const float* x, const uint16_t* x16, int64_t k, DType dt) {
    for (int64_t c = 0; c < k; ++c) x16_mismatches_ += x16[c] != FloatTo16(x[c], dt) ? 1 : 0;
  }

  std::unique_ptr<DeviceOps> owned_;
  std::map<std::string, int64_t> counts_;
  int64_t x16_checked_ = 0;
  int64_t x16_mismatches_ = 0;
};

}  // namespace quarry::testing
