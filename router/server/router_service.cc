// RouterService: the eight RPCs of quarry.v1.Quarry.
#include "router/server/router_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "router/server/request_builder.h"

namespace quarry {
namespace {

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    default: return "OTHER";
  }
}

void AddToolCalls(const std::vector<chat::ParsedToolCall>& calls, google::protobuf::RepeatedPtrField<v1::ToolCall>* out) {
  for (const chat::ParsedToolCall& c : calls) {
    v1::ToolCall* t = out->Add();
    t->set_id(c.id);
    t->set_name(c.name);
    t->set_arguments_json(c.arguments);
  }
}

// Copies the parts of an event every response shape shares.
template <typename Msg>
void FillCommon(const PreparedRequest& p, const GenerationEvent& ev, bool stream, Msg* m) {
  if (p.return_token_ids) {
    for (uint32_t id : ev.token_ids) m->add_token_ids(id);
  }
  for (const auto& lp : ev.logprobs) *m->add_logprobs() = lp;
  if (ev.finished) {
    m->set_finish_reason(ev.finish_reason);
    m->set_matched_stop(ev.delta.matched_stop);
    if (!stream || p.include_usage) *m->mutable_usage() = ev.usage;
    *m->mutable_timing() = ev.timing;
  }
}

bool WorthSending(const PreparedRequest& p, const GenerationEvent& ev) {
  return ev.finished || !ev.delta.text.empty() || !ev.delta.tool_calls.empty() ||
         !ev.delta.tool_call_errors.empty() || !ev.logprobs.empty() ||
         (p.return_token_ids && !ev.token_ids.empty());
}

}  // namespace

class RouterService::CallGuard {
 public:
  explicit CallGuard(RouterService* s) : s_(s) { ++s_->inflight_; }
  ~CallGuard() { --s_->inflight_; }
  bool refused() const { return s_->draining_.load(); }

 private:
  RouterService* s_;
};

RouterService::RouterService(const ModelContext* model, WorkerPool* pool, CancelWatcher* watcher,
                             RouterMetrics* metrics) {
  svc_.model = model;
  svc_.pool = pool;
  svc_.watcher = watcher;
  svc_.metrics = metrics;
}

grpc::Status RouterService::Finish(const char* rpc, RouterMetrics::Tracker& tracker, const grpc::Status& st,
                                   int64_t prompt) {
  tracker.Finish(rpc, CodeName(st.error_code()), prompt);
  return st;
}

static const grpc::Status kDraining(grpc::StatusCode::UNAVAILABLE, "router is draining; retry on another replica");

grpc::Status RouterService::Chat(grpc::ServerContext* ctx, const v1::ChatRequest* req, v1::ChatResponse* resp) {
  CallGuard guard(this);
  RouterMetrics::Tracker tracker(svc_.metrics);
  if (guard.refused()) return Finish("Chat", tracker, kDraining, 0);
  absl::StatusOr<PreparedRequest> p = PrepareChat(*req, *svc_.model);
  if (!p.ok()) return Finish("Chat", tracker, ToGrpc(p.status()), 0);
  resp->set_id(p->id);
  resp->set_model(svc_.model->name);
  std::string content;
  grpc::Status st = RunGeneration(ctx, *p, svc_, &tracker, [&](const GenerationEvent& ev) {
    content += ev.delta.text;
    AddToolCalls(ev.delta.tool_calls, resp->mutable_tool_calls());
    for (const std::string& e : ev.delta.tool_call_errors) resp->add_tool_call_errors(e);
    FillCommon(*p, ev, /*stream=*/false, resp);
    return true;
  });
  resp->set_content(content);
  return Finish("Chat", tracker, st, p->worker.prompt_token_ids_size());
}

grpc::Status RouterService::ChatStream(grpc::ServerContext* ctx, const v1::ChatRequest* req,
                                       grpc::ServerWriter<v1::ChatStreamResponse>* writer) {
  CallGuard guard(this);
  RouterMetrics::Tracker tracker(svc_.metrics);
  if (guard.refused()) return Finish("ChatStream", tracker, kDraining, 0);
  absl::StatusOr<PreparedRequest> p = PrepareChat(*req, *svc_.model);
  if (!p.ok()) return Finish("ChatStream", tracker, ToGrpc(p.status()), 0);
  grpc::Status st = RunGeneration(ctx, *p, svc_, &tracker, [&](const GenerationEvent& ev) {
    if (!WorthSending(*p, ev)) return true;
    v1::ChatStreamResponse m;
    m.set_id(p->id);
    m.set_content(ev.delta.text);
    AddToolCalls(ev.delta.tool_calls, m.mutable_tool_calls());
    for (const std::string& e : ev.delta.tool_call_errors) m.add_tool_call_errors(e);
    FillCommon(*p, ev, /*stream=*/true, &m);
    return writer->Write(m);
  });
  return Finish("ChatStream", tracker, st, p->worker.prompt_token_ids_size());
}

