#include "router/text/template/lexer.h"

#include <cerrno>
#include <cstdlib>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router/text/template/pystr.h"

namespace quarry::chat {
namespace {

absl::Status SyntaxError(int line, std::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", std::string(msg)));
}

// jinja2: split on \r\n|\r|\n, drop one trailing empty line, join with \n.
std::string NormalizeSource(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out.push_back(src[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

// Length of the whitespace run at s[pos] (Python \s*).
size_t SkipSpace(std::string_view s, size_t pos) {
  size_t start = pos;
  while (pos < s.size()) {
    unsigned char c = s[pos];
    uint32_t cp = c;
    size_t n = 1;
    if ((c & 0xE0) == 0xC0 && pos + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (s[pos + 1] & 0x3F);
      n = 2;
    } else if ((c & 0xF0) == 0xE0 && pos + 2 < s.size()) {
      cp = ((c & 0x0F) << 12) | ((s[pos + 1] & 0x3F) << 6) | (s[pos + 2] & 0x3F);
      n = 3;
    } else if (c >= 0x80) {
      break;
    }
    if (!IsPySpace(cp)) break;
    pos += n;
  }
  return pos - start;
}

int CountNewlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Decodes a Python string literal body (unicode-escape semantics).
absl::StatusOr<std::string> Unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    char e = body[++i];
    auto hex = [&](size_t digits) -> absl::StatusOr<uint32_t> {
      uint32_t v = 0;
      for (size_t k = 1; k <= digits; ++k) {
        if (i + k >= body.size()) return SyntaxError(line, "truncated escape in string literal");
        char h = body[i + k];
        int d = IsDigit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) return SyntaxError(line, "truncated escape in string literal");
        v = v * 16 + d;
      }
      i += digits;
      return v;
    };
    auto append_cp = [&](uint32_t cp) {
      if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
    };
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        auto cp = hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (!cp.ok()) return cp.status();
        if (*cp > 0x10FFFF) return SyntaxError(line, "illegal Unicode character in string literal");
        append_cp(*cp);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = e - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            v = v * 8 + (body[++i] - '0');
          }
          append_cp(v);
        } else if (e == 'N') {
          return SyntaxError(line, "\\N{...} escapes are not supported");
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

constexpr std::string_view kOps[] = {"**", "//", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                     "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";"};

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(std::move(src)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t open = FindOpen(pos_);
      std::string_view text = std::string_view(s_).substr(pos_, open - pos_);
      if (open == s_.size()) {
        if (!text.empty()) tokens_.push_back(Token{TokenType::kData, std::string(text), 0, 0, line_});
        line_ += CountNewlines(text);
        break;
      }
      char kind = s_[open + 1];
      char sign = open + 2 < s_.size() ? s_[open + 2] : '\0';
      bool raw = kind == '%' && RawBeginLength(open) > 0;
      std::string data(text);
      if (sign == '-') {
        data = PyStrip(text, std::nullopt, false, true);
      } else if (sign != '+' && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          std::string_view tail = text.substr(l_pos);
          if (!tail.empty() && SkipSpace(tail, 0) == tail.size()) data = std::string(text.substr(0, l_pos));
        }
      }
      int data_line = line_;
      line_ += CountNewlines(text);
      if (!data.empty()) tokens_.push_back(Token{TokenType::kData, data, 0, 0, data_line});
      pos_ = open;
      absl::Status st;
      if (raw) {
        st = LexRaw();
      } else if (kind == '#') {
        st = LexComment();
      } else {
        st = LexTag(kind == '%');
      }
      if (!st.ok()) return st;
      line_starting = pos_ > 0 && s_[pos_ - 1] == '\n';
    }
    tokens_.push_back(Token{TokenType::kEof, "", 0, 0, line_});
    return std::move(tokens_);
  }

 private:
  size_t FindOpen(size_t from) const {
    for (size_t p = s_.find('{', from); p != std::string::npos; p = s_.find('{', p + 1)) {
      if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) return p;
    }
    return s_.size();
  }

