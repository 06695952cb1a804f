// EngineImpl: the step loop. Per step: drop aborted / expired requests, admit waiting ones (a state slot and
// KV pages for prompt + max_tokens), schedule one decode token per running request plus prefill chunks
// under the token budget, run one Model::Forward, sample, stream outputs, release finished requests.
#include "worker/engine/engine.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <omp.h>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "worker/engine/live_request.h"
#include "worker/engine/engine_backend.h"
#include "worker/engine/state_pools.h"
#include "worker/model/model.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

class EngineImpl final : public Engine {
 public:
  EngineImpl(const ModelWeights& w, const EngineOptions& o, EngineBackend backend)
      : weights_(w),
        options_(o),
        ops_(std::move(backend.ops)),
        model_(std::move(backend.model)),
        slots_(std::move(backend.slots)),
        kv_(std::move(backend.kv)),
        summary_(std::move(backend.summary)) {
    for (int64_t id : w.config.eos_token_id) eos_.push_back(static_cast<int32_t>(id));
    kv_views_ = kv_->Views();
    thread_ = std::thread([this] {
      if (options_.num_threads > 0) omp_set_num_threads(options_.num_threads);
      if (ops_ != nullptr) {
        if (absl::Status s = ops_->BindThread(); !s.ok()) FailGroup(s);
      }
      Loop();
    });
  }
  ~EngineImpl() override { Shutdown(); }

  absl::Status Submit(EngineRequest request, OutputCallback on_output) override;
  void Abort(const std::string& id) override;
  EngineLoad GetLoad() const override;
  const EngineOptions& options() const override { return options_; }
  const std::string& backend_summary() const override { return summary_; }
  bool failed() const override { return failed_.load(); }
  void Shutdown() override;

 private:
  void Loop();
  bool Step();  // false when there was nothing to do
  bool AgreeOnStep(bool* stop);  // expert parallelism: does any rank have work?
  void FailGroup(const absl::Status& cause);
  void Finish(LiveRequest& r, FinishReason reason, absl::Status status);
  void Release(LiveRequest& r);
  void Retire(LiveRequest& r);
  bool Admit(LiveRequest& r);

  const ModelWeights& weights_;
  const EngineOptions options_;
  std::unique_ptr<DeviceOps> ops_;     // the device backend (nullptr: the CPU engine)
  std::unique_ptr<StepModel> model_;   // used only by the step thread
  std::unique_ptr<StateSlotPool> slots_;  // step thread only
  std::unique_ptr<KvBlockPool> kv_;       // step thread only
  std::string summary_;
  std::vector<AttentionLayerCache> kv_views_;
  std::vector<int32_t> eos_;
  std::vector<std::unique_ptr<LiveRequest>> running_;  // step thread only
  std::vector<float> logits_;                          // step thread only
  std::vector<int32_t> sampled_;                       // step thread only (tokens sampled on the device)
  std::vector<SampleRow> sample_rows_;                 // step thread only (device sampling per logits row)
  std::vector<std::vector<int32_t>> bans_;             // step thread only (per segment: min-tokens bans)
  std::vector<RowLogprobs> row_logprobs_;              // step thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<LiveRequest>> waiting_;  // guarded by mu_
  std::unordered_set<std::string> live_ids_;          // guarded by mu_
  std::unordered_set<std::string> aborts_;            // guarded by mu_
  bool stop_ = false;                                 // guarded by mu_
  std::atomic<bool> failed_{false};
  int64_t running_count_ = 0, slots_used_ = 0, kv_used_ = 0;  // guarded by mu_ (published for GetLoad)
  int64_t steps_ = 0, empty_steps_ = 0;                        // guarded by mu_
  double step_seconds_ = 0, dispatch_seconds_ = 0, combine_seconds_ = 0;  // guarded by mu_
  int64_t all_to_all_bytes_ = 0;                                         // guarded by mu_
  std::vector<int64_t> expert_tokens_;                                   // guarded by mu_
  std::thread thread_;
};

