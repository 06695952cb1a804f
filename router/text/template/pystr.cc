#include "router/text/template/pystr.h"

namespace quarry::chat {
namespace {

size_t CharLen(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at s[i]; sets len.
uint32_t Decode(std::string_view s, size_t i, size_t* len) {
  unsigned char c = s[i];
  size_t n = CharLen(c);
  if (i + n > s.size()) n = 1;
  *len = n;
  if (n == 1) return c;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

bool IsAsciiLetter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

std::vector<size_t> CodePointOffsets(std::string_view s) {
  std::vector<size_t> out;
  out.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    size_t n = CharLen(static_cast<unsigned char>(s[i]));
    i = (i + n > s.size()) ? i + 1 : i + n;
  }
  out.push_back(s.size());
  return out;
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool IsPySpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::vector<uint32_t> set;
  if (chars) {
    for (size_t i = 0, n = 0; i < chars->size(); i += n) set.push_back(Decode(*chars, i, &n));
  }
  auto strip_cp = [&](uint32_t cp) {
    if (!chars) return IsPySpace(cp);
    for (uint32_t c : set) {
      if (c == cp) return true;
    }
    return false;
  };
  std::vector<size_t> off = CodePointOffsets(s);
  size_t b = 0, e = off.size() - 1;  // code point range [b, e)
  size_t n;
  if (left) {
    while (b < e && strip_cp(Decode(s, off[b], &n))) ++b;
  }
  if (right) {
    while (e > b && strip_cp(Decode(s, off[e - 1], &n))) --e;
  }
  return std::string(s.substr(off[b], off[e] - off[b]));
}

std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t p = s.find(*sep, start);
      if (p == std::string_view::npos) break;
      out.emplace_back(s.substr(start, p - start));
      start = p + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  size_t i = 0, n = 0;
  while (i < s.size()) {
    while (i < s.size() && IsPySpace(Decode(s, i, &n))) i += n;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      // Remainder, with trailing whitespace stripped (Python keeps it unsplit).
      out.push_back(PyStrip(s.substr(i), std::nullopt, false, true));
      return out;
    }
    size_t start = i;
    while (i < s.size() && !IsPySpace(Decode(s, i, &n))) i += n;
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string PyReplace(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (from.empty()) {
    std::vector<size_t> off = CodePointOffsets(s);
    for (size_t k = 0; k + 1 < off.size(); ++k) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += s.substr(off[k], off[k + 1] - off[k]);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    size_t p = s.find(from, start);
    if (p == std::string_view::npos) break;
    out += s.substr(start, p - start);
    out += to;
    start = p + from.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

std::string PyCapitalize(std::string_view s) {
  std::string out = AsciiLower(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out(s);
  bool prev_cased = false;
  for (char& ch : out) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (IsAsciiLetter(c)) {
      if (prev_cased) {
        if (c >= 'A' && c <= 'Z') ch = static_cast<char>(c - 'A' + 'a');
      } else if (c >= 'a' && c <= 'z') {
        ch = static_cast<char>(c - 'a' + 'A');
      }
      prev_cased = true;
    } else {
      prev_cased = c >= 0x80;
    }
  }
  return out;
}

}  // namespace quarry::chat
