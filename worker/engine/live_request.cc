// LiveRequest output messages and timings; request validation; pool sizing.
#include "worker/engine/live_request.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {
namespace {

int64_t Micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
    case FinishReason::kError: return "error";
  }
  return "?";
}

LiveRequest::LiveRequest(EngineRequest r, OutputCallback cb, int64_t vocab_size)
    : req(std::move(r)),
      on_output(std::move(cb)),
      sampler(req.sampling, vocab_size, req.prompt),
      submitted(std::chrono::steady_clock::now()) {
  if (req.sampling.seed) {
    device_seed = *req.sampling.seed;
  } else {
    std::random_device rd;
    device_seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
}

RequestTiming LiveRequest::Timing() const {
  const auto now = std::chrono::steady_clock::now();
  const auto zero = std::chrono::steady_clock::time_point{};
  RequestTiming t;
  t.queue_us = Micros((scheduled != zero ? scheduled : now) - submitted);
  if (first_token != zero) {
    t.prefill_us = Micros(first_token - scheduled);
    t.ttft_us = Micros(first_token - submitted);
    t.decode_us = Micros(now - first_token);
  }
  return t;
}

void LiveRequest::EmitToken(int32_t token, const TokenLogprob* logprob, FinishReason reason, int32_t matched_stop) {
  if (generated.empty()) first_token = std::chrono::steady_clock::now();
  generated.push_back(token);
  sampler.Accept(token);
  RequestOutput out;
  out.tokens.push_back(token);
  if (logprob != nullptr) out.logprobs.push_back(*logprob);
  out.prompt_tokens = static_cast<int64_t>(req.prompt.size());
  out.completion_tokens = static_cast<int64_t>(generated.size());
  if (reason != FinishReason::kNone) {
    out.finished = true;
    out.finish_reason = reason;
    out.matched_stop_token = matched_stop;
    out.timing = Timing();
  }
  on_output(out);
}

void LiveRequest::EmitFinal(FinishReason reason, absl::Status status) {
  RequestOutput out;
  out.finished = true;
  out.finish_reason = reason;
  out.status = std::move(status);
  out.prompt_tokens = static_cast<int64_t>(req.prompt.size());
  out.completion_tokens = static_cast<int64_t>(generated.size());
  out.timing = Timing();
  on_output(out);
}

absl::StatusOr<EngineOptions> ResolveEngineOptions(const ModelConfig& c, const EngineOptions& in) {
  EngineOptions o = in;
  auto bad = [](const char* field, int64_t v, const char* limit) {
    return absl::InvalidArgumentError(absl::StrCat("engine option ", field, " = ", v, " must be ", limit));
  };
  if (o.state_slots < 1) return bad("state_slots", o.state_slots, ">= 1");
  if (o.kv_block_size < 1) return bad("kv_block_size", o.kv_block_size, ">= 1");
  if (o.max_tokens_per_step < 1) return bad("max_tokens_per_step", o.max_tokens_per_step, ">= 1");
  if (o.max_waiting < 0) return bad("max_waiting", o.max_waiting, ">= 0");
  if (o.max_model_len < 0) return bad("max_model_len", o.max_model_len, ">= 0");
  if (o.device != "cpu" && o.device != "cuda" && o.device != "host") {
    return absl::InvalidArgumentError(absl::StrCat("engine option device = '", o.device,
                                                   "' must be cpu, cuda or host"));
  }
  const bool device_engine = o.device != "cpu";
  if (o.kv_cache_dtype == "auto") {
    o.kv_cache_dtype = device_engine && (c.torch_dtype == "bfloat16" || c.torch_dtype == "bf16") ? "bf16" : "f32";
  }
  if (o.kv_cache_dtype != "f32" && o.kv_cache_dtype != "bf16") {
    return absl::InvalidArgumentError(absl::StrCat("engine option kv_cache_dtype = '", o.kv_cache_dtype,
                                                   "' must be auto, bf16 or f32"));
  }
  if (o.kv_cache_dtype == "bf16" && !device_engine) {
    return absl::InvalidArgumentError(
        "engine option kv_cache_dtype = bf16 needs a device engine (--device cuda or host); the CPU engine keeps f32");
  }
  if (!(o.gpu_memory_utilization > 0.0 && o.gpu_memory_utilization <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("engine option gpu_memory_utilization = ",
                                                   o.gpu_memory_utilization, " must be in (0, 1]"));
  }
  // The CPU engine caps the default context (its KV pool is sized for state_slots full-length sequences up
  // front); a GPU engine offers the model's full context and sizes the pool from free memory.
  if (o.max_model_len == 0) {
    o.max_model_len = o.device == "cuda" ? c.max_position_embeddings : std::min<int64_t>(c.max_position_embeddings, 8192);
  }
  if (o.max_model_len > c.max_position_embeddings) {
    return bad("max_model_len", o.max_model_len, "<= max_position_embeddings of the model");
  }
  if (o.kv_blocks < 0) return bad("kv_blocks", o.kv_blocks, ">= 0");
  if (o.kv_blocks == 0 && !device_engine) o.kv_blocks = o.state_slots * ((o.max_model_len + o.kv_block_size - 1) / o.kv_block_size);
  return o;
}

absl::Status ValidateEngineRequest(const EngineRequest& r, const ModelConfig& c, const EngineOptions& o) {
  if (r.id.empty()) return absl::InvalidArgumentError("request_id must not be empty");
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt_token_ids must not be empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_token_ids[", i, "] = ", r.prompt[i],
                                                     " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  const StoppingParams& s = r.stopping;
  if (s.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_tokens = ", s.max_tokens, " must be >= 1"));
  }
  if (s.min_tokens < 0 || s.min_tokens > s.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.min_tokens = ", s.min_tokens, " must be in [0, max_tokens = ", s.max_tokens, "]"));
  }
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + s.max_tokens;
  if (total > o.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", r.prompt.size(), " tokens) + max_tokens (",
                                                   s.max_tokens, ") = ", total, " exceeds the context length ",
                                                   o.max_model_len));
  }
  for (int32_t t : s.stop_token_ids) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("stopping.stop_token_ids: ", t,
                                                     " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (r.top_logprobs < 0 || r.top_logprobs > 20) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs = ", r.top_logprobs, " must be in [0, 20]"));
  }
  return Sampler::Validate(r.sampling, c.vocab_size);
}

int64_t KvBlocksFor(const EngineRequest& r, const EngineOptions& o) {
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.stopping.max_tokens;
  return (total + o.kv_block_size - 1) / o.kv_block_size;
}

}  // namespace quarry