absl::Status EngineImpl::Submit(EngineRequest request, OutputCallback on_output) {
  const ModelConfig& c = weights_.config;
  QUARRY_RETURN_IF_ERROR(ValidateEngineRequest(request, c, options_));
  const int64_t need = KvBlocksFor(request, options_);
  if (need > kv_->total()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", request.prompt.size(), " tokens) + max_tokens (",
                                                   request.stopping.max_tokens, ") needs ", need,
                                                   " KV pages but this worker has ", kv_->total()));
  }
  auto live = std::make_unique<LiveRequest>(std::move(request), std::move(on_output), c.vocab_size);
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || failed_) return absl::UnavailableError(failed_ ? "the expert-parallel group failed; the worker restarts"
                                                              : "engine is shutting down");
  if (live_ids_.count(live->req.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request id '", live->req.id, "' is already running"));
  }
  if (static_cast<int64_t>(waiting_.size()) >= options_.max_waiting) {
    return absl::ResourceExhaustedError(absl::StrCat("queue full: ", waiting_.size(), " requests waiting (limit ",
                                                     options_.max_waiting, "); retry after 1000 ms"));
  }
  live_ids_.insert(live->req.id);
  waiting_.push_back(std::move(live));
  cv_.notify_one();
  return absl::OkStatus();
}

void EngineImpl::Abort(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (live_ids_.count(id)) {
    aborts_.insert(id);
    cv_.notify_one();
  }
}

EngineLoad EngineImpl::GetLoad() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineLoad l;
  l.running = running_count_;
  l.waiting = static_cast<int64_t>(waiting_.size());
  l.state_slots_used = slots_used_;
  l.state_slots_total = slots_->total();
  l.kv_blocks_used = kv_used_;
  l.kv_blocks_total = kv_->total();
  l.steps = steps_;
  l.empty_steps = empty_steps_;
  l.step_seconds = step_seconds_;
  l.dispatch_seconds = dispatch_seconds_;
  l.combine_seconds = combine_seconds_;
  l.all_to_all_bytes = all_to_all_bytes_;
  l.expert_tokens = expert_tokens_;
  return l;
}

void EngineImpl::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void EngineImpl::Release(LiveRequest& r) {
  if (r.slot >= 0) slots_->Release(r.slot);
  kv_->Release(r.blocks);
  r.slot = -1;
  r.blocks.clear();
}

void EngineImpl::Finish(LiveRequest& r, FinishReason reason, absl::Status status) {
  Retire(r);
  r.EmitFinal(reason, std::move(status));
}

// Frees the request's slot and pages and forgets its id, and publishes the load, before the final callback,
// so that a caller woken by it sees the resources already free.
void EngineImpl::Retire(LiveRequest& r) {
  const bool was_running = r.slot >= 0;
  Release(r);
  std::lock_guard<std::mutex> lock(mu_);
  live_ids_.erase(r.req.id);
  aborts_.erase(r.req.id);
  if (was_running) --running_count_;
  slots_used_ = slots_->used();
  kv_used_ = kv_->used();
}

bool EngineImpl::Admit(LiveRequest& r) {
  const int64_t need = KvBlocksFor(r.req, options_);
  if (slots_->used() >= slots_->total() || kv_->free_blocks() < need) return false;
  r.slot = *slots_->Allocate();
  r.blocks = *kv_->Allocate(need);
  r.view.mamba = slots_->Views(r.slot);
  r.view.attention = kv_views_;
  r.view.block_table = r.blocks.data();
  r.view.block_size = kv_->block_size();
  r.view.kv_capacity = need * kv_->block_size();
  r.view.kv_pool_rows = kv_->total() * kv_->block_size();
  r.view.length = 0;
  r.scheduled = Clock::now();
  return true;
}

bool EngineImpl::AgreeOnStep(bool* stop) {
  int64_t v[2];
  {
    std::lock_guard<std::mutex> lock(mu_);
    v[0] = (!running_.empty() || !waiting_.empty() || !aborts_.empty()) ? 1 : 0;
    v[1] = stop_ ? 1 : 0;
  }
  absl::Status st = options_.comm->AllReduceMax({v, 2});
  if (!st.ok()) {
    FailGroup(st);
    *stop = true;
    return false;
  }
  *stop = v[1] != 0;
  return v[0] != 0;
}

void EngineImpl::FailGroup(const absl::Status& cause) {
  failed_ = true;
  const absl::Status st = absl::UnavailableError(absl::StrCat("expert-parallel group failed: ", cause.message()));
  std::deque<std::unique_ptr<LiveRequest>> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting.swap(waiting_);
    stop_ = true;
  }
  for (auto& r : waiting) Finish(*r, FinishReason::kError, st);
  for (auto& r : running_) Finish(*r, FinishReason::kError, st);
  running_.clear();
}

