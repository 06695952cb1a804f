#include "worker/service/convert.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace quarry::service {
namespace {

absl::Status Invalid(const std::string& field, const std::string& limit, const std::string& value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", limit, ", got ", value));
}

std::string Num(double v) { return absl::StrCat(v); }

absl::Status CheckRange(const std::string& field, float v, double lo, double hi, bool lo_open = false) {
  if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo)) {
    return Invalid(field, absl::StrCat("in ", lo_open ? "(" : "[", lo, ", ", hi, "]"), Num(v));
  }
  return absl::OkStatus();
}

absl::Status CheckToken(const std::string& field, uint32_t id, int64_t vocab) {
  if (static_cast<int64_t>(id) >= vocab) return Invalid(field, absl::StrCat("< vocab_size ", vocab), Num(id));
  return absl::OkStatus();
}

absl::Status FillSampling(const wpb::SamplingParams& s, const RequestLimits& l, SamplingParams* out) {
  if (s.has_temperature()) {
    if (!std::isfinite(s.temperature()) || s.temperature() < 0) {
      return Invalid("sampling.temperature", ">= 0", Num(s.temperature()));
    }
    out->temperature = s.temperature();
  }
  if (s.top_k() > static_cast<uint64_t>(l.vocab_size)) {
    return Invalid("sampling.top_k", absl::StrCat("<= vocab_size ", l.vocab_size), Num(s.top_k()));
  }
  out->top_k = static_cast<int32_t>(s.top_k());
  if (s.has_top_p()) {
    if (auto st = CheckRange("sampling.top_p", s.top_p(), 0, 1, /*lo_open=*/true); !st.ok()) return st;
    out->top_p = s.top_p();
  }
  if (auto st = CheckRange("sampling.min_p", s.min_p(), 0, 1); !st.ok()) return st;
  out->min_p = s.min_p();
  if (s.has_repetition_penalty()) {
    if (!std::isfinite(s.repetition_penalty()) || s.repetition_penalty() <= 0) {
      return Invalid("sampling.repetition_penalty", "> 0", Num(s.repetition_penalty()));
    }
    out->repetition_penalty = s.repetition_penalty();
  }
  if (auto st = CheckRange("sampling.presence_penalty", s.presence_penalty(), -2, 2); !st.ok()) return st;
  if (auto st = CheckRange("sampling.frequency_penalty", s.frequency_penalty(), -2, 2); !st.ok()) return st;
  out->presence_penalty = s.presence_penalty();
  out->frequency_penalty = s.frequency_penalty();
  for (const auto& [token, bias] : s.logit_bias()) {
    if (auto st = CheckToken("sampling.logit_bias key", token, l.vocab_size); !st.ok()) return st;
    if (auto st = CheckRange(absl::StrCat("sampling.logit_bias[", token, "]"), bias, -100, 100); !st.ok()) {
      return st;
    }
    out->logit_bias.emplace_back(static_cast<int32_t>(token), bias);
  }
  std::sort(out->logit_bias.begin(), out->logit_bias.end());  // map order is unspecified; keep it stable
  if (s.has_seed()) out->seed = s.seed();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EngineRequest> ToEngineRequest(const wpb::GenerateRequest& req, const RequestLimits& l,
                                              std::chrono::system_clock::time_point deadline) {
  EngineRequest r;
  if (static_cast<int64_t>(req.request_id().size()) > l.max_request_id_bytes) {
    return Invalid("request_id", absl::StrCat("at most ", l.max_request_id_bytes, " bytes"),
                   absl::StrCat(req.request_id().size(), " bytes"));
  }
  r.id = req.request_id();
  const int64_t n = req.prompt_token_ids_size();
  if (n == 0) return Invalid("prompt_token_ids", "non-empty", "0 tokens");
  if (n >= l.max_model_len) {
    return Invalid("prompt_token_ids", absl::StrCat("shorter than max_model_len ", l.max_model_len),
                   absl::StrCat(n, " tokens"));
  }
  r.prompt.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t id = req.prompt_token_ids(static_cast<int>(i));
    if (auto st = CheckToken(absl::StrCat("prompt_token_ids[", i, "]"), id, l.vocab_size); !st.ok()) return st;
    r.prompt.push_back(static_cast<int32_t>(id));
  }
  if (auto st = FillSampling(req.sampling(), l, &r.sampling); !st.ok()) return st;

  const auto& s = req.stopping();
  const int64_t room = l.max_model_len - n;
  if (s.has_max_tokens()) {
    if (s.max_tokens() < 1) return Invalid("stopping.max_tokens", ">= 1", Num(s.max_tokens()));
    if (static_cast<int64_t>(s.max_tokens()) > room) {
      return Invalid("stopping.max_tokens",
                     absl::StrCat("<= max_model_len ", l.max_model_len, " - prompt length ", n, " = ", room),
                     Num(s.max_tokens()));
    }
    r.stopping.max_tokens = static_cast<int32_t>(s.max_tokens());
  } else {
    r.stopping.max_tokens = static_cast<int32_t>(std::min<int64_t>(room, std::numeric_limits<int32_t>::max()));
  }
  if (s.min_tokens() > static_cast<uint32_t>(r.stopping.max_tokens)) {
    return Invalid("stopping.min_tokens", absl::StrCat("<= max_tokens ", r.stopping.max_tokens), Num(s.min_tokens()));
  }
  r.stopping.min_tokens = static_cast<int32_t>(s.min_tokens());
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    const uint32_t id = s.stop_token_ids(i);
    if (auto st = CheckToken(absl::StrCat("stopping.stop_token_ids[", i, "]"), id, l.vocab_size); !st.ok()) {
      return st;
    }
    r.stopping.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  r.stopping.ignore_eos = s.ignore_eos();

  if (req.top_logprobs() > static_cast<uint64_t>(l.max_top_logprobs)) {
    return Invalid("top_logprobs", absl::StrCat("<= ", l.max_top_logprobs), Num(req.top_logprobs()));
  }
  if (req.top_logprobs() > 0 && !req.logprobs()) {
    return Invalid("top_logprobs", "0 unless logprobs is true", Num(req.top_logprobs()));
  }
  r.logprobs = req.logprobs();
  r.top_logprobs = static_cast<int32_t>(req.top_logprobs());

  if (deadline != std::chrono::system_clock::time_point::max()) {
    // The gRPC deadline is wall-clock; the engine runs on the steady clock.
    const auto left = deadline - std::chrono::system_clock::now();
    r.deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
  }
  return r;
}

