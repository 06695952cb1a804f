// Pre-tokenizer pipeline (see pretokenizer.h). Behaviour follows tokenizers' Split / ByteLevel implementations.
#include "router/text/tokenizer/pretokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

struct Span {
  size_t begin;
  size_t end;
  bool match;
};

// HF SplitDelimiterBehavior applied to spans that cover a piece in order.
void ApplyBehavior(SplitBehavior behavior, const std::vector<Span>& spans, std::vector<Span>* out) {
  out->clear();
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      *out = spans;
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.match) out->push_back(s);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous_match && !out->empty()) {
          out->back().end = s.end;
        } else {
          out->push_back(s);
        }
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = spans.size(); i-- > 0;) {
        const Span& s = spans[i];
        if (s.match && !previous_match && !out->empty()) {
          out->back().begin = s.begin;
        } else {
          out->push_back(s);
        }
        previous_match = s.match;
      }
      std::reverse(out->begin(), out->end());
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.match == previous_match && !out->empty()) {
          out->back().end = s.end;
        } else {
          out->push_back(s);
        }
        previous_match = s.match;
      }
      break;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(const std::vector<PreTokenizerStep>& steps,
                                                                   const std::string& source,
                                                                   bool allow_fast_path) {
  auto pre = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  for (size_t i = 0; i < steps.size(); ++i) {
    Step step{steps[i], nullptr};
    if (step.spec.kind == PreTokenizerStep::Kind::kSplit ||
        (step.spec.kind == PreTokenizerStep::Kind::kByteLevel && step.spec.use_regex)) {
      const bool split = step.spec.kind == PreTokenizerStep::Kind::kSplit;
      auto re = SplitRegex::Compile(split ? std::string_view(step.spec.pattern) : kGpt2Pattern,
                                    split ? step.spec.pattern_is_regex : true, allow_fast_path);
      if (!re.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": pre_tokenizer step ", i, " (pattern '",
                                                       step.spec.pattern, "'): ", re.status().message()));
      }
      step.regex = std::move(*re);
    }
    pre->steps_.push_back(std::move(step));
  }
  return pre;
}

bool PreTokenizer::all_fast() const {
  for (const Step& s : steps_) {
    if (s.regex != nullptr && !s.regex->uses_fast_path()) return false;
    if (s.spec.kind == PreTokenizerStep::Kind::kSplit && s.spec.behavior != SplitBehavior::kIsolated) return false;
    if (s.spec.kind == PreTokenizerStep::Kind::kByteLevel && s.spec.add_prefix_space) return false;
  }
  return true;
}

absl::Status PreTokenizer::ApplySplit(const Step& step, std::string_view piece,
                                      std::vector<std::string_view>* out) const {
  const bool is_split = step.spec.kind == PreTokenizerStep::Kind::kSplit;
  const SplitBehavior behavior = is_split ? step.spec.behavior : SplitBehavior::kIsolated;
  const bool invert = is_split && step.spec.invert;
  const SplitRegex& re = *step.regex;
  // Fast path: the GPT-4 matcher partitions the text, Isolated keeps every match as a piece.
  const bool partition = re.uses_fast_path() && behavior == SplitBehavior::kIsolated;
  thread_local std::vector<Span> spans, merged;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t valid = ValidUtf8PrefixLength(piece.substr(pos));
    const std::string_view run = piece.substr(pos, valid);
    if (partition) {
      for (size_t i = 0; i < run.size();) {
        const size_t e = Gpt4MatchAt(run, i);
        out->push_back(run.substr(i, e - i));
        i = e;
      }
    } else if (!run.empty()) {
      spans.clear();
      size_t prev = 0, start = 0;
      while (start <= run.size()) {
        size_t b = 0, e = 0;
        QUARRY_ASSIGN_OR_RETURN(bool found, re.Find(run, start, &b, &e));
        if (!found) break;
        if (prev != b) spans.push_back({prev, b, invert});
        spans.push_back({b, e, !invert});
        prev = e;
        if (e > b) {
          start = e;
        } else {
          if (e >= run.size()) break;
          start = e + ScanUtf8(run, e).length;  // step over one character after an empty match
        }
      }
      if (prev != run.size()) spans.push_back({prev, run.size(), invert});
      ApplyBehavior(behavior, spans, &merged);
      for (const Span& s : merged) {
        if (s.end > s.begin) out->push_back(run.substr(s.begin, s.end - s.begin));
      }
    }
    pos += valid;
    if (pos < piece.size()) {
      // Invalid bytes: one piece per maximal invalid subpart, never seen by the regex.
      const int len = ScanUtf8(piece, pos).length;
      out->push_back(piece.substr(pos, len));
      pos += len;
    }
  }
  return absl::OkStatus();
}

absl::Status PreTokenizer::Split(std::string_view text, PreTokenizerScratch* scratch,
                                 std::vector<std::string_view>* out) const {
  if (text.empty()) return absl::OkStatus();
  std::vector<std::string_view>* cur = &scratch->a;
  std::vector<std::string_view>* next = &scratch->b;
  cur->clear();
  cur->push_back(text);
  scratch->arena.clear();
  for (const Step& step : steps_) {
    next->clear();
    for (std::string_view piece : *cur) {
      if (step.spec.kind == PreTokenizerStep::Kind::kByteLevel && step.spec.add_prefix_space &&
          piece.front() != ' ') {
        scratch->arena.push_back(absl::StrCat(" ", absl::string_view(piece.data(), piece.size())));
        piece = scratch->arena.back();
      }
      if (step.regex == nullptr) {
        next->push_back(piece);
      } else {
        QUARRY_RETURN_IF_ERROR(ApplySplit(step, piece, next));
      }
    }
    std::swap(cur, next);
  }
  out->insert(out->end(), cur->begin(), cur->end());
  return absl::OkStatus();
}

}  // namespace quarry
