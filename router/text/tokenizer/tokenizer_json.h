// Reading and validating Hugging Face tokenizer files (tokenizer.json of the byte-level BPE kind and
// tokenizer_config.json) into plain structs; no encoding logic lives here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry {

struct AddedTokenSpec {
  int32_t id = -1;
  std::string content;  // raw text (not byte-level mapped)
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// HF SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel };
  Kind kind = Kind::kSplit;
  // kSplit: `pattern` is a regex (HF {"Regex": ...}) or a literal string (HF {"String": ...}).
  std::string pattern;
  bool pattern_is_regex = true;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kByteLevel.
  bool add_prefix_space = false;
  bool use_regex = true;
};

struct TokenizerSpec {
  std::string source;                                   // file name used in error messages
  std::vector<std::pair<std::string, int32_t>> vocab;   // byte-level token string -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedTokenSpec> added_tokens;
  std::vector<PreTokenizerStep> pre_tokenizer;          // flattened Sequence
  bool ignore_merges = false;
  std::string unk_token;                                // model.unk_token, empty if none
};

// Fields of tokenizer_config.json that Quarry uses. Special tokens are strings ("" = not set).
struct TokenizerConfig {
  std::string bos_token;
  std::string eos_token;
  std::string pad_token;
  std::string unk_token;
  bool add_bos_token = false;
  bool add_eos_token = false;
  bool clean_up_tokenization_spaces = false;
  int64_t model_max_length = 0;  // 0 = not given
  std::string chat_template;     // the default template ("" = none)
  std::vector<std::pair<std::string, std::string>> named_chat_templates;  // list form: name -> template
};

// Parses tokenizer.json text; `source` names the file in errors. Errors: INVALID_ARGUMENT naming the problem.
absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view text, std::string_view source);

// Parses tokenizer_config.json text. Errors: INVALID_ARGUMENT.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view text, std::string_view source);

// Reads a whole file. NOT_FOUND when it does not exist, INVALID_ARGUMENT when it is unreadable.
absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path);

}  // namespace quarry
