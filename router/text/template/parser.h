// Template parser: jinja2's grammar (statements and expression precedence) over the lexer's tokens.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "router/text/template/ast.h"

namespace quarry::chat {

// Parses a whole template. Errors: INVALID_ARGUMENT "chat template line N: ..." (syntax, unknown tags,
// nesting deeper than kMaxParseDepth).
absl::StatusOr<Body> ParseTemplate(std::string_view source);

inline constexpr int kMaxParseDepth = 200;

}  // namespace quarry::chat
