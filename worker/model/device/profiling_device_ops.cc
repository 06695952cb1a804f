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

// The ops timed under their method's name.
#define QUARRY_TIMED_OP(Op, Params)                       \
  absl::Status ProfilingDeviceOps::Op(const Params& p) {  \
    return Timed(#Op, [&] { return inner()->Op(p); });    \
  }
QUARRY_TIMED_OP(Embedding, EmbeddingParams)
QUARRY_TIMED_OP(RmsNorm, RmsNormParams)
QUARRY_TIMED_OP(GatedRmsNorm, GatedRmsNormParams)
QUARRY_TIMED_OP(AddRmsNorm, AddRmsNormParams)
QUARRY_TIMED_OP(Swiglu, SwigluParams)
QUARRY_TIMED_OP(TopKSoftmax, TopKSoftmaxParams)
QUARRY_TIMED_OP(GatherRows, GatherRowsParams)
QUARRY_TIMED_OP(CausalConv1d, CausalConv1dParams)
QUARRY_TIMED_OP(SsdScan, SsdParams)
QUARRY_TIMED_OP(SsdUpdateBatch, SsdUpdateBatchParams)
QUARRY_TIMED_OP(KvAppend, KvAppendParams)
QUARRY_TIMED_OP(Attention, AttentionParams)
QUARRY_TIMED_OP(AttentionDecode, AttentionDecodeParams)
QUARRY_TIMED_OP(MoePermute, MoePermuteParams)
QUARRY_TIMED_OP(MoeCombine, MoeCombineParams)
QUARRY_TIMED_OP(Argmax, ArgmaxParams)
QUARRY_TIMED_OP(Sample, SampleParams)
QUARRY_TIMED_OP(LogitsAdjust, LogitsAdjustParams)
QUARRY_TIMED_OP(Logprobs, LogprobsParams)
#undef QUARRY_TIMED_OP

absl::Status ProfilingDeviceOps::MoeRoute(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) {
  return Timed("MoeRoute", [&] { return inner()->MoeRoute(topk, permute); });
}

// The products, told apart by their weight shapes.
absl::Status ProfilingDeviceOps::Linear(const LinearParams& p) {
  return Timed(WithShape("Linear", p.w), [&] { return inner()->Linear(p); });
}
absl::Status ProfilingDeviceOps::GroupedLinear(const GroupedLinearParams& p) {
  return Timed(WithShape("GroupedLinear", p.w), [&] { return inner()->GroupedLinear(p); });
}
absl::Status ProfilingDeviceOps::GroupedLinearMany(const GroupedLinearParams& p) {
  return Timed(WithShape("GroupedLinearMany", p.w), [&] { return inner()->GroupedLinearMany(p); });
}

}  // namespace quarry
