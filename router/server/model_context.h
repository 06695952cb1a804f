// What the router knows about the served model: its name, config facts (vocabulary, context length, EOS ids),
// the tokenizer and the chat template, all loaded once from the model directory and shared read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "router/text/template/chat_template.h"
#include "router/text/tokenizer/tokenizer.h"
#include "worker/model/config.h"

namespace quarry {

struct ModelContext {
  std::string name;                 // served model name
  ModelConfig config;
  int64_t max_model_len = 0;        // prompt + completion limit, tokens
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<chat::ChatTemplate> chat_template;  // absent: Chat is refused with FAILED_PRECONDITION
  std::string dtype;
  // Longest token text in bytes: a prompt of more than max_model_len × this many bytes cannot fit in the
  // context, so it is refused before tokenization (10 MB prompts cost seconds to tokenize).
  size_t max_token_bytes = 0;
};

// Loads config.json, tokenizer.json/tokenizer_config.json (and chat_template.jinja when present) from `dir`.
// max_model_len 0 = min(max_position_embeddings, 8192).
absl::StatusOr<std::unique_ptr<ModelContext>> LoadModelContext(const std::string& dir, const std::string& name,
                                                               int64_t max_model_len);

}  // namespace quarry
