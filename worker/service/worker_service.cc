#include "worker/service/worker_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace quarry::service {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The status a finished engine request ends its call with.
grpc::Status FinalStatus(const RequestOutput& out) {
  if (!out.status.ok()) return ToGrpcStatus(out.status);
  switch (out.finish_reason) {
    case FinishReason::kCancelled: return grpc::Status(grpc::StatusCode::CANCELLED, "request aborted");
    case FinishReason::kDeadline: return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    case FinishReason::kError: return grpc::Status(grpc::StatusCode::INTERNAL, "engine error");
    default: return grpc::Status::OK;
  }
}

}  // namespace

// One Generate call. Lives until OnDone, which gRPC calls only after Finish; Finish happens only once the engine
// has delivered its final output (or the request never reached the engine), so the engine callback never sees
// a deleted reactor. StartWrite / Finish run outside mu_ and nothing touches members after Finish.
class WorkerServiceImpl::GenerateReactor final : public grpc::ServerWriteReactor<wpb::GenerateResponse> {
 public:
  GenerateReactor(WorkerServiceImpl* svc, grpc::CallbackServerContext* ctx)
      : svc_(svc), ctx_(ctx), arrival_(Clock::now()) {}

  void Start(const wpb::GenerateRequest& req) {
    if (svc_->draining()) return Reject(grpc::StatusCode::UNAVAILABLE, "worker is draining", "draining");
    auto request = ToEngineRequest(req, svc_->limits_, ctx_->deadline());
    if (!request.ok()) return Reject(ToGrpcStatus(request.status()), "invalid");
    id_ = request->id;
    if (!svc_->Register(&id_)) {
      return Reject(grpc::StatusCode::ALREADY_EXISTS, absl::StrCat("request_id '", id_, "' is already running"),
                    "duplicate");
    }
    request->id = id_;
    registered_ = true;
    absl::Status st = svc_->engine_->Submit(std::move(*request), [this](const RequestOutput& o) { OnOutput(o); });
    if (!st.ok()) {
      svc_->Unregister(id_);
      registered_ = false;
      if (st.code() == absl::StatusCode::kResourceExhausted) {
        ctx_->AddTrailingMetadata("retry-after-ms", std::to_string(RetryAfterMs(st, svc_->options_.retry_after_ms)));
        return Reject(ToGrpcStatus(st), "queue_full");
      }
      return Reject(ToGrpcStatus(st), st.code() == absl::StatusCode::kInvalidArgument ? "invalid" : "engine");
    }
  }

  void OnWriteDone(bool ok) override {
    bool abort = false;
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      if (!ok && !client_gone_) {
        client_gone_ = true;  // the call is cancelled or broken: stop writing, end the engine request
        pending_.Clear();
        has_pending_ = false;
        abort = !engine_done_;
      }
      a = NextLocked();
    }
    if (abort) svc_->engine_->Abort(id_);
    Run(std::move(a));
  }

  void OnCancel() override {
    bool abort;
    {
      std::lock_guard<std::mutex> lock(mu_);
      abort = registered_ && !engine_done_;
    }
    if (abort) svc_->engine_->Abort(id_);
  }

  void OnDone() override {
    svc_->CallDone();
    delete this;
  }

 private:
  struct Action {
    enum Kind { kNone, kWrite, kFinish } kind = kNone;
    grpc::Status status;
  };

  void Reject(grpc::Status status, const std::string& reason) {
    if (svc_->metrics_ != nullptr) svc_->metrics_->CountRejected(reason);
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      engine_done_ = true;
      final_status_ = std::move(status);
      a = NextLocked();
    }
    Run(std::move(a));
  }
  void Reject(grpc::StatusCode code, const std::string& message, const std::string& reason) {
    Reject(grpc::Status(code, message), reason);
  }

  // Engine thread: merge into the pending message and start a write if none is in flight.
  void OnOutput(const RequestOutput& out) {
    const auto now = Clock::now();
    WorkerMetrics* m = svc_->metrics_;
    const int64_t n = static_cast<int64_t>(out.tokens.size());
    if (m != nullptr && n > 0) {
      if (!got_first_token_) {
        m->ObserveFirstToken(Seconds(now - arrival_));
      } else {
        m->ObserveInterToken(Seconds(now - last_token_), n);
      }
      m->CountGenerated(n);
    }
    if (n > 0) {
      got_first_token_ = true;
      last_token_ = now;
    }
    if (out.finished) {
      if (m != nullptr) m->ObserveFinished(out, Seconds(now - arrival_));
      svc_->Unregister(id_);
    }
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!client_gone_) {
        if (out.finished && !(out.status.ok() && (out.finish_reason == FinishReason::kStop ||
                                                  out.finish_reason == FinishReason::kLength))) {
          // Ends with an error status: deliver the tokens made so far, but no "finished" message.
          if (n > 0) {
            RequestOutput partial = out;
            partial.finished = false;
            AppendOutput(partial, &pending_);
            has_pending_ = true;
          }
        } else {
          AppendOutput(out, &pending_);
          has_pending_ = true;
        }
      }
      if (out.finished) {
        engine_done_ = true;
        final_status_ = FinalStatus(out);
      }
      a = NextLocked();
    }
    Run(std::move(a));
  }

  Action NextLocked() {
    Action a;
    if (write_in_flight_) return a;
    if (has_pending_ && !client_gone_) {
      writing_.Clear();
      writing_.Swap(&pending_);
      has_pending_ = false;
      write_in_flight_ = true;
      a.kind = Action::kWrite;
    } else if (engine_done_ && !finish_started_) {
      finish_started_ = true;
      a.kind = Action::kFinish;
      a.status = final_status_;
    }
    return a;
  }

  void Run(Action a) {
    if (a.kind == Action::kWrite) {
      StartWrite(&writing_);
    } else if (a.kind == Action::kFinish) {
      if (svc_->metrics_ != nullptr) {
        const grpc::StatusCode code = ctx_->IsCancelled() ? grpc::StatusCode::CANCELLED : a.status.error_code();
        svc_->metrics_->CountOutcome("Generate", GrpcCodeName(code));
      }
      Finish(a.status);  // may delete this (OnDone) before returning: nothing after it
    }
  }

  WorkerServiceImpl* const svc_;
  grpc::CallbackServerContext* const ctx_;
  const Clock::time_point arrival_;
  std::string id_;
  // Engine thread only.
  bool got_first_token_ = false;
  Clock::time_point last_token_;

  std::mutex mu_;
  bool registered_ = false;        // submitted to the engine (set before Submit can call back)
  wpb::GenerateResponse pending_;  // merged outputs not yet written
  bool has_pending_ = false;
  wpb::GenerateResponse writing_;  // the message of the write in flight
  bool write_in_flight_ = false;
  bool engine_done_ = false;       // final output seen (or never submitted)
  bool finish_started_ = false;
  bool client_gone_ = false;       // a write failed: the client cancelled or the connection broke
  grpc::Status final_status_;
};

