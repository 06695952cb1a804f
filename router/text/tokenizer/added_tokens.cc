// Added-token matching (see added_tokens.h).
#include "router/text/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

#include "router/text/tokenizer/regex.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

bool IsSpaceAt(std::string_view s, size_t i, int* len) {
  const Utf8Step st = ScanUtf8(s, i);
  *len = st.length;
  return st.valid && (CodePointClass(st.code_point) & kClassSpace);
}

// Rust's char::is_alphanumeric, approximated by \p{L} | \p{N}.
bool IsWordCodePoint(const Utf8Step& st) {
  return st.valid && (CodePointClass(st.code_point) & (kClassLetter | kClassNumber));
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedTokenSpec>& tokens) : tokens_(tokens) {
  nodes_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    int32_t node = 0;
    for (unsigned char c : s) {
      int32_t next = Child(node, c);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        auto& edges = nodes_[node].edges;
        edges.insert(std::lower_bound(edges.begin(), edges.end(), std::make_pair(c, int32_t{-1})),
                     std::make_pair(c, next));
        nodes_.emplace_back();
      }
      node = next;
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(t);  // first definition wins
    first_byte_[static_cast<unsigned char>(s[0])] = true;
  }
  int count = 0;
  for (int b = 0; b < 256; ++b) {
    if (first_byte_[b]) {
      ++count;
      single_first_byte_ = b;
    }
  }
  if (count != 1) single_first_byte_ = -1;
}

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char c) const {
  const auto& edges = nodes_[node].edges;
  auto it = std::lower_bound(edges.begin(), edges.end(), std::make_pair(c, int32_t{-1}));
  return (it != edges.end() && it->first == c) ? it->second : -1;
}

bool AddedTokenMatcher::Acceptable(const AddedTokenSpec& t, std::string_view text, size_t begin,
                                   size_t end) const {
  if (!t.single_word) return true;
  if (begin > 0) {
    size_t p = begin - 1;
    while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
    if (IsWordCodePoint(ScanUtf8(text, p))) return false;
  }
  return end >= text.size() || !IsWordCodePoint(ScanUtf8(text, end));
}

bool AddedTokenMatcher::FindNext(std::string_view text, size_t from, size_t* begin, size_t* end,
                                 int32_t* id) const {
  if (tokens_.empty()) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = from;
  while (i < text.size()) {
    if (single_first_byte_ >= 0) {
      const void* hit = std::memchr(p + i, single_first_byte_, text.size() - i);
      if (hit == nullptr) return false;
      i = static_cast<const unsigned char*>(hit) - p;
    } else if (!first_byte_[p[i]]) {
      ++i;
      continue;
    }
    // Longest token starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = Child(node, p[j]);
      if (node < 0) break;
      const int32_t t = nodes_[node].token;
      if (t >= 0 && Acceptable(tokens_[t], text, i, j + 1)) {
        best = t;
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      const AddedTokenSpec& t = tokens_[best];
      size_t b = i, e = best_end;
      int len = 0;
      if (t.lstrip) {
        while (b > from) {
          size_t q = b - 1;
          while (q > from && (p[q] & 0xC0) == 0x80) --q;
          if (!IsSpaceAt(text, q, &len) || q + len != b) break;
          b = q;
        }
      }
      if (t.rstrip) {
        while (e < text.size() && IsSpaceAt(text, e, &len)) e += len;
      }
      *begin = b;
      *end = e;
      *id = t.id;
      return true;
    }
    ++i;
  }
  return false;
}

}  // namespace quarry