void EngineImpl::Loop() {
  const bool lockstep = options_.comm != nullptr && options_.comm->world_size() > 1;
  while (true) {
    if (lockstep) {
      // One small all-reduce per step: does any rank have work, does any rank stop? Idle groups poll every
      // 2 ms (a new request waits at most that long) without spinning a core.
      bool stop = false;
      const bool work = AgreeOnStep(&stop);
      if (stop) break;
      if (!work) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(2));
        continue;
      }
      Step();
      continue;
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) break;
      if (running_.empty() && waiting_.empty() && aborts_.empty()) {
        cv_.wait(lock, [this] { return stop_ || !waiting_.empty() || !aborts_.empty(); });
        if (stop_) break;
      }
    }
    if (!Step()) {
      // Waiting requests that do not fit yet: wait for an abort/new work or re-check deadlines shortly.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }
  // Shutdown: everything still queued or running ends with UNAVAILABLE.
  std::deque<std::unique_ptr<LiveRequest>> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting.swap(waiting_);
  }
  for (auto& r : waiting) Finish(*r, FinishReason::kCancelled, absl::UnavailableError("engine shut down"));
  for (auto& r : running_) Finish(*r, FinishReason::kCancelled, absl::UnavailableError("engine shut down"));
  running_.clear();
}


