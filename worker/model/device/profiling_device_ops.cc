#include "worker/model/device/profiling_device_ops.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// "Name n_outxk" for a product with weights w (the shape tells the model's projections apart).
std::string WithShape(const char* name, const MatrixView& w) { return absl::StrCat(name, " ", w.rows, "x", w.cols); }

}  // namespace

template <typename F>
absl::Status ProfilingDeviceOps::Timed(const std::string& name, F&& op) {
  if (capturing_) return op();
  if (absl::Status s = inner()->Synchronize(); !s.ok()) return s;
  const Clock::time_point t = Clock::now();
  if (absl::Status s = op(); !s.ok()) return s;
  if (absl::Status s = inner()->Synchronize(); !s.ok()) return s;
  Entry& e = totals_[name];
  e.op = name;
  ++e.calls;
  e.seconds += SecondsSince(t);
  return absl::OkStatus();
}

std::vector<ProfilingDeviceOps::Entry> ProfilingDeviceOps::Report() const {
  std::vector<Entry> out;
  for (const auto& [name, e] : totals_) out.push_back(e);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

absl::StatusOr<double> ProfilingDeviceOps::SyncFloor() {
  constexpr int kReps = 20;
  if (absl::Status s = inner()->Synchronize(); !s.ok()) return s;
  const Clock::time_point t = Clock::now();
  for (int i = 0; i < kReps; ++i) {
    if (absl::Status s = inner()->Synchronize(); !s.ok()) return s;
  }
  return SecondsSince(t) / kReps;
}

absl::Status ProfilingDeviceOps::CaptureGraph(int key, const std::function<absl::Status()>& body) {
  capturing_ = true;
  absl::Status s = inner()->CaptureGraph(key, body);
  capturing_ = false;
  return s;
}

absl::Status ProfilingDeviceOps::LaunchGraph(int key) {
  return Timed("LaunchGraph (whole step)", [&] { return inner()->LaunchGraph(key); });
}

absl::Status ProfilingDeviceOps::Embedding(const EmbeddingParams& p) {
  return Timed("Embedding", [&] { return inner()->Embedding(p); });
}
absl::Status ProfilingDeviceOps::RmsNorm(const RmsNormParams& p) {
  return Timed("RmsNorm", [&] { return inner()->RmsNorm(p); });
}
absl::Status ProfilingDeviceOps::GatedRmsNorm(const GatedRmsNormParams& p) {
  return Timed("GatedRmsNorm", [&] { return inner()->GatedRmsNorm(p); });
}
absl::Status ProfilingDeviceOps::AddRmsNorm(const AddRmsNormParams& p) {
  return Timed("AddRmsNorm", [&] { return inner()->AddRmsNorm(p); });
}
absl::Status ProfilingDeviceOps::Linear(const LinearParams& p) {
  return Timed(WithShape("Linear", p.w), [&] { return inner()->Linear(p); });
}
absl::Status ProfilingDeviceOps::Swiglu(const SwigluParams& p) {
  return Timed("Swiglu", [&] { return inner()->Swiglu(p); });
}
absl::Status ProfilingDeviceOps::TopKSoftmax(const TopKSoftmaxParams& p) {
  return Timed("TopKSoftmax", [&] { return inner()->TopKSoftmax(p); });
}
absl::Status ProfilingDeviceOps::GatherRows(const GatherRowsParams& p) {
  return Timed("GatherRows", [&] { return inner()->GatherRows(p); });
}
absl::Status ProfilingDeviceOps::CausalConv1d(const CausalConv1dParams& p) {
  return Timed("CausalConv1d", [&] { return inner()->CausalConv1d(p); });
}
absl::Status ProfilingDeviceOps::SsdScan(const SsdParams& p) {
  return Timed("SsdScan", [&] { return inner()->SsdScan(p); });
}
absl::Status ProfilingDeviceOps::SsdUpdateBatch(const SsdUpdateBatchParams& p) {
  return Timed("SsdUpdateBatch", [&] { return inner()->SsdUpdateBatch(p); });
}
absl::Status ProfilingDeviceOps::KvAppend(const KvAppendParams& p) {
  return Timed("KvAppend", [&] { return inner()->KvAppend(p); });
}
absl::Status ProfilingDeviceOps::Attention(const AttentionParams& p) {
  return Timed("Attention", [&] { return inner()->Attention(p); });
}
absl::Status ProfilingDeviceOps::AttentionDecode(const AttentionDecodeParams& p) {
  return Timed("AttentionDecode", [&] { return inner()->AttentionDecode(p); });
}
absl::Status ProfilingDeviceOps::MoePermute(const MoePermuteParams& p) {
  return Timed("MoePermute", [&] { return inner()->MoePermute(p); });
}
absl::Status ProfilingDeviceOps::MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) {
  return Timed("MoeRoute", [&] { return inner()->MoeRoute(topk, permute); });
}
absl::Status ProfilingDeviceOps::GroupedLinear(const GroupedLinearParams& p) {
  return Timed(WithShape("GroupedLinear", p.w), [&] { return inner()->GroupedLinear(p); });
}
absl::Status ProfilingDeviceOps::GroupedLinearMany(const GroupedLinearParams& p) {
  return Timed(WithShape("GroupedLinearMany", p.w), [&] { return inner()->GroupedLinearMany(p); });
}
absl::Status ProfilingDeviceOps::MoeCombine(const MoeCombineParams& p) {
  return Timed("MoeCombine", [&] { return inner()->MoeCombine(p); });
}
absl::Status ProfilingDeviceOps::Argmax(const ArgmaxParams& p) {
  return Timed("Argmax", [&] { return inner()->Argmax(p); });
}
absl::Status ProfilingDeviceOps::Sample(const SampleParams& p) {
  return Timed("Sample", [&] { return inner()->Sample(p); });
}
absl::Status ProfilingDeviceOps::LogitsAdjust(const LogitsAdjustParams& p) {
  return Timed("LogitsAdjust", [&] { return inner()->LogitsAdjust(p); });
}
absl::Status ProfilingDeviceOps::Logprobs(const LogprobsParams& p) {
  return Timed("Logprobs", [&] { return inner()->Logprobs(p); });
}

}  // namespace quarry