WorkerServiceImpl::WorkerServiceImpl(Engine* engine, WorkerMetrics* metrics, WorkerServiceOptions options)
    : engine_(engine),
      metrics_(metrics),
      options_(std::move(options)),
      limits_{.vocab_size = options_.info.vocab_size(), .max_model_len = options_.info.max_model_len()} {}

WorkerServiceImpl::~WorkerServiceImpl() = default;

grpc::ServerWriteReactor<wpb::GenerateResponse>* WorkerServiceImpl::Generate(grpc::CallbackServerContext* ctx,
                                                                            const wpb::GenerateRequest* request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++open_calls_;
  }
  auto* reactor = new GenerateReactor(this, ctx);
  reactor->Start(*request);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Abort(grpc::CallbackServerContext* ctx, const wpb::AbortRequest* request,
                                                   wpb::AbortResponse* response) {
  bool found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    found = live_.count(request->request_id()) > 0;
  }
  if (found) engine_->Abort(request->request_id());
  response->set_found(found);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetLoad(grpc::CallbackServerContext* ctx, const wpb::GetLoadRequest*,
                                                     wpb::GetLoadResponse* response) {
  const EngineLoad l = engine_->GetLoad();
  response->set_running(static_cast<uint64_t>(l.running));
  response->set_waiting(static_cast<uint64_t>(l.waiting));
  response->set_state_slots_used(static_cast<uint64_t>(l.state_slots_used));
  response->set_state_slots_total(static_cast<uint64_t>(l.state_slots_total));
  response->set_kv_blocks_used(static_cast<uint64_t>(l.kv_blocks_used));
  response->set_kv_blocks_total(static_cast<uint64_t>(l.kv_blocks_total));
  response->set_draining(draining());
  response->set_open_calls(static_cast<uint64_t>(open_calls()));
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Info(grpc::CallbackServerContext* ctx, const wpb::InfoRequest*,
                                                  wpb::InfoResponse* response) {
  *response = options_.info;
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void WorkerServiceImpl::StartDraining() { draining_.store(true); }

bool WorkerServiceImpl::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, deadline, [this] { return open_calls_ == 0; });
}

void WorkerServiceImpl::AbortAll() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.assign(live_.begin(), live_.end());
  }
  for (const auto& id : ids) engine_->Abort(id);
}

int64_t WorkerServiceImpl::open_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_calls_;
}

bool WorkerServiceImpl::Register(std::string* id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (id->empty()) {
    do {
      *id = absl::StrCat("worker-", ++next_id_);
    } while (live_.count(*id) > 0);
  }
  return live_.insert(*id).second;
}

void WorkerServiceImpl::Unregister(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(id);
}

void WorkerServiceImpl::CallDone() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--open_calls_ == 0) idle_cv_.notify_all();
}

}  // namespace quarry::service
