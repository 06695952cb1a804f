// RunGeneration: worker selection with failover, streaming through the output pipeline, cancellation.
#include "router/server/generation.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

void FillLogprob(const Tokenizer& tok, uint32_t id, float logprob, v1::TokenLogprob* out) {
  std::string bytes;
  (void)tok.AppendTokenBytes(static_cast<int32_t>(id), /*skip_special_tokens=*/false, &bytes);
  std::string text;
  AppendUtf8Lossy(bytes, &text);
  out->set_token_id(id);
  out->set_token(text);
  out->set_bytes(bytes);
  out->set_logprob(logprob);
}

v1::TokenLogprob ConvertLogprob(const Tokenizer& tok, const worker::v1::TokenLogprob& in) {
  v1::TokenLogprob out;
  FillLogprob(tok, in.token_id(), in.logprob(), &out);
  for (const auto& t : in.top_logprobs()) {
    v1::TokenLogprob tmp;
    FillLogprob(tok, t.token_id(), t.logprob(), &tmp);
    v1::TopLogprob* top = out.add_top_logprobs();
    top->set_token_id(tmp.token_id());
    top->set_token(tmp.token());
    top->set_logprob(tmp.logprob());
    top->set_bytes(tmp.bytes());
  }
  return out;
}

void MergeDelta(OutputPipeline::Delta&& from, OutputPipeline::Delta* into) {
  into->text += from.text;
  for (auto& c : from.tool_calls) into->tool_calls.push_back(std::move(c));
  for (auto& e : from.tool_call_errors) into->tool_call_errors.push_back(std::move(e));
  if (from.stopped) {
    into->stopped = true;
    into->matched_stop = from.matched_stop;
  }
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::Status RunGeneration(grpc::ServerContext* server_ctx, const PreparedRequest& request,
                           const GenerationServices& svc, RouterMetrics::Tracker* tracker,
                           const std::function<bool(const GenerationEvent&)>& on_event) {
  const Tokenizer& tok = *svc.model->tokenizer;
  const auto arrival = Clock::now();
  std::vector<size_t> tried;
  grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no healthy worker");
  for (size_t attempt = 0; attempt < std::max<size_t>(1, svc.pool->size()); ++attempt) {
    absl::StatusOr<WorkerHandle*> picked = svc.pool->Pick(tried);
    if (!picked.ok()) return tried.empty() ? ToGrpc(picked.status()) : last;
    WorkerHandle* w = *picked;
    tried.push_back(w->index);

    grpc::ClientContext ctx;
    if (server_ctx->deadline() != std::chrono::system_clock::time_point::max()) ctx.set_deadline(server_ctx->deadline());
    CancelWatcher::Entry entry;
    entry.server = server_ctx;
    entry.client = &ctx;
    if (request.time_limit) entry.time_limit = arrival + *request.time_limit;
    const uint64_t key = svc.watcher->Add(&entry);

    OutputPipeline pipe(tok, request);
    bool any_output = false, client_gone = false, finished = false, pipeline_error = false;
    int64_t completion = 0;
    const int64_t prompt = request.worker.prompt_token_ids_size();
    std::unique_ptr<grpc::ClientReader<worker::v1::GenerateResponse>> reader = w->stub->Generate(&ctx, request.worker);
    worker::v1::GenerateResponse resp;
    while (!finished && reader->Read(&resp)) {
      any_output = true;
      GenerationEvent ev;
      std::vector<int32_t> ids(resp.token_ids().begin(), resp.token_ids().end());
      absl::StatusOr<OutputPipeline::Delta> d = pipe.Push(ids);
      if (!d.ok()) {
        pipeline_error = true;
        ctx.TryCancel();
        break;
      }
      ev.delta = std::move(*d);
      ev.token_ids.assign(resp.token_ids().begin(), resp.token_ids().end());
      if (request.logprobs) {
        for (const auto& lp : resp.logprobs()) ev.logprobs.push_back(ConvertLogprob(tok, lp));
      }
      completion = resp.usage().completion_tokens();
      if (tracker) tracker->OnTokens(static_cast<int64_t>(ids.size()));
      if (ev.delta.stopped) {  // stop string: end here, the worker call is cancelled
        ev.finished = true;
        ev.finish_reason = v1::FINISH_REASON_STOP;
        ctx.TryCancel();
      } else if (resp.finished()) {
        MergeDelta(pipe.Finish(), &ev.delta);
        ev.finished = true;
        ev.finish_reason = resp.finish_reason() == worker::v1::FINISH_REASON_LENGTH ? v1::FINISH_REASON_LENGTH
                                                                                     : v1::FINISH_REASON_STOP;
        if (resp.has_matched_stop_token_id()) {
          ev.delta.matched_stop = tok.IdToToken(static_cast<int32_t>(resp.matched_stop_token_id())).value_or("");
        }
        if (ev.finish_reason == v1::FINISH_REASON_STOP && pipe.tool_calls_seen() > 0) {
          ev.finish_reason = v1::FINISH_REASON_TOOL_CALLS;
        }
        ev.timing.set_queue_us(resp.timing().queue_us());
        ev.timing.set_prefill_us(resp.timing().prefill_us());
        ev.timing.set_decode_us(resp.timing().decode_us());
        ev.timing.set_ttft_us(resp.timing().ttft_us());
        if (tracker) tracker->OnQueueTime(resp.timing().queue_us() / 1e6);
      }
      if (ev.finished) {
        finished = true;
        ev.usage.set_prompt_tokens(static_cast<uint32_t>(prompt));
        ev.usage.set_completion_tokens(static_cast<uint32_t>(completion));
        ev.usage.set_total_tokens(static_cast<uint32_t>(prompt + completion));
        ev.timing.set_preprocess_us(static_cast<uint64_t>(request.preprocess_us));
        ev.timing.set_total_us(static_cast<uint64_t>(
            request.preprocess_us + std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - arrival).count()));
      }
      if (!on_event(ev)) {
        client_gone = true;
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status st = reader->Finish();
    svc.watcher->Remove(key);
    svc.pool->Release(w->index);
    if (finished) return grpc::Status::OK;
    if (pipeline_error) return grpc::Status(grpc::StatusCode::INTERNAL, "worker returned an invalid token id");
    if (entry.client_cancelled || client_gone) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    if (entry.time_limit_hit) {
      GenerationEvent ev;
      ev.delta = pipe.Finish();
      ev.finished = true;
      ev.finish_reason = v1::FINISH_REASON_TIME_LIMIT;
      ev.usage.set_prompt_tokens(static_cast<uint32_t>(prompt));
      ev.usage.set_completion_tokens(static_cast<uint32_t>(completion));
      ev.usage.set_total_tokens(static_cast<uint32_t>(prompt + completion));
      on_event(ev);
      return grpc::Status::OK;
    }
    if (st.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "worker stream ended without a final message");
    const bool retryable = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (any_output || !retryable) return st;
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) svc.pool->MarkUnhealthy(w->index);
    last = st;  // fail over: nothing was sent to the client yet
  }
  return last;
}

}  // namespace quarry
