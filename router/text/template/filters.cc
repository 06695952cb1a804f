// Builtin filters (jinja2 semantics; tojson as transformers overrides it) and tests.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/template/interpreter.h"
#include "router/text/template/json.h"
#include "router/text/template/pystr.h"

namespace quarry::chat {
namespace {

using Args = std::vector<std::optional<Value>>;

Value Or(const std::optional<Value>& v, Value def) { return v ? *v : std::move(def); }

// jinja2 soft_str: str(), Undefined -> "".
std::string Str(const Value& v) { return ToStr(v); }

absl::StatusOr<Value> AttrOf(const Value& item, const std::optional<Value>& attribute) {
  if (!attribute || attribute->is_none()) return item;
  if (attribute->is_int()) return GetItem(item, *attribute);
  Value cur = item;
  for (const std::string& part : PySplit(Str(*attribute), std::string("."), -1)) {
    char* end = nullptr;
    int64_t idx = std::strtoll(part.c_str(), &end, 10);
    if (!part.empty() && *end == '\0') {
      QUARRY_ASSIGN_OR_RETURN(cur, GetItem(cur, Value(idx)));
    } else {
      QUARRY_ASSIGN_OR_RETURN(cur, GetItem(cur, Value(part)));
    }
  }
  return cur;
}

// Sort/min/max key: lower-cased strings unless case_sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(AsciiLower(v.as_string()));
  return v;
}

absl::StatusOr<std::vector<Value>> Sorted(Interpreter& in, std::vector<Value> items, bool reverse,
                                          bool case_sensitive, const std::optional<Value>& attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) {
    QUARRY_ASSIGN_OR_RETURN(Value k, AttrOf(item, attribute));
    keyed.emplace_back(SortKey(k, case_sensitive), std::move(item));
  }
  absl::Status err;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    auto r = reverse ? Less(b.first, a.first) : Less(a.first, b.first);
    if (!r.ok()) {
      err = r.status();
      return false;
    }
    return *r;
  });
  if (!err.ok()) return err;
  std::vector<Value> out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return out;
}

absl::StatusOr<double> ParseFloat(const std::string& s) {
  std::string t = PyStrip(s, std::nullopt, true, true);
  std::string clean;
  for (char c : t) {
    if (c != '_') clean.push_back(c);
  }
  std::string lower = AsciiLower(clean);
  if (lower == "nan" || lower == "+nan" || lower == "-nan") return std::nan("");
  if (lower == "inf" || lower == "+inf" || lower == "infinity" || lower == "+infinity") return INFINITY;
  if (lower == "-inf" || lower == "-infinity") return -INFINITY;
  if (clean.empty() || lower.find_first_not_of("0123456789+-.e") != std::string::npos) {
    return TypeError("could not convert string to float");
  }
  char* end = nullptr;
  double d = std::strtod(clean.c_str(), &end);
  if (*end != '\0') return TypeError("could not convert string to float");
  return d;
}

absl::StatusOr<Value> IntFilter(const Value& v, const Value& def, int64_t base) {
  if (v.is_int() || v.is_bool()) return Value(v.IntLike());
  if (v.is_float()) {
    if (std::isnan(v.as_float()) || std::isinf(v.as_float())) return def;
    return Value(static_cast<int64_t>(v.as_float()));
  }
  if (v.is_string()) {
    std::string t = PyStrip(v.as_string(), std::nullopt, true, true);
    std::string clean;
    for (char c : t) {
      if (c != '_') clean.push_back(c);
    }
    if (!clean.empty()) {
      char* end = nullptr;
      errno = 0;
      int64_t i = std::strtoll(clean.c_str(), &end, static_cast<int>(base));
      if (*end == '\0' && errno == 0 && clean.find_first_of(" \t") == std::string::npos) return Value(i);
    }
    auto d = ParseFloat(v.as_string());
    if (d.ok() && !std::isnan(*d) && !std::isinf(*d)) return Value(static_cast<int64_t>(*d));
  }
  return def;
}

std::string Indent(const std::string& s, const std::string& ind, bool first, bool blank) {
  std::vector<std::string> lines;
  std::string text = s + "\n";
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == '\x1c' || c == '\x1d' || c == '\x1e') {
      lines.push_back(text.substr(start, i - start));
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  std::string rv;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      rv.push_back('\n');
      if (blank || !lines[i].empty()) rv.append(ind);
    }
    rv.append(lines[i]);
  }
  return first ? ind + rv : rv;
}