void AppendOutput(const RequestOutput& out, wpb::GenerateResponse* m) {
  for (int32_t t : out.tokens) m->add_token_ids(static_cast<uint32_t>(t));
  for (const auto& lp : out.logprobs) {
    auto* p = m->add_logprobs();
    p->set_token_id(static_cast<uint32_t>(lp.token));
    p->set_logprob(lp.logprob);
    for (const auto& [id, v] : lp.top) {
      auto* top = p->add_top_logprobs();
      top->set_token_id(static_cast<uint32_t>(id));
      top->set_logprob(v);
    }
  }
  m->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(out.prompt_tokens));
  m->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(out.completion_tokens));
  if (!out.finished) return;
  m->set_finished(true);
  switch (out.finish_reason) {
    case FinishReason::kStop: m->set_finish_reason(wpb::FINISH_REASON_STOP); break;
    case FinishReason::kLength: m->set_finish_reason(wpb::FINISH_REASON_LENGTH); break;
    default: m->set_finish_reason(wpb::FINISH_REASON_UNSPECIFIED); break;
  }
  if (out.finish_reason == FinishReason::kStop && out.matched_stop_token >= 0) {
    m->set_matched_stop_token_id(static_cast<uint32_t>(out.matched_stop_token));
  }
  auto* t = m->mutable_timing();
  t->set_queue_us(static_cast<uint64_t>(std::max<int64_t>(0, out.timing.queue_us)));
  t->set_prefill_us(static_cast<uint64_t>(std::max<int64_t>(0, out.timing.prefill_us)));
  t->set_decode_us(static_cast<uint64_t>(std::max<int64_t>(0, out.timing.decode_us)));
  t->set_ttft_us(static_cast<uint64_t>(std::max<int64_t>(0, out.timing.ttft_us)));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string GrpcCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

int64_t RetryAfterMs(const absl::Status& status, int64_t fallback_ms) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  int64_t ms = 0;
  if (payload.has_value() && absl::SimpleAtoi(std::string(*payload), &ms) && ms >= 0) return ms;
  return fallback_ms;
}

wpb::InfoResponse MakeInfo(const ModelConfig& c, const EngineOptions& o, const std::string& model_name) {
  wpb::InfoResponse info;
  info.set_model_type(c.model_type);
  info.set_model_name(model_name);
  info.set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  info.set_max_model_len(static_cast<uint32_t>(o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings));
  for (int64_t id : c.eos_token_id) info.add_eos_token_ids(static_cast<uint32_t>(id));
  if (c.bos_token_id >= 0) info.set_bos_token_id(static_cast<uint32_t>(c.bos_token_id));
  info.set_num_layers(static_cast<uint32_t>(c.num_hidden_layers));
  info.set_num_mamba_layers(static_cast<uint32_t>(c.num_mamba_layers()));
  info.set_num_attention_layers(static_cast<uint32_t>(c.num_attention_layers()));
  info.set_num_experts(static_cast<uint32_t>(c.num_local_experts));
  info.set_num_experts_per_tok(static_cast<uint32_t>(c.num_experts_per_tok));
  info.set_hidden_size(static_cast<uint32_t>(c.hidden_size));
  info.set_dtype(c.torch_dtype);
  info.set_state_slots(static_cast<uint32_t>(o.state_slots));
  info.set_kv_block_size(static_cast<uint32_t>(o.kv_block_size));
  info.set_kv_blocks(static_cast<uint32_t>(o.kv_blocks));
  info.set_max_waiting(static_cast<uint32_t>(o.max_waiting));
  info.set_rank(0);
  info.set_ep_size(1);
  info.set_expert_begin(0);
  info.set_expert_end(static_cast<uint32_t>(c.num_local_experts));
  info.set_version(QUARRY_VERSION);
  return info;
}

}  // namespace quarry::service
