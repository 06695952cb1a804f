// Pre-tokenizer regexes: a PCRE2 (UTF + UCP, JIT) wrapper for any Hugging Face Split pattern, and a hand-written
// matcher for the GPT-4 (cl100k) pattern that gives the same matches as PCRE2, several times faster.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace quarry {

// The GPT-4 / cl100k split pattern as Hugging Face tokenizer.json files write it.
inline constexpr std::string_view kGpt4Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex = true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Character classes as PCRE2 sees them (\p{L}, \p{N}, and \s widened to Unicode White_Space, see
// RewriteWhitespace). Built once per process from PCRE2 itself.
enum : uint8_t { kClassLetter = 1, kClassNumber = 2, kClassSpace = 4 };
uint8_t CodePointClass(uint32_t cp);

// Rewrites \s / \S so that they also cover U+0085 (NEL), matching Unicode White_Space as Oniguruma (used by
// Hugging Face tokenizers) and Rust's regex (tiktoken) define \s. PCRE2's UCP \s lacks U+0085.
std::string RewriteWhitespace(std::string_view pattern);

// A compiled split pattern. Thread-safe: Find may be called concurrently.
class SplitRegex {
 public:
  // Compiles `pattern` (regex syntax, or a literal when !is_regex). INVALID_ARGUMENT with PCRE2's message and
  // offset when it does not compile.
  static absl::StatusOr<std::unique_ptr<SplitRegex>> Compile(std::string_view pattern, bool is_regex,
                                                             bool allow_fast_path = true);
  ~SplitRegex();

  // Finds the first match in text[start, size) of a valid UTF-8 `text`; sets [*begin, *end) and returns true,
  // or returns false when there is none. Errors (e.g. the JIT stack limit) are RESOURCE_EXHAUSTED.
  absl::StatusOr<bool> Find(std::string_view text, size_t start, size_t* begin, size_t* end) const;

  bool uses_fast_path() const { return fast_gpt4_; }

 private:
  SplitRegex() = default;
  bool fast_gpt4_ = false;
  void* code_ = nullptr;  // pcre2_code_8*
};

// The hand-written GPT-4 matcher: end of the match that starts at byte i of valid UTF-8 `s` (i < s.size()).
// Every position starts a match, so the pattern partitions the text.
size_t Gpt4MatchAt(std::string_view s, size_t i);

}  // namespace quarry