grpc::Status RouterService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                     v1::GenerateResponse* resp) {
  CallGuard guard(this);
  RouterMetrics::Tracker tracker(svc_.metrics);
  if (guard.refused()) return Finish("Generate", tracker, kDraining, 0);
  absl::StatusOr<PreparedRequest> p = PrepareGenerate(*req, *svc_.model);
  if (!p.ok()) return Finish("Generate", tracker, ToGrpc(p.status()), 0);
  resp->set_id(p->id);
  resp->set_model(svc_.model->name);
  std::string text;
  grpc::Status st = RunGeneration(ctx, *p, svc_, &tracker, [&](const GenerationEvent& ev) {
    text += ev.delta.text;
    FillCommon(*p, ev, /*stream=*/false, resp);
    return true;
  });
  resp->set_text(text);
  return Finish("Generate", tracker, st, p->worker.prompt_token_ids_size());
}

grpc::Status RouterService::GenerateStream(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                           grpc::ServerWriter<v1::GenerateStreamResponse>* writer) {
  CallGuard guard(this);
  RouterMetrics::Tracker tracker(svc_.metrics);
  if (guard.refused()) return Finish("GenerateStream", tracker, kDraining, 0);
  absl::StatusOr<PreparedRequest> p = PrepareGenerate(*req, *svc_.model);
  if (!p.ok()) return Finish("GenerateStream", tracker, ToGrpc(p.status()), 0);
  grpc::Status st = RunGeneration(ctx, *p, svc_, &tracker, [&](const GenerationEvent& ev) {
    if (!WorthSending(*p, ev)) return true;
    v1::GenerateStreamResponse m;
    m.set_id(p->id);
    m.set_text(ev.delta.text);
    FillCommon(*p, ev, /*stream=*/true, &m);
    return writer->Write(m);
  });
  return Finish("GenerateStream", tracker, st, p->worker.prompt_token_ids_size());
}

grpc::Status RouterService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* req, v1::TokenizeResponse* resp) {
  if (draining_) return kDraining;
  const ModelContext& m = *svc_.model;
  if (!req->model().empty() && req->model() != m.name) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model '", req->model(), "' is not served here"));
  }
  std::string text;
  if (req->has_chat()) {
    absl::StatusOr<std::string> rendered = RenderChat(req->chat(), m);
    if (!rendered.ok()) return ToGrpc(rendered.status());
    text = *rendered;
    resp->set_rendered_prompt(text);
  } else {
    text = req->text();
  }
  absl::StatusOr<std::vector<int32_t>> ids = m.tokenizer->Encode(text, {.parse_special = true});
  if (!ids.ok()) return ToGrpc(ids.status());
  for (int32_t id : *ids) {
    resp->add_token_ids(static_cast<uint32_t>(id));
    if (req->return_token_strings()) resp->add_token_strings(m.tokenizer->IdToToken(id).value_or(""));
  }
  resp->set_count(static_cast<uint32_t>(ids->size()));
  resp->set_max_model_len(static_cast<uint32_t>(m.max_model_len));
  return grpc::Status::OK;
}

grpc::Status RouterService::Detokenize(grpc::ServerContext*, const v1::DetokenizeRequest* req,
                                       v1::DetokenizeResponse* resp) {
  if (draining_) return kDraining;
  if (!req->model().empty() && req->model() != svc_.model->name) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model '", req->model(), "' is not served here"));
  }
  const int64_t vocab = svc_.model->config.vocab_size;
  for (int i = 0; i < req->token_ids_size(); ++i) {
    if (req->token_ids(i) >= vocab) {  // checked as uint32: ids >= 2^31 must not wrap to negative int32
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token_ids[", i, "] = ", req->token_ids(i), " is outside the vocabulary [0, ",
                                       vocab, ")"));
    }
  }
  std::vector<int32_t> ids(req->token_ids().begin(), req->token_ids().end());
  absl::StatusOr<std::string> text =
      svc_.model->tokenizer->Decode(ids, req->has_skip_special_tokens() ? req->skip_special_tokens() : true);
  if (!text.ok()) return ToGrpc(text.status());
  resp->set_text(*text);
  return grpc::Status::OK;
}

v1::ModelInfo RouterService::Info() const {
  const ModelContext& m = *svc_.model;
  v1::ModelInfo info;
  info.set_id(m.name);
  info.set_architecture("GraniteMoeHybridForCausalLM");
  info.set_max_model_len(static_cast<uint32_t>(m.max_model_len));
  info.set_vocab_size(static_cast<uint32_t>(m.config.vocab_size));
  for (int64_t id : m.config.eos_token_id) info.add_eos_token_ids(static_cast<uint32_t>(id));
  info.set_dtype(m.dtype);
  info.set_supports_tools(m.chat_template.has_value());
  info.set_tool_call_format("granite-4.0-h: <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>");
  info.set_ready_worker_groups(static_cast<uint32_t>(svc_.pool->healthy_count()));
  return info;
}

grpc::Status RouterService::GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest* req,
                                         v1::GetModelInfoResponse* resp) {
  if (!req->model().empty() && req->model() != svc_.model->name) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model '", req->model(), "' is not served here"));
  }
  *resp->mutable_model_info() = Info();
  return grpc::Status::OK;
}

grpc::Status RouterService::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse* resp) {
  *resp->add_models() = Info();
  return grpc::Status::OK;
}

bool RouterService::Drain(std::chrono::milliseconds grace) {
  draining_ = true;
  const auto end = std::chrono::steady_clock::now() + grace;
  while (inflight_.load() > 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return inflight_.load() == 0;
}

}  // namespace quarry