  // Matches {%[-+]?\s*<word>\s*; returns the position after it or npos.
  size_t MatchWordTag(size_t p, std::string_view word, char* sign) const {
    if (s_.compare(p, 2, "{%") != 0) return std::string::npos;
    p += 2;
    *sign = '\0';
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) *sign = s_[p++];
    p += SkipSpace(s_, p);
    if (s_.compare(p, word.size(), word) != 0) return std::string::npos;
    p += word.size();
    if (p < s_.size() && IsNameChar(s_[p])) return std::string::npos;
    return p + SkipSpace(s_, p);
  }

  // Length of a `{% raw %}` opener at p (no trim_blocks newline after it), 0 if none.
  size_t RawBeginLength(size_t p) const {
    char sign;
    size_t q = MatchWordTag(p, "raw", &sign);
    if (q == std::string::npos) return 0;
    if (s_.compare(q, 3, "-%}") == 0) return q + 3 + SkipSpace(s_, q + 3) - p;
    if (s_.compare(q, 2, "%}") == 0) return q + 2 - p;
    return 0;
  }

  // After a block/comment closer at p (pointing at '-', '+' or the closer): returns the end position.
  size_t CloseEnd(size_t p, std::string_view closer) const {
    if (s_[p] == '+') return p + 1 + closer.size();
    if (s_[p] == '-') {
      size_t q = p + 1 + closer.size();
      return q + SkipSpace(s_, q);
    }
    size_t q = p + closer.size();
    if (q < s_.size() && s_[q] == '\n') ++q;  // trim_blocks
    return q;
  }

  absl::Status LexRaw() {
    size_t body = pos_ + RawBeginLength(pos_);
    for (size_t p = s_.find("{%", body); p != std::string::npos; p = s_.find("{%", p + 1)) {
      char sign;
      size_t q = MatchWordTag(p, "endraw", &sign);
      if (q == std::string::npos) continue;
      size_t end;
      if (s_.compare(q, 3, "+%}") == 0 || s_.compare(q, 3, "-%}") == 0) {
        end = CloseEnd(q, "%}");
      } else if (s_.compare(q, 2, "%}") == 0) {
        end = CloseEnd(q, "%}");
      } else {
        continue;
      }
      std::string_view text = std::string_view(s_).substr(body, p - body);
      std::string data(text);
      if (sign == '-') data = PyStrip(text, std::nullopt, false, true);
      // (lstrip_blocks applies to the endraw tag as well)
      else if (sign != '+') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
        std::string_view tail = text.substr(l_pos);
        if (l_pos > 0 && !tail.empty() && SkipSpace(tail, 0) == tail.size()) {
          data = std::string(text.substr(0, l_pos));
        }
      }
      if (!data.empty()) tokens_.push_back(Token{TokenType::kData, data, 0, 0, line_});
      line_ += CountNewlines(std::string_view(s_).substr(pos_, end - pos_));
      pos_ = end;
      return absl::OkStatus();
    }
    return SyntaxError(line_, "Missing end of raw directive");
  }

  absl::Status LexComment() {
    size_t body = pos_ + 2;
    if (body < s_.size() && (s_[body] == '-' || s_[body] == '+')) ++body;
    for (size_t p = s_.find("#}", body); p != std::string::npos; p = s_.find("#}", p + 1)) {
      size_t at = p > body && (s_[p - 1] == '-' || s_[p - 1] == '+') ? p - 1 : p;
      size_t end = CloseEnd(at, "#}");
      line_ += CountNewlines(std::string_view(s_).substr(pos_, end - pos_));
      pos_ = end;
      return absl::OkStatus();
    }
    return SyntaxError(line_, "Missing end of comment tag");
  }

  absl::Status LexTag(bool block) {
    std::string_view closer = block ? "%}" : "}}";
    tokens_.push_back(Token{block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", 0, 0, line_});
    pos_ += 2;
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) ++pos_;
    std::vector<char> balance;
    while (true) {
      if (pos_ >= s_.size()) return SyntaxError(line_, "unexpected end of template inside a tag");
      if (balance.empty()) {
        bool signed_close = (s_[pos_] == '-' || (block && s_[pos_] == '+')) &&
                            s_.compare(pos_ + 1, 2, closer) == 0;
        if (signed_close || s_.compare(pos_, 2, closer) == 0) {
          size_t end = block ? CloseEnd(pos_, closer)
                             : (signed_close ? pos_ + 3 + SkipSpace(s_, pos_ + 3) : pos_ + 2);
          tokens_.push_back(Token{block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", 0, 0, line_});
          line_ += CountNewlines(std::string_view(s_).substr(pos_, end - pos_));
          pos_ = end;
          return absl::OkStatus();
        }
      }
      size_t ws = SkipSpace(s_, pos_);
      if (ws > 0) {
        line_ += CountNewlines(std::string_view(s_).substr(pos_, ws));
        pos_ += ws;
        continue;
      }
      char c = s_[pos_];
      if (IsDigit(c)) {
        absl::Status st = LexNumber();
        if (!st.ok()) return st;
        continue;
      }
      if (IsNameStart(c)) {
        size_t start = pos_;
        while (pos_ < s_.size() && IsNameChar(s_[pos_])) ++pos_;
        tokens_.push_back(Token{TokenType::kName, s_.substr(start, pos_ - start), 0, 0, line_});
        continue;
      }
      if (c == '\'' || c == '"') {
        size_t p = pos_ + 1;
        while (p < s_.size() && s_[p] != c) p += s_[p] == '\\' ? 2 : 1;
        if (p >= s_.size()) return SyntaxError(line_, "unterminated string literal");
        auto value = Unescape(std::string_view(s_).substr(pos_ + 1, p - pos_ - 1), line_);
        if (!value.ok()) return value.status();
        tokens_.push_back(Token{TokenType::kString, *std::move(value), 0, 0, line_});
        line_ += CountNewlines(std::string_view(s_).substr(pos_, p + 1 - pos_));
        pos_ = p + 1;
        continue;
      }
      std::string_view op;
      for (std::string_view candidate : kOps) {
        if (s_.compare(pos_, candidate.size(), candidate) == 0) {
          op = candidate;
          break;
        }
      }
      if (op.empty()) return SyntaxError(line_, absl::StrCat("unexpected char '", std::string(1, c), "'"));
      if (op == "(" || op == "[" || op == "{") {
        balance.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
      } else if (op == ")" || op == "]" || op == "}") {
        if (balance.empty()) return SyntaxError(line_, absl::StrCat("unexpected '", std::string(op), "'"));
        if (balance.back() != op[0]) {
          return SyntaxError(line_, absl::StrCat("unexpected '", std::string(op), "', expected '",
                                                 std::string(1, balance.back()), "'"));
        }
        balance.pop_back();
      }
      tokens_.push_back(Token{TokenType::kOp, std::string(op), 0, 0, line_});
      pos_ += op.size();
    }
  }

  absl::Status LexNumber() {
    size_t start = pos_;
    auto digits = [&] {
      while (pos_ < s_.size() && (IsDigit(s_[pos_]) || (s_[pos_] == '_' && pos_ + 1 < s_.size() &&
                                                         IsDigit(s_[pos_ + 1])))) {
        ++pos_;
      }
    };
    digits();
    bool is_float = false;
    bool after_dot = start > 0 && s_[start - 1] == '.';
    if (!after_dot && pos_ + 1 < s_.size() && s_[pos_] == '.' && IsDigit(s_[pos_ + 1])) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (!after_dot && pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < s_.size() && (s_[p] == '+' || s_[p] == '-')) ++p;
      if (p < s_.size() && IsDigit(s_[p])) {
        pos_ = p;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (s_[i] != '_') text.push_back(s_[i]);
    }
    Token t{is_float ? TokenType::kFloat : TokenType::kInteger, text, 0, 0, line_};
    if (is_float) {
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      if (text.size() > 1 && text[0] == '0' && text.find_first_not_of('0') != std::string::npos) {
        return SyntaxError(line_, "leading zeros in decimal integer literals are not permitted");
      }
      errno = 0;
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) return SyntaxError(line_, "integer literal out of range");
    }
    tokens_.push_back(std::move(t));
    return absl::OkStatus();
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeSource(source)).Run();
}

}  // namespace quarry::chat
