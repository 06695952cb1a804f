// The pre-tokenizer pipeline of a byte-level BPE tokenizer.json: Split steps (regex or literal, all five HF
// behaviours, invert) and ByteLevel steps (prefix space, GPT-2 regex), producing the pieces that BPE encodes.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "router/text/tokenizer/regex.h"
#include "router/text/tokenizer/tokenizer_json.h"

namespace quarry {

// Reusable buffers for one Split call (not shared between threads).
struct PreTokenizerScratch {
  std::vector<std::string_view> a, b;
  std::deque<std::string> arena;  // pieces that got a prefix space
};

class PreTokenizer {
 public:
  // Compiles every step; a bad regex is INVALID_ARGUMENT naming `source` and the step.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(const std::vector<PreTokenizerStep>& steps,
                                                              const std::string& source, bool allow_fast_path = true);

  // Appends the pieces of `text` to *out. Views point into `text` or into scratch->arena. Invalid UTF-8 bytes
  // never reach a regex: each becomes a piece of its own. Errors only from the PCRE2 fallback (limits).
  absl::Status Split(std::string_view text, PreTokenizerScratch* scratch, std::vector<std::string_view>* out) const;

  // True when the only regex work is the hand-written GPT-4 matcher.
  bool all_fast() const;

 private:
  struct Step {
    PreTokenizerStep spec;
    std::unique_ptr<SplitRegex> regex;  // kSplit, or kByteLevel with use_regex
  };
  absl::Status ApplySplit(const Step& step, std::string_view piece, std::vector<std::string_view>* out) const;
  std::vector<Step> steps_;
};

}  // namespace quarry
