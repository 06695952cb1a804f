// Python str semantics over UTF-8 std::string: code-point length/indexing/slicing, whitespace, strip and
// split, ASCII case mapping (non-ASCII letters keep their case; see docs/chat-template.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quarry::chat {

// Byte offsets of each code point start, plus s.size() at the end (invalid bytes count as one code point).
std::vector<size_t> CodePointOffsets(std::string_view s);
size_t CodePointCount(std::string_view s);
// Python str.isspace() for one code point.
bool IsPySpace(uint32_t cp);
// Python s.strip(chars)/lstrip/rstrip; chars == nullopt strips whitespace.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// Python s.split(sep, maxsplit) (sep == nullopt: runs of whitespace). Empty sep is the caller's error.
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::string AsciiLower(std::string_view s);
std::string AsciiUpper(std::string_view s);
// Python str.replace(old, new, count) (count < 0: all).
std::string PyReplace(std::string_view s, std::string_view from, std::string_view to, int64_t count);
// Python str.capitalize() / str.title() on ASCII letters.
std::string PyCapitalize(std::string_view s);
std::string PyTitle(std::string_view s);

}  // namespace quarry::chat
