// Template lexer: splits jinja2 source into data and tag tokens exactly as jinja2's lexer does with
// trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False ({%- -%}, {%+ +%}, comments, raw).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry::chat {

enum class TokenType { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInteger, kFloat,
                       kOp, kEof };

struct Token {
  TokenType type;
  std::string text;   // data, name, operator, decoded string literal
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Errors: INVALID_ARGUMENT "chat template line N: ...".
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace quarry::chat
