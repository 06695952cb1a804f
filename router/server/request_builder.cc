// PrepareGenerate / PrepareChat: validation, template rendering, tokenization, worker request assembly.
#include "router/server/request_builder.h"

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "nlohmann/json.hpp"
#include "router/text/tokenizer/fim_prompt.h"
#include "worker/engine/sampler.h"

namespace quarry {
namespace {

using OJson = nlohmann::ordered_json;
constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

std::string NewId(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch().count();
  return absl::StrCat(prefix, now, "-", counter.fetch_add(1));
}

// A prompt longer than max_model_len tokens of the longest token's length cannot fit: refuse it before
// spending time on tokenization.
absl::Status CheckPromptBytes(size_t bytes, const ModelContext& m) {
  if (m.max_token_bytes > 0 && bytes > static_cast<size_t>(m.max_model_len) * m.max_token_bytes) {
    return Invalid(absl::StrCat("prompt has ", bytes, " bytes, more than the context length ", m.max_model_len,
                                " tokens can hold (at most ", m.max_token_bytes, " bytes per token)"));
  }
  return absl::OkStatus();
}

absl::Status CheckModel(const std::string& requested, const ModelContext& m) {
  if (!requested.empty() && requested != m.name) {
    return absl::NotFoundError(absl::StrCat("model '", requested, "' is not served here (serving '", m.name, "')"));
  }
  return absl::OkStatus();
}

// Sampling, stopping and output options shared by Generate and Chat; the prompt must be set already.
absl::Status FillCommon(const v1::SamplingParams& s, const v1::StoppingCriteria& st, const v1::OutputOptions& o,
                        const ModelContext& m, PreparedRequest* p) {
  // Sampling: the same ranges the engine enforces, checked here for early, precise errors.
  SamplingParams sp;
  if (s.has_temperature()) sp.temperature = s.temperature();
  if (s.has_top_p()) sp.top_p = s.top_p();
  sp.top_k = s.top_k();
  sp.min_p = s.min_p();
  if (s.has_repetition_penalty()) sp.repetition_penalty = s.repetition_penalty();
  sp.presence_penalty = s.presence_penalty();
  sp.frequency_penalty = s.frequency_penalty();
  for (const auto& [id, bias] : s.logit_bias()) sp.logit_bias.push_back({static_cast<int32_t>(id), bias});
  if (s.top_k() < 0) return Invalid(absl::StrCat("sampling.top_k = ", s.top_k(), " must be >= 0"));
  QUARRY_RETURN_IF_ERROR(Sampler::Validate(sp, m.config.vocab_size));
  worker::v1::SamplingParams* ws = p->worker.mutable_sampling();
  if (s.has_temperature()) ws->set_temperature(s.temperature());
  if (s.has_top_p()) ws->set_top_p(s.top_p());
  ws->set_top_k(static_cast<uint32_t>(s.top_k()));
  ws->set_min_p(s.min_p());
  if (s.has_repetition_penalty()) ws->set_repetition_penalty(s.repetition_penalty());
  ws->set_presence_penalty(s.presence_penalty());
  ws->set_frequency_penalty(s.frequency_penalty());
  for (const auto& [id, bias] : s.logit_bias()) (*ws->mutable_logit_bias())[id] = bias;
  if (s.has_seed()) ws->set_seed(s.seed());

  // Stopping.
  const int64_t prompt = p->worker.prompt_token_ids_size();
  if (prompt >= m.max_model_len) {
    return Invalid(absl::StrCat("prompt has ", prompt, " tokens; the context length is ", m.max_model_len,
                                " (at least one token must be left to generate)"));
  }
  const int64_t room = m.max_model_len - prompt;
  int64_t max_tokens = room;
  if (st.has_max_tokens()) {
    if (st.max_tokens() < 1) return Invalid("stopping.max_tokens = 0 must be >= 1");
    if (st.max_tokens() > room) {
      return Invalid(absl::StrCat("prompt (", prompt, " tokens) + stopping.max_tokens (", st.max_tokens(), ") = ",
                                  prompt + st.max_tokens(), " exceeds the context length ", m.max_model_len));
    }
    max_tokens = st.max_tokens();
  }
  if (st.min_tokens() > max_tokens) {
    return Invalid(absl::StrCat("stopping.min_tokens = ", st.min_tokens(), " exceeds max_tokens = ", max_tokens));
  }
  if (st.stop_size() > kMaxStopStrings) {
    return Invalid(absl::StrCat("stopping.stop has ", st.stop_size(), " strings; the limit is ", kMaxStopStrings));
  }
  for (int i = 0; i < st.stop_size(); ++i) {
    if (st.stop(i).empty() || st.stop(i).size() > kMaxStopBytes) {
      return Invalid(absl::StrCat("stopping.stop[", i, "] has ", st.stop(i).size(), " bytes; it must have 1..",
                                  kMaxStopBytes));
    }
    p->stop.push_back(st.stop(i));
  }
  for (uint32_t id : st.stop_token_ids()) {
    if (id >= m.config.vocab_size) {
      return Invalid(absl::StrCat("stopping.stop_token_ids: ", id, " is outside the vocabulary [0, ",
                                  m.config.vocab_size, ")"));
    }
  }
  worker::v1::StoppingParams* ws2 = p->worker.mutable_stopping();
  ws2->set_max_tokens(static_cast<uint32_t>(max_tokens));
  ws2->set_min_tokens(st.min_tokens());
  *ws2->mutable_stop_token_ids() = st.stop_token_ids();
  ws2->set_ignore_eos(st.ignore_eos());
  p->include_stop = st.include_stop_str_in_output();
  if (st.has_time_limit_ms()) {
    if (st.time_limit_ms() == 0) return Invalid("stopping.time_limit_ms = 0 must be >= 1");
    p->time_limit = std::chrono::milliseconds(st.time_limit_ms());
  }

  // Output.
  if (o.top_logprobs() > 20) return Invalid(absl::StrCat("output.top_logprobs = ", o.top_logprobs(), " must be <= 20"));
  if (o.top_logprobs() > 0 && !o.logprobs()) return Invalid("output.top_logprobs needs output.logprobs = true");
  p->logprobs = o.logprobs();
  p->worker.set_logprobs(o.logprobs());
  p->worker.set_top_logprobs(o.top_logprobs());
  p->return_token_ids = o.return_token_ids();
  p->skip_special_tokens = o.has_skip_special_tokens() ? o.skip_special_tokens() : true;
  p->include_usage = o.include_usage();
  return absl::OkStatus();
}

const char* RoleName(v1::Role r) {
  switch (r) {
    case v1::ROLE_SYSTEM: return "system";
    case v1::ROLE_DEVELOPER: return "system";  // Granite has no developer role
    case v1::ROLE_USER: return "user";
    case v1::ROLE_ASSISTANT: return "assistant";
    case v1::ROLE_TOOL: return "tool";
    default: return nullptr;
  }
}

absl::StatusOr<OJson> ParseJsonField(const std::string& text, const std::string& field) {
  OJson j = OJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid(absl::StrCat(field, " is not valid JSON"));
  return j;
}

// tool_choice, as OpenAI defines it, carried out with a system instruction (no constrained decoding yet):
// none = the tools are not shown to the model; required = it must call one; a named function = only that tool
// is shown and the model must call it.
absl::Status ApplyToolChoice(const v1::ChatRequest& r, chat::RenderInput* in) {
  std::string instruction;
  if (r.tool_choice().choice_case() == v1::ToolChoice::kMode) {
    switch (r.tool_choice().mode()) {
      case v1::TOOL_CHOICE_MODE_NONE:
        in->tools.reset();
        return absl::OkStatus();
      case v1::TOOL_CHOICE_MODE_REQUIRED:
        if (!in->tools) return Invalid("tool_choice.mode = REQUIRED needs at least one tool in tools");
        instruction = "You must answer by calling one or more of the provided tools, not with plain text.";
        break;
      default:
        return absl::OkStatus();
    }
  } else if (r.tool_choice().choice_case() == v1::ToolChoice::kFunctionName) {
    const std::string& name = r.tool_choice().function_name();
    OJson only = OJson::array();
    if (in->tools) {
      for (const OJson& t : *in->tools) {
        if (t["function"]["name"] == name) only.push_back(t);
      }
    }
    if (only.empty()) {
      return Invalid(absl::StrCat("tool_choice.function_name '", name, "' is not one of the tools"));
    }
    in->tools = only;
    instruction = absl::StrCat("You must answer by calling the tool \"", name, "\", not with plain text.");
  } else {
    return absl::OkStatus();
  }
  OJson& first = in->messages[0];
  if (first["role"] == "system" && first["content"].is_string()) {
    first["content"] = first["content"].get<std::string>() + "\n\n" + instruction;
  } else {
    in->messages.insert(in->messages.begin(), OJson{{"role", "system"}, {"content", instruction}});
  }
  return absl::OkStatus();
}

absl::StatusOr<chat::RenderInput> BuildRenderInput(const v1::ChatRequest& r) {
  chat::RenderInput in;
  if (r.messages_size() == 0) return Invalid("messages must not be empty");
  for (int i = 0; i < r.messages_size(); ++i) {
    const v1::ChatMessage& msg = r.messages(i);
    const char* role = RoleName(msg.role());
    if (role == nullptr) return Invalid(absl::StrCat("messages[", i, "].role is unspecified or unknown"));
    OJson m = OJson::object();
    m["role"] = role;
    m["content"] = msg.content();
    if (msg.tool_calls_size() > 0) {
      if (msg.role() != v1::ROLE_ASSISTANT) {
        return Invalid(absl::StrCat("messages[", i, "].tool_calls is only allowed on assistant messages"));
      }
      OJson calls = OJson::array();
      for (int c = 0; c < msg.tool_calls_size(); ++c) {
        const v1::ToolCall& tc = msg.tool_calls(c);
        if (tc.name().empty()) return Invalid(absl::StrCat("messages[", i, "].tool_calls[", c, "].name is empty"));
        OJson fn = OJson::object();
        fn["name"] = tc.name();
        OJson args = OJson::parse(tc.arguments_json(), nullptr, false);
        fn["arguments"] = args.is_discarded() ? OJson(tc.arguments_json()) : args;
        OJson call = OJson::object();
        if (!tc.id().empty()) call["id"] = tc.id();
        call["type"] = "function";
        call["function"] = fn;
        calls.push_back(call);
      }
      m["tool_calls"] = calls;
    }
    if (!msg.tool_call_id().empty()) m["tool_call_id"] = msg.tool_call_id();
    if (!msg.name().empty()) m["name"] = msg.name();
    in.messages.push_back(m);
  }
  if (r.tools_size() > 0) {
    OJson tools = OJson::array();
    for (int i = 0; i < r.tools_size(); ++i) {
      const v1::Tool& t = r.tools(i);
      if (t.name().empty()) return Invalid(absl::StrCat("tools[", i, "].name is empty"));
      OJson fn = OJson::object();
      fn["name"] = t.name();
      if (!t.description().empty()) fn["description"] = t.description();
      if (!t.parameters_json().empty()) {
        QUARRY_ASSIGN_OR_RETURN(fn["parameters"],
                                ParseJsonField(t.parameters_json(), absl::StrCat("tools[", i, "].parameters_json")));
      }
      tools.push_back(OJson{{"type", "function"}, {"function", fn}});
    }
    in.tools = tools;
  }
  if (r.documents_json_size() > 0) {
    OJson docs = OJson::array();
    for (int i = 0; i < r.documents_json_size(); ++i) {
      QUARRY_ASSIGN_OR_RETURN(OJson d, ParseJsonField(r.documents_json(i), absl::StrCat("documents_json[", i, "]")));
      docs.push_back(d);
    }
    in.documents = docs;
  }
  if (!r.chat_template_kwargs_json().empty()) {
    QUARRY_ASSIGN_OR_RETURN(OJson kw, ParseJsonField(r.chat_template_kwargs_json(), "chat_template_kwargs_json"));
    if (!kw.is_object()) return Invalid("chat_template_kwargs_json must be a JSON object");
    in.extra = kw;
  }
  in.add_generation_prompt = true;
  QUARRY_RETURN_IF_ERROR(ApplyToolChoice(r, &in));
  return in;
}

}  // namespace

absl::StatusOr<std::string> RenderChat(const v1::ChatRequest& r, const ModelContext& m) {
  QUARRY_RETURN_IF_ERROR(CheckModel(r.model(), m));
  if (!m.chat_template) {
    return absl::FailedPreconditionError(absl::StrCat("model '", m.name, "' has no chat template; use Generate"));
  }
  QUARRY_ASSIGN_OR_RETURN(chat::RenderInput in, BuildRenderInput(r));
  return m.chat_template->Render(in);
}

absl::StatusOr<PreparedRequest> PrepareGenerate(const v1::GenerateRequest& r, const ModelContext& m) {
  const auto t0 = std::chrono::steady_clock::now();
  QUARRY_RETURN_IF_ERROR(CheckModel(r.model(), m));
  PreparedRequest p;
  p.id = r.request_id().empty() ? NewId("gen-") : r.request_id();
  p.worker.set_request_id(NewId("w-"));
  if (r.has_token_ids()) {
    if (r.token_ids().ids_size() == 0) return Invalid("token_ids.ids must not be empty");
    for (int i = 0; i < r.token_ids().ids_size(); ++i) {
      if (r.token_ids().ids(i) >= m.config.vocab_size) {
        return Invalid(absl::StrCat("token_ids.ids[", i, "] = ", r.token_ids().ids(i),
                                    " is outside the vocabulary [0, ", m.config.vocab_size, ")"));
      }
    }
    *p.worker.mutable_prompt_token_ids() = r.token_ids().ids();
  } else if (r.has_fim()) {
    if (r.fim().prefix().empty() && r.fim().suffix().empty()) return Invalid("fim: prefix and suffix are both empty");
    QUARRY_ASSIGN_OR_RETURN(std::vector<int32_t> ids, BuildFimPrompt(*m.tokenizer, r.fim().prefix(), r.fim().suffix()));
    for (int32_t id : ids) p.worker.add_prompt_token_ids(static_cast<uint32_t>(id));
  } else if (r.has_text()) {
    if (r.text().empty()) return Invalid("text must not be empty");
    QUARRY_RETURN_IF_ERROR(CheckPromptBytes(r.text().size(), m));
    QUARRY_ASSIGN_OR_RETURN(std::vector<int32_t> ids, m.tokenizer->Encode(r.text(), {.parse_special = true}));
    if (ids.empty()) return Invalid("text encodes to zero tokens");
    for (int32_t id : ids) p.worker.add_prompt_token_ids(static_cast<uint32_t>(id));
  } else {
    return Invalid("prompt is missing: set text, token_ids or fim");
  }
  QUARRY_RETURN_IF_ERROR(FillCommon(r.sampling(), r.stopping(), r.output(), m, &p));
  p.preprocess_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

absl::StatusOr<PreparedRequest> PrepareChat(const v1::ChatRequest& r, const ModelContext& m) {
  const auto t0 = std::chrono::steady_clock::now();
  PreparedRequest p;
  p.parse_tool_calls = r.tools_size() > 0 && !(r.tool_choice().choice_case() == v1::ToolChoice::kMode &&
                                                r.tool_choice().mode() == v1::TOOL_CHOICE_MODE_NONE);
  QUARRY_ASSIGN_OR_RETURN(p.rendered_prompt, RenderChat(r, m));
  p.id = r.request_id().empty() ? NewId("chat-") : r.request_id();
  p.worker.set_request_id(NewId("w-"));
  QUARRY_RETURN_IF_ERROR(CheckPromptBytes(p.rendered_prompt.size(), m));
  QUARRY_ASSIGN_OR_RETURN(std::vector<int32_t> ids, m.tokenizer->Encode(p.rendered_prompt, {.parse_special = true}));
  for (int32_t id : ids) p.worker.add_prompt_token_ids(static_cast<uint32_t>(id));
  QUARRY_RETURN_IF_ERROR(FillCommon(r.sampling(), r.stopping(), r.output(), m, &p));
  p.preprocess_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

}  // namespace quarry
