// PCRE2 split patterns and the hand-written GPT-4 matcher (see regex.h).
#include "router/text/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return std::string(reinterpret_cast<const char*>(buf));
}

// Per-thread match state: match data, JIT stack (up to 4 MiB for long whitespace runs) and match context.
struct ThreadMatchState {
  pcre2_match_data* data = pcre2_match_data_create(32, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 4 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  ThreadMatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~ThreadMatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

ThreadMatchState& MatchState() {
  thread_local ThreadMatchState state;
  return state;
}

pcre2_code* CompileOrDie(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (code == nullptr) std::abort();  // only for the fixed class patterns below
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return code;
}

// One byte of class bits per code point, derived from PCRE2 by matching the classes over a buffer that holds
// every Unicode scalar value in order.
const uint8_t* ClassTable() {
  static const uint8_t* table = [] {
    auto* t = new uint8_t[kMaxCodePoint + 1]();
    std::string all;
    all.reserve(4400000);
    for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      AppendCodePoint(cp, &all);
    }
    const std::pair<std::string, uint8_t> classes[] = {
        {R"(\p{L}+)", kClassLetter}, {R"(\p{N}+)", kClassNumber}, {RewriteWhitespace(R"(\s+)"), kClassSpace}};
    pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
    for (const auto& [pattern, bit] : classes) {
      pcre2_code* code = CompileOrDie(pattern);
      PCRE2_SIZE pos = 0;
      while (pos < all.size() &&
             pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(all.data()), all.size(), pos, PCRE2_NO_UTF_CHECK, md,
                         nullptr) > 0) {
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        for (size_t i = ov[0]; i < ov[1];) {
          const Utf8Step st = ScanUtf8(all, i);
          t[st.code_point] |= bit;
          i += st.length;
        }
        pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
      }
      pcre2_code_free(code);
    }
    pcre2_match_data_free(md);
    return t;
  }();
  return table;
}

inline uint32_t DecodeValid(const unsigned char* p, size_t i, int* len) {
  const unsigned c = p[i];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return ((c & 0x1F) << 6) | (p[i + 1] & 0x3F);
  }
  if (c < 0xF0) {
    *len = 3;
    return ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
  }
  *len = 4;
  return ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
}

// Simple case folding restricted to what (?i:'s|'t|'re|'ve|'m|'ll|'d) can see: ASCII letters and U+017F
// (LATIN SMALL LETTER LONG S folds to 's').
inline uint32_t FoldContraction(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';
  return c;
}

}  // namespace

uint8_t CodePointClass(uint32_t cp) { return cp <= kMaxCodePoint ? ClassTable()[cp] : 0; }

std::string RewriteWhitespace(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      if (d == 's') {
        out += in_class ? R"(\s\x{85})" : R"([\s\x{85}])";
      } else if (d == 'S' && !in_class) {
        out += R"([^\s\x{85}])";
      } else if (d == 'Q') {  // \Q...\E literal run: copy verbatim
        const size_t e = p.find("\\E", i + 2);
        const size_t stop = e == std::string_view::npos ? p.size() : e + 2;
        out.append(p.substr(i, stop - i));
        i = stop;
        continue;
      } else {
        out += c;
        out += d;
      }
      i += 2;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // literal ']' first in a class
      continue;
    }
    if (c == '[' && in_class && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:name:]
      const size_t e = p.find(":]", i + 2);
      const size_t stop = e == std::string_view::npos ? p.size() : e + 2;
      out.append(p.substr(i, stop - i));
      i = stop;
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
    ++i;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SplitRegex>> SplitRegex::Compile(std::string_view pattern, bool is_regex,
                                                               bool allow_fast_path) {
  std::unique_ptr<SplitRegex> re(new SplitRegex());
  (void)ClassTable();
  const std::string effective = is_regex ? RewriteWhitespace(pattern) : std::string(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(effective.data()), effective.size(),
                    is_regex ? (PCRE2_UTF | PCRE2_UCP) : (PCRE2_UTF | PCRE2_LITERAL), &err, &off, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("regex does not compile at offset ", off, ": ",
                                                   Pcre2Message(err)));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  re->code_ = code;
  re->fast_gpt4_ = allow_fast_path && is_regex && pattern == kGpt4Pattern;
  return re;
}

SplitRegex::~SplitRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::StatusOr<bool> SplitRegex::Find(std::string_view text, size_t start, size_t* begin, size_t* end) const {
  if (start > text.size()) return false;
  if (fast_gpt4_) {
    if (start == text.size()) return false;
    *begin = start;
    *end = Gpt4MatchAt(text, start);
    return true;
  }
  ThreadMatchState& st = MatchState();
  const int rc = pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(text.data()),
                             text.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) return absl::ResourceExhaustedError(absl::StrCat("pre-tokenizer regex failed: ", Pcre2Message(rc)));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  *begin = ov[0];
  *end = ov[1];
  return true;
}

size_t Gpt4MatchAt(std::string_view sv, size_t i) {
  const uint8_t* tab = ClassTable();
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  const size_t n = sv.size();
  constexpr uint8_t kLns = kClassLetter | kClassNumber | kClassSpace;
  int len = 0;
  const uint32_t c = DecodeValid(s, i, &len);
  const uint8_t k = tab[c];
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'' && i + 1 < n) {
    int l1 = 0;
    const uint32_t c1 = FoldContraction(DecodeValid(s, i + 1, &l1));
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 1 + l1;
    if ((c1 == 'r' || c1 == 'v' || c1 == 'l') && i + 1 + l1 < n) {
      int l2 = 0;
      const uint32_t c2 = FoldContraction(DecodeValid(s, i + 1 + l1, &l2));
      if (((c1 == 'r' || c1 == 'v') && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 1 + l1 + l2;
    }
  }
  auto skip = [&](size_t j, uint8_t want) {
    while (j < n) {
      int l = 0;
      if (!(tab[DecodeValid(s, j, &l)] & want)) break;
      j += l;
    }
    return j;
  };
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (k & kClassLetter) return skip(i + len, kClassLetter);
  if (c != '\r' && c != '\n' && !(k & kClassNumber) && i + len < n) {
    int l1 = 0;
    if (tab[DecodeValid(s, i + len, &l1)] & kClassLetter) return skip(i + len + l1, kClassLetter);
  }
  // \p{N}{1,3}
  if (k & kClassNumber) {
    size_t j = i + len;
    for (int r = 1; r < 3 && j < n; ++r) {
      int l = 0;
      if (!(tab[DecodeValid(s, j, &l)] & kClassNumber)) break;
      j += l;
    }
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t j = i;
  bool other = !(k & kLns);
  if (!other && c == ' ' && i + 1 < n) {
    int l1 = 0;
    if (!(tab[DecodeValid(s, i + 1, &l1)] & kLns)) {
      j = i + 1;
      other = true;
    }
  }
  if (other) {
    while (j < n) {
      int l = 0;
      if (tab[DecodeValid(s, j, &l)] & kLns) break;
      j += l;
    }
    while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
    return j;
  }
  // c is whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
  size_t last_start = i;
  size_t last_crlf = std::string_view::npos;
  j = i;
  while (j < n) {
    int l = 0;
    const uint32_t d = DecodeValid(s, j, &l);
    if (!(tab[d] & kClassSpace)) break;
    if (d == '\r' || d == '\n') last_crlf = j;
    last_start = j;
    j += l;
  }
  if (last_crlf != std::string_view::npos) return last_crlf + 1;
  if (j == n) return j;
  if (last_start > i) return last_start;
  return j;
}

}  // namespace quarry
