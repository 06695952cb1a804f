// UTF-8 primitives for the tokenizer: well-formedness per Unicode Table 3-7, code point decoding, lossy repair
// (each maximal invalid subpart becomes one U+FFFD, as Python's errors='replace' and Rust's from_utf8_lossy do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace quarry {

// One step of a UTF-8 scan at a byte offset.
struct Utf8Step {
  int length = 0;          // bytes consumed: the whole sequence if valid, else the maximal invalid subpart (>= 1)
  bool valid = false;      // a complete well-formed sequence
  bool truncated = false;  // invalid only because the input ended inside a sequence that could still complete
  uint32_t code_point = 0; // when valid
};

// Scans the sequence starting at s[i] (i < s.size()).
Utf8Step ScanUtf8(std::string_view s, size_t i);

bool IsValidUtf8(std::string_view s);

// Length of the longest prefix of s that is well-formed UTF-8.
size_t ValidUtf8PrefixLength(std::string_view s);

// Appends s to *out, replacing each maximal invalid subpart by U+FFFD (EF BF BD).
void AppendUtf8Lossy(std::string_view s, std::string* out);

// Appends the UTF-8 encoding of a code point (must be a Unicode scalar value).
void AppendCodePoint(uint32_t cp, std::string* out);

}  // namespace quarry