// jinja2 do_title: words split at runs of [-\s({\[<]; first character upper, rest lower.
std::string JinjaTitle(const std::string& s) {
  std::string out;
  bool word_start = true;
  for (char ch : s) {
    bool sep = ch == '-' || ch == '(' || ch == '{' || ch == '[' || ch == '<' || ch == ' ' ||
               (ch >= '\t' && ch <= '\r') || (ch >= '\x1c' && ch <= '\x1f');
    if (sep) {
      word_start = true;
      out.push_back(ch);
      continue;
    }
    std::string c(1, ch);
    out += word_start ? AsciiUpper(c) : AsciiLower(c);
    word_start = false;
  }
  return out;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// select/reject/selectattr/rejectattr.
absl::StatusOr<Value> Select(Interpreter& in, const Value& v, CallArgs& args, bool attr, bool keep) {
  QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  size_t a = 0;
  std::optional<Value> attribute;
  if (attr) {
    if (args.positional.empty()) return TypeError("selectattr/rejectattr need an attribute name");
    attribute = args.positional[a++];
  }
  std::optional<std::string> test;
  if (a < args.positional.size()) test = Str(args.positional[a++]);
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + a, args.positional.end());
  test_args.keyword = args.keyword;
  std::vector<Value> out;
  for (auto& item : items) {
    QUARRY_ASSIGN_OR_RETURN(Value x, AttrOf(item, attribute));
    bool r;
    if (test) {
      CallArgs ta = test_args;
      QUARRY_ASSIGN_OR_RETURN(r, in.ApplyTest(*test, x, ta));
    } else {
      r = x.Truthy();
    }
    if (r == keep) out.push_back(std::move(item));
  }
  return Value::MakeList(std::move(out));
}

}  // namespace

