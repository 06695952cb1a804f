// Turns public API requests into worker requests: validation with precise INVALID_ARGUMENT messages (field,
// limit, value), chat template rendering, tokenization, and the output options the router applies itself
// (stop strings, detokenization, tool-call parsing).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quarry/v1/quarry.pb.h"
#include "quarry/v1/worker.pb.h"
#include "router/server/model_context.h"

namespace quarry {

struct PreparedRequest {
  worker::v1::GenerateRequest worker;  // request_id, prompt ids, sampling, stopping, logprobs
  std::string id;                      // response id (client request_id or generated)
  std::vector<std::string> stop;       // stop strings
  bool include_stop = false;
  bool skip_special_tokens = true;
  bool parse_tool_calls = false;       // chat with tools and tool_choice auto
  bool logprobs = false;
  bool return_token_ids = false;
  bool include_usage = false;
  std::optional<std::chrono::milliseconds> time_limit;
  std::string rendered_prompt;         // chat only
  int64_t preprocess_us = 0;
};

absl::StatusOr<PreparedRequest> PrepareGenerate(const v1::GenerateRequest& r, const ModelContext& m);
absl::StatusOr<PreparedRequest> PrepareChat(const v1::ChatRequest& r, const ModelContext& m);
// The rendered chat prompt only (Tokenize with a chat input).
absl::StatusOr<std::string> RenderChat(const v1::ChatRequest& r, const ModelContext& m);

}  // namespace quarry
