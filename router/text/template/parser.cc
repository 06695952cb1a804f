#include "router/text/template/parser.h"

#include "router/text/template/parser_impl.h"

namespace quarry::chat {

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  QUARRY_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return internal::Parser(std::move(tokens)).ParseAll();
}

}  // namespace quarry::chat