absl::StatusOr<Value> Interpreter::ApplyFilter(std::string_view name, const Value& v, CallArgs& call) {
  auto bind = [&](std::vector<std::string_view> params) { return BindArgs(name, call, params); };
  if (name == "tojson") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"ensure_ascii", "indent", "separators", "sort_keys"}));
    if (a[0] && a[0]->Truthy()) return TypeError("tojson: ensure_ascii=True is not supported");
    if (a[2] && !a[2]->is_none()) return TypeError("tojson: separators are not supported");
    DumpsOptions opt;
    if (a[1] && !a[1]->is_none()) {
      if (a[1]->is_int()) {
        opt.indent = std::string(std::max<int64_t>(0, std::min<int64_t>(a[1]->as_int(), 64)), ' ');
      } else if (a[1]->is_string()) {
        opt.indent = a[1]->as_string();
      } else {
        return TypeError("tojson: indent must be an int or a string");
      }
    }
    opt.sort_keys = a[3] && a[3]->Truthy();
    QUARRY_ASSIGN_OR_RETURN(std::string s, JsonDumps(v, opt));
    return Value(std::move(s));
  }
  if (name == "length" || name == "count") {
    QUARRY_ASSIGN_OR_RETURN(int64_t n, Length(v));
    return Value(n);
  }
  if (name == "string") return Value(Str(v));
  if (name == "safe") return v.is_string() ? v : Value(Str(v));
  if (name == "lower") return Value(AsciiLower(Str(v)));
  if (name == "upper") return Value(AsciiUpper(Str(v)));
  if (name == "capitalize") return Value(PyCapitalize(Str(v)));
  if (name == "title") return Value(JinjaTitle(Str(v)));
  if (name == "escape" || name == "e") return Value(HtmlEscape(Str(v)));
  if (name == "trim") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"chars"}));
    std::optional<std::string> chars;
    if (a[0] && !a[0]->is_none()) chars = Str(*a[0]);
    return Value(PyStrip(Str(v), chars, true, true));
  }
  if (name == "replace") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"old", "new", "count"}));
    if (!a[0] || !a[1]) return TypeError("replace() needs old and new");
    int64_t count = (a[2] && !a[2]->is_none()) ? a[2]->IntLike() : -1;
    return Value(PyReplace(Str(v), Str(*a[0]), Str(*a[1]), count));
  }
  if (name == "default" || name == "d") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"default_value", "boolean"}));
    bool boolean = a[1] && a[1]->Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy())) return Or(a[0], Value(""));
    return v;
  }
  if (name == "join") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"d", "attribute"}));
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    std::string sep = a[0] ? Str(*a[0]) : "";
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      QUARRY_ASSIGN_OR_RETURN(Value x, AttrOf(items[i], a[1]));
      if (i > 0) out += sep;
      out += Str(x);
      QUARRY_RETURN_IF_ERROR(CheckStringSize(out.size()));
    }
    return Value(std::move(out));
  }
  if (name == "first" || name == "last") {
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    if (items.empty()) return Value(Undefined{"No first item, sequence was empty."});
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    return Value::MakeList(std::move(items));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::MakeList({});
    if (!v.is_dict()) return TypeError("items: can only get item pairs from a mapping");
    std::vector<Value> out;
    for (const auto& [k, x] : v.as_dict().entries) out.push_back(Value::MakeList({k, x}, true));
    return Value::MakeList(std::move(out));
  }
  if (name == "int") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"default", "base"}));
    return IntFilter(v, Or(a[0], Value(0)), a[1] ? a[1]->IntLike() : 10);
  }
  if (name == "float") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"default"}));
    if (v.is_number()) return Value(v.ToDouble());
    if (v.is_string()) {
      auto d = ParseFloat(v.as_string());
      if (d.ok()) return Value(*d);
    }
    return Or(a[0], Value(0.0));
  }
  if (name == "abs") {
    if (!v.is_number()) return TypeError(absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
    if (v.is_float()) return Value(std::fabs(v.as_float()));
    if (v.IntLike() == INT64_MIN) return TypeError("integer overflow");
    return Value(static_cast<int64_t>(std::llabs(v.IntLike())));
  }
  if (name == "round") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"precision", "method"}));
    int64_t p = a[0] ? a[0]->IntLike() : 0;
    std::string method = a[1] ? Str(*a[1]) : "common";
    if (!v.is_number()) return TypeError("round: value must be a number");
    double x = v.ToDouble();
    if (method == "common") {
      if (!v.is_float()) return Value(v.IntLike());
      char buf[512];
      std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(std::clamp<int64_t>(p, 0, 300)), x);
      return Value(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(p));
    if (method == "floor") return Value(std::floor(x * scale) / scale);
    if (method == "ceil") return Value(std::ceil(x * scale) / scale);
    return TypeError("round: method must be common, ceil or floor");
  }
  if (name == "reverse") {
    if (v.is_string()) {
      QUARRY_ASSIGN_OR_RETURN(std::vector<Value> chars, Iterate(v));
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
      return Value(std::move(out));
    }
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    std::reverse(items.begin(), items.end());
    return Value::MakeList(std::move(items));
  }
  if (name == "sort") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"reverse", "case_sensitive", "attribute"}));
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    QUARRY_ASSIGN_OR_RETURN(items, Sorted(*this, std::move(items), a[0] && a[0]->Truthy(),
                                          a[1] && a[1]->Truthy(), a[2]));
    return Value::MakeList(std::move(items));
  }
  if (name == "min" || name == "max") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"case_sensitive", "attribute"}));
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    if (items.empty()) return Value(Undefined{"No aggregated item, sequence was empty."});
    QUARRY_ASSIGN_OR_RETURN(items, Sorted(*this, std::move(items), false, a[0] && a[0]->Truthy(), a[1]));
    return name == "min" ? items.front() : items.back();
  }
  if (name == "unique") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"case_sensitive", "attribute"}));
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    std::vector<Value> seen, out;
    for (auto& item : items) {
      QUARRY_ASSIGN_OR_RETURN(Value k, AttrOf(item, a[1]));
      k = SortKey(k, a[0] && a[0]->Truthy());
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, k); })) {
        seen.push_back(k);
        out.push_back(item);
      }
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "sum") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"attribute", "start"}));
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    Value acc = Or(a[1], Value(0));
    for (auto& item : items) {
      QUARRY_ASSIGN_OR_RETURN(Value x, AttrOf(item, a[0]));
      QUARRY_ASSIGN_OR_RETURN(acc, BinaryOp("+", acc, x, limits_));
    }
    return acc;
  }
  if (name == "indent") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"width", "first", "blank"}));
    std::string ind = !a[0] ? "    " : a[0]->is_string() ? a[0]->as_string()
                                                           : std::string(std::clamp<int64_t>(a[0]->IntLike(), 0, 256), ' ');
    return Value(Indent(Str(v), ind, a[1] && a[1]->Truthy(), a[2] && a[2]->Truthy()));
  }
  if (name == "attr") {
    QUARRY_ASSIGN_OR_RETURN(Args a, bind({"name"}));
    if (!a[0]) return TypeError("attr() needs a name");
    return GetAttr(v, Str(*a[0]));
  }
  if (name == "select") return Select(*this, v, call, false, true);
  if (name == "reject") return Select(*this, v, call, false, false);
  if (name == "selectattr") return Select(*this, v, call, true, true);
  if (name == "rejectattr") return Select(*this, v, call, true, false);
  if (name == "map") {
    QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
    std::vector<Value> out;
    if (call.positional.empty()) {
      std::optional<Value> attribute, def;
      for (auto& [k, x] : call.keyword) {
        if (k == "attribute") attribute = x;
        else if (k == "default") def = x;
        else return TypeError(absl::StrCat("map() got an unexpected keyword argument '", k, "'"));
      }
      if (!attribute) return TypeError("map() needs a filter name or attribute=");
      for (auto& item : items) {
        QUARRY_ASSIGN_OR_RETURN(Value x, AttrOf(item, attribute));
        out.push_back(x.is_undefined() && def ? *def : x);
      }
      return Value::MakeList(std::move(out));
    }
    std::string filter = Str(call.positional[0]);
    CallArgs rest;
    rest.positional.assign(call.positional.begin() + 1, call.positional.end());
    rest.keyword = call.keyword;
    for (auto& item : items) {
      CallArgs ra = rest;
      QUARRY_ASSIGN_OR_RETURN(Value x, ApplyFilter(filter, item, ra));
      out.push_back(std::move(x));
    }
    return Value::MakeList(std::move(out));
  }
  return TypeError(absl::StrCat("No filter named '", std::string(name), "'"));
}

