// Fill-in-the-middle prompts (Granite's PSM format): <|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>,
// with the user's prefix and suffix tokenized as plain text (no control tokens can be injected).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "router/text/tokenizer/tokenizer.h"

namespace quarry {

// FAILED_PRECONDITION when the tokenizer lacks one of the three FIM tokens.
absl::StatusOr<std::vector<int32_t>> BuildFimPrompt(const Tokenizer& tokenizer, std::string_view prefix,
                                                    std::string_view suffix);

}  // namespace quarry
