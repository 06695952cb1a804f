// Matching of added tokens (special or not) as whole strings in input text, leftmost-longest like Hugging Face's
// AddedVocabulary, including lstrip / rstrip / single_word.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "router/text/tokenizer/tokenizer_json.h"

namespace quarry {

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(const std::vector<AddedTokenSpec>& tokens);

  // Finds the leftmost added token in text[from, size) (the longest one at that position). On success sets the
  // span to remove from the text [*begin, *end) (wider than the content with lstrip / rstrip) and *id.
  bool FindNext(std::string_view text, size_t from, size_t* begin, size_t* end, int32_t* id) const;

  bool empty() const { return tokens_.empty(); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> edges;  // byte -> node, sorted
    int32_t token = -1;                                   // index into tokens_ when a token ends here
  };
  int32_t Child(int32_t node, unsigned char c) const;
  bool Acceptable(const AddedTokenSpec& t, std::string_view text, size_t begin, size_t end) const;

  std::vector<AddedTokenSpec> tokens_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
  int single_first_byte_ = -1;  // when every token starts with the same byte (memchr scan)
};

}  // namespace quarry