absl::StatusOr<bool> Interpreter::ApplyTest(std::string_view name, const Value& v, CallArgs& call) {
  auto arg = [&]() -> absl::StatusOr<Value> {
    QUARRY_ASSIGN_OR_RETURN(Args a, BindArgs(name, call, {"other"}));
    if (!a[0]) return TypeError(absl::StrCat("test '", std::string(name), "' needs an argument"));
    return *a[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    const std::string& s = v.as_string();
    bool cased = false;
    for (char c : s) {
      if (name == "lower" ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) return false;
      cased |= (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }
    return cased;
  }
  if (name == "odd" || name == "even") {
    if (!v.is_int() && !v.is_bool()) return TypeError(absl::StrCat("test '", std::string(name), "' needs an int"));
    int64_t r = v.IntLike() % 2;
    return name == "odd" ? r != 0 : r == 0;
  }
  if (name == "divisibleby") {
    QUARRY_ASSIGN_OR_RETURN(Value o, arg());
    QUARRY_ASSIGN_OR_RETURN(Value m, BinaryOp("%", v, o, limits_));
    return !m.Truthy();
  }
  if (name == "in") {
    QUARRY_ASSIGN_OR_RETURN(Value o, arg());
    return Contains(o, v);
  }
  if (name == "sameas") {
    QUARRY_ASSIGN_OR_RETURN(Value o, arg());
    return v.kind() == o.kind() && Equal(v, o) && (v.is_none() || v.is_bool() || v.is_undefined() ||
                                                   v.is_namespace() || v.is_callable());
  }
  static const std::pair<const char*, const char*> kCompare[] = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="}, {"lt", "<"}, {"lessthan", "<"},
      {"<", "<"},   {"le", "<="},      {"<=", "<="}, {"gt", ">"},  {"greaterthan", ">"},     {">", ">"},
      {"ge", ">="}, {">=", ">="}};
  for (const auto& [test, op] : kCompare) {
    if (name == test) {
      QUARRY_ASSIGN_OR_RETURN(Value o, arg());
      return CompareOp(op, v, o);
    }
  }
  return TypeError(absl::StrCat("No test named '", std::string(name), "'"));
}

}  // namespace quarry::chat
