// ProfilingDeviceOps: a DeviceOps that forwards every call to another backend and times the ops, for finding where
// a step's time goes (`quarry-engine-bench --op-profile`), not for serving.
//
// The backend is synchronised before and after each op, so an op's time is its launch plus its execution alone on
// the device: no overlap with its neighbours, plus a synchronisation round trip (a few microseconds on a GPU; the
// report's `floor` is the time of an empty synchronised interval, to read small ops against). Ops run inside a
// graph capture are forwarded untimed (synchronising there is not allowed); a graph launch is one entry, so decode
// steps are profiled op by op only without graphs. Not thread-safe (one step thread, as the device model).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "worker/model/device/forwarding_device_ops.h"

namespace quarry {

class ProfilingDeviceOps final : public ForwardingDeviceOps {
 public:
  explicit ProfilingDeviceOps(DeviceOps* inner) : ForwardingDeviceOps(inner) {}

  struct Entry {
    std::string op;  // the DeviceOps method, with the weight shape for the products (e.g. "Linear 6448x1536")
    int64_t calls = 0;
    double seconds = 0.0;
  };
  // Totals since the last Reset, longest first.
  std::vector<Entry> Report() const;
  void Reset() { totals_.clear(); }
  // Seconds of an empty synchronised interval (the per-op overhead of the method), measured now.
  absl::StatusOr<double> SyncFloor();

  absl::Status CaptureGraph(int key, const std::function<absl::Status()>& body) override;
  absl::Status LaunchGraph(int key) override;

  absl::Status Embedding(const EmbeddingParams& p) override;
  absl::Status RmsNorm(const RmsNormParams& p) override;
  absl::Status GatedRmsNorm(const GatedRmsNormParams& p) override;
  absl::Status AddRmsNorm(const AddRmsNormParams& p) override;
  absl::Status Linear(const LinearParams& p) override;
  absl::Status Swiglu(const SwigluParams& p) override;
  absl::Status TopKSoftmax(const TopKSoftmaxParams& p) override;
  absl::Status GatherRows(const GatherRowsParams& p) override;
  absl::Status CausalConv1d(const CausalConv1dParams& p) override;
  absl::Status SsdScan(const SsdParams& p) override;
  absl::Status SsdUpdateBatch(const SsdUpdateBatchParams& p) override;
  absl::Status KvAppend(const KvAppendParams& p) override;
  absl::Status Attention(const AttentionParams& p) override;
  absl::Status AttentionDecode(const AttentionDecodeParams& p) override;
  absl::Status MoePermute(const MoePermuteParams& p) override;
  absl::Status MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) override;
  absl::Status GroupedLinear(const GroupedLinearParams& p) override;
  absl::Status GroupedLinearMany(const GroupedLinearParams& p) override;
  absl::Status MoeCombine(const MoeCombineParams& p) override;
  absl::Status Argmax(const ArgmaxParams& p) override;
  absl::Status Sample(const SampleParams& p) override;
  absl::Status LogitsAdjust(const LogitsAdjustParams& p) override;
  absl::Status Logprobs(const LogprobsParams& p) override;

 private:
  // Runs `op` (a call on inner()) timed under `name`, or untimed while a graph is being captured.
  template <typename F>
  absl::Status Timed(const std::string& name, F&& op);

  bool capturing_ = false;
  std::map<std::string, Entry> totals_;
};

}  // namespace quarry