bool EngineImpl::Step() {
  const auto now = Clock::now();
  // 1. Requests that were aborted or passed their deadline, waiting or running.
  std::vector<std::unique_ptr<LiveRequest>> dropped_waiting;
  std::unordered_set<std::string> aborts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts = aborts_;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (aborts.count((*it)->req.id) || (*it)->req.deadline <= now) {
        dropped_waiting.push_back(std::move(*it));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto drop_reason = [&](const LiveRequest& r) {
    return aborts.count(r.req.id) ? std::make_pair(FinishReason::kCancelled, absl::CancelledError("request cancelled"))
                                  : std::make_pair(FinishReason::kDeadline,
                                                   absl::DeadlineExceededError("request deadline exceeded"));
  };
  for (auto& r : dropped_waiting) {
    auto [reason, status] = drop_reason(*r);
    Finish(*r, reason, status);
  }
  for (auto it = running_.begin(); it != running_.end();) {
    if (aborts.count((*it)->req.id) || (*it)->req.deadline <= now) {
      auto [reason, status] = drop_reason(**it);
      Finish(**it, reason, status);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  // 2. Admission, first come first served (head-of-line: a big request is not overtaken).
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!waiting_.empty() && Admit(*waiting_.front())) {
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    running_count_ = static_cast<int64_t>(running_.size());
    slots_used_ = slots_->used();
    kv_used_ = kv_->used();
  }
  // 3. One decode token per prefilled request, then prefill chunks under the remaining budget.
  std::vector<ForwardSegment> segs;
  std::vector<LiveRequest*> owners;
  int64_t budget = options_.max_tokens_per_step;
  for (auto& r : running_) {
    if (!r->prefilled()) continue;
    segs.push_back({&r->view, &r->generated.back(), 1, LogitsMode::kLast});
    owners.push_back(r.get());
    --budget;
  }
  for (auto& r : running_) {
    if (r->prefilled() || budget <= 0) continue;
    const int64_t left = static_cast<int64_t>(r->req.prompt.size()) - r->consumed;
    const int64_t n = std::min(left, budget);
    segs.push_back({&r->view, r->req.prompt.data() + r->consumed, n, n == left ? LogitsMode::kLast : LogitsMode::kNone});
    owners.push_back(r.get());
    budget -= n;
  }
  if (segs.empty() && !model_->expert_parallel()) return false;

  // 4. The forward pass (with expert parallelism also when this rank has nothing: it joins the exchanges).
  const int64_t V = weights_.config.vocab_size;
  // Device engines sample on the device: bias, penalties and min-tokens bans as sparse adjustments, logprobs
  // from the raw rows; only token ids (and asked-for logprobs) come back. The CPU engine samples on the host.
  const bool device_sample = options_.device != "cpu";
  sample_rows_.clear();
  bans_.resize(segs.size());
  for (size_t i = 0; i < segs.size() && device_sample; ++i) {
    if (segs[i].logits == LogitsMode::kNone) continue;
    LiveRequest& r = *owners[i];
    const SamplingParams& sp = r.req.sampling;
    SampleRow row;
    row.params.temperature = sp.temperature;
    row.params.top_k = sp.top_k;
    row.params.top_p = sp.top_p;
    row.params.min_p = sp.min_p;
    row.params.seed = r.device_seed;
    row.params.step = r.generated.size();
    row.adjust = r.sampler.Adjustments();
    bans_[i].clear();
    if (static_cast<int64_t>(r.generated.size()) < r.req.stopping.min_tokens) {
      bans_[i] = r.req.stopping.stop_token_ids;
      if (!r.req.stopping.ignore_eos) bans_[i].insert(bans_[i].end(), eos_.begin(), eos_.end());
    }
    row.ban = bans_[i];
    row.top_logprobs = r.req.logprobs ? r.req.top_logprobs : -1;
    sample_rows_.push_back(row);
  }
  const auto step_start = Clock::now();
  absl::Status st;
  if (device_sample) {
    sampled_.resize(StepModel::LogitRows(segs));
    row_logprobs_.resize(sampled_.size());
    st = model_->ForwardSample(segs, sample_rows_.data(), sampled_.data(), row_logprobs_.data());
  } else {
    logits_.resize(StepModel::LogitRows(segs) * V);
    st = model_->Forward(segs, logits_.data());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++steps_;
    if (segs.empty()) ++empty_steps_;
    step_seconds_ += std::chrono::duration<double>(Clock::now() - step_start).count();
    if (const MoeDispatchStats* d = model_->dispatch_stats()) {
      dispatch_seconds_ = d->dispatch_seconds;
      combine_seconds_ = d->combine_seconds;
      all_to_all_bytes_ = d->bytes_sent;
      expert_tokens_ = d->expert_rows;
    }
  }
  std::vector<LiveRequest*> finished;
  if (!st.ok() && model_->expert_parallel() &&
      (st.code() == absl::StatusCode::kUnavailable || st.code() == absl::StatusCode::kDeadlineExceeded)) {
    FailGroup(st);
    return true;
  }
  if (!st.ok()) {
    for (LiveRequest* r : owners) {
      Finish(*r, FinishReason::kError, absl::InternalError(absl::StrCat("forward pass failed: ", st.message())));
      finished.push_back(r);
    }
  } else {
    // 5. Sample for every segment that produced logits.
    int64_t row = 0;
    for (size_t i = 0; i < segs.size(); ++i) {
      LiveRequest& r = *owners[i];
      if (!r.prefilled()) r.consumed += segs[i].n;
      if (segs[i].logits == LogitsMode::kNone) continue;
      const StoppingParams& stop = r.req.stopping;
      std::vector<int32_t> stops = stop.stop_token_ids;
      if (!stop.ignore_eos) stops.insert(stops.end(), eos_.begin(), eos_.end());
      const bool too_early = static_cast<int64_t>(r.generated.size()) < stop.min_tokens;
      Sampler::Result s;
      if (device_sample) {
        s.token = sampled_[row];
        if (r.req.logprobs) {
          s.logprob.token = s.token;
          s.logprob.logprob = row_logprobs_[row].chosen;
          s.logprob.top = std::move(row_logprobs_[row].top);
        }
      } else {
        std::span<float> logits(logits_.data() + row * V, V);
        s = r.sampler.Sample(logits, too_early ? std::span<const int32_t>(stops) : std::span<const int32_t>(),
                             r.req.logprobs ? r.req.top_logprobs : -1);
      }
      ++row;
      FinishReason reason = FinishReason::kNone;
      int32_t matched = -1;
      if (std::find(stops.begin(), stops.end(), s.token) != stops.end()) {
        reason = FinishReason::kStop;
        matched = s.token;
      } else if (static_cast<int64_t>(r.generated.size()) + 1 >= stop.max_tokens) {
        reason = FinishReason::kLength;
      }
      if (reason != FinishReason::kNone) {
        Retire(r);
        r.EmitToken(s.token, r.req.logprobs ? &s.logprob : nullptr, reason, matched);
        finished.push_back(&r);
      } else {
        r.EmitToken(s.token, r.req.logprobs ? &s.logprob : nullptr, reason, matched);
      }
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [&](const auto& r) {
                                  return std::find(finished.begin(), finished.end(), r.get()) != finished.end();
                                }),
                 running_.end());
  std::lock_guard<std::mutex> lock(mu_);
  running_count_ = static_cast<int64_t>(running_.size());
  slots_used_ = slots_->used();
  kv_used_ = kv_->used();
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const ModelWeights& weights, const EngineOptions& options) {
  QUARRY_ASSIGN_OR_RETURN(EngineOptions resolved, ResolveEngineOptions(weights.config, options));
  QUARRY_ASSIGN_OR_RETURN(EngineBackend backend, CreateEngineBackend(weights, &resolved));
  return std::unique_ptr<Engine>(new EngineImpl(weights, resolved, std::move(backend)));
}

}  // namespace quarry
