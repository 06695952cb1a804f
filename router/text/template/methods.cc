// Builtin globals (range, namespace, dict, raise_exception, strftime_now) and Python methods of str, dict
// and list as the immutable sandbox exposes them (mutating methods fail when called).
#include <ctime>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/template/interpreter.h"
#include "router/text/template/pystr.h"

namespace quarry::chat {
namespace {

using Args = std::vector<std::optional<Value>>;
using Fn = std::function<absl::StatusOr<Value>(const Args&)>;

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

Value Method(const std::string& name, std::vector<std::string_view> params, Fn fn) {
  return Value::MakeCallable(name, [name, params = std::move(params), fn = std::move(fn)](
                                       Interpreter&, CallArgs& args) -> absl::StatusOr<Value> {
    QUARRY_ASSIGN_OR_RETURN(Args a, BindArgs(name, args, params));
    return fn(a);
  });
}

Value Unsafe(const std::string& type, const std::string& name) {
  return Value::MakeCallable(name, [type, name](Interpreter&, CallArgs&) -> absl::StatusOr<Value> {
    return TypeError(absl::StrCat("access to attribute '", name, "' of '", type,
                                  "' object is unsafe (the sandbox is immutable)"));
  });
}

std::optional<std::string> OptStr(const std::optional<Value>& v) {
  if (!v || v->is_none()) return std::nullopt;
  return ToStr(*v);
}

absl::StatusOr<bool> AffixMatch(const std::string& s, const std::optional<Value>& affix, bool prefix) {
  if (!affix) return TypeError("startswith/endswith need an argument");
  std::vector<Value> options;
  if (affix->is_list() && affix->as_list().is_tuple) {
    options = affix->as_list().items;
  } else {
    options.push_back(*affix);
  }
  for (const Value& o : options) {
    if (!o.is_string()) return TypeError("startswith/endswith arg must be str or a tuple of str");
    const std::string& a = o.as_string();
    if (a.size() <= s.size() && (prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0)) {
      return true;
    }
  }
  return false;
}

std::optional<Value> StrMethod(const std::string& s, const std::string& name) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return Method(name, {"chars"}, [s, l, r](const Args& a) -> absl::StatusOr<Value> {
      return Value(PyStrip(s, OptStr(a[0]), l, r));
    });
  }
  if (name == "split") {
    return Method(name, {"sep", "maxsplit"}, [s](const Args& a) -> absl::StatusOr<Value> {
      auto sep = OptStr(a[0]);
      if (sep && sep->empty()) return TypeError("empty separator");
      std::vector<Value> out;
      for (auto& part : PySplit(s, sep, a[1] ? a[1]->IntLike() : -1)) out.emplace_back(std::move(part));
      return Value::MakeList(std::move(out));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return Method(name, {"affix"}, [s, prefix](const Args& a) -> absl::StatusOr<Value> {
      QUARRY_ASSIGN_OR_RETURN(bool r, AffixMatch(s, a[0], prefix));
      return Value(r);
    });
  }
  if (name == "upper") return Method(name, {}, [s](const Args&) -> absl::StatusOr<Value> { return Value(AsciiUpper(s)); });
  if (name == "lower" || name == "casefold") {
    return Method(name, {}, [s](const Args&) -> absl::StatusOr<Value> { return Value(AsciiLower(s)); });
  }
  if (name == "title") return Method(name, {}, [s](const Args&) -> absl::StatusOr<Value> { return Value(PyTitle(s)); });
  if (name == "capitalize") {
    return Method(name, {}, [s](const Args&) -> absl::StatusOr<Value> { return Value(PyCapitalize(s)); });
  }
  if (name == "replace") {
    return Method(name, {"old", "new", "count"}, [s](const Args& a) -> absl::StatusOr<Value> {
      if (!a[0] || !a[1] || !a[0]->is_string() || !a[1]->is_string()) return TypeError("replace() needs two strings");
      return Value(PyReplace(s, a[0]->as_string(), a[1]->as_string(), a[2] ? a[2]->IntLike() : -1));
    });
  }
  if (name == "find" || name == "count") {
    bool find = name == "find";
    return Method(name, {"sub"}, [s, find](const Args& a) -> absl::StatusOr<Value> {
      if (!a[0] || !a[0]->is_string()) return TypeError("find()/count() need a string");
      const std::string& sub = a[0]->as_string();
      if (find) {
        size_t p = s.find(sub);
        return Value(p == std::string::npos ? int64_t{-1} : static_cast<int64_t>(CodePointCount(s.substr(0, p))));
      }
      if (sub.empty()) return Value(static_cast<int64_t>(CodePointCount(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    });
  }
  if (name == "join") {
    return Value::MakeCallable(name, [s](Interpreter& in, CallArgs& args) -> absl::StatusOr<Value> {
      QUARRY_ASSIGN_OR_RETURN(Args a, BindArgs("join", args, {"iterable"}));
      if (!a[0]) return TypeError("join() takes exactly one argument");
      QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(*a[0]));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) {
          return TypeError(absl::StrCat("sequence item ", i, ": expected str instance, ", items[i].TypeName(),
                                        " found"));
        }
        if (i > 0) out += s;
        out += items[i].as_string();
        QUARRY_RETURN_IF_ERROR(in.CheckStringSize(out.size()));
      }
      return Value(std::move(out));
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum") {
    return Method(name, {}, [s, name](const Args&) -> absl::StatusOr<Value> {
      if (s.empty()) return Value(false);
      for (unsigned char c : s) {
        bool ok = name == "isdigit"   ? (c >= '0' && c <= '9')
                  : name == "isalpha" ? ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
                  : name == "isspace" ? (c == ' ' || (c >= '\t' && c <= '\r'))
                                      : ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
        if (!ok) return Value(false);
      }
      return Value(true);
    });
  }
  if (name == "format" || name == "format_map") {
    return Value::MakeCallable(name, [](Interpreter&, CallArgs&) -> absl::StatusOr<Value> {
      return TypeError("str.format is not supported");
    });
  }
  return std::nullopt;
}

}  // namespace

std::optional<Value> LookupMethod(const Value& obj, const std::string& name) {
  if (obj.is_string()) return StrMethod(obj.as_string(), name);
  if (obj.is_dict()) {
    DictPtr d = std::make_shared<const Dict>(obj.as_dict());
    if (name == "items" || name == "keys" || name == "values") {
      return Method(name, {}, [d, name](const Args&) -> absl::StatusOr<Value> {
        std::vector<Value> out;
        for (const auto& [k, v] : d->entries) {
          out.push_back(name == "items" ? Value::MakeList({k, v}, true) : name == "keys" ? k : v);
        }
        return Value::MakeList(std::move(out));
      });
    }
    if (name == "get") {
      return Method(name, {"key", "default"}, [d](const Args& a) -> absl::StatusOr<Value> {
        if (!a[0]) return TypeError("get expected at least 1 argument, got 0");
        const Value* v = d->Find(*a[0]);
        if (v != nullptr) return *v;
        return a[1] ? *a[1] : Value(None{});
      });
    }
    if (name == "copy") return Method(name, {}, [d](const Args&) -> absl::StatusOr<Value> { return Value(d); });
    if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" || name == "clear") {
      return Unsafe("dict", name);
    }
    return std::nullopt;
  }
  if (obj.is_list()) {
    ListPtr l = std::make_shared<const List>(obj.as_list());
    if (name == "index" || name == "count") {
      bool index = name == "index";
      return Method(name, {"value"}, [l, index](const Args& a) -> absl::StatusOr<Value> {
        if (!a[0]) return TypeError("index()/count() take exactly one argument");
        int64_t n = 0;
        for (size_t i = 0; i < l->items.size(); ++i) {
          if (!Equal(l->items[i], *a[0])) continue;
          if (index) return Value(static_cast<int64_t>(i));
          ++n;
        }
        if (index) return TypeError(absl::StrCat(Repr(*a[0]), " is not in list"));
        return Value(n);
      });
    }
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
        name == "reverse" || name == "sort" || name == "clear") {
      return Unsafe(obj.TypeName(), name);
    }
  }
  return std::nullopt;
}

void AddBuiltinGlobals(Dict& g) {
  g.Set(Value("range"), Value::MakeCallable("range", [](Interpreter& in, CallArgs& args) -> absl::StatusOr<Value> {
    if (!args.keyword.empty()) return TypeError("range() takes no keyword arguments");
    std::vector<int64_t> p;
    for (const Value& v : args.positional) {
      if (!v.is_int() && !v.is_bool()) return TypeError(absl::StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
      p.push_back(v.IntLike());
    }
    if (p.empty() || p.size() > 3) return TypeError("range expected 1 to 3 arguments");
    int64_t start = p.size() == 1 ? 0 : p[0], stop = p.size() == 1 ? p[0] : p[1], step = p.size() == 3 ? p[2] : 1;
    if (step == 0) return TypeError("range() arg 3 must not be zero");
    std::vector<Value> out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (static_cast<int64_t>(out.size()) >= kMaxRange) {
        return TypeError(absl::StrCat("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
      }
      out.emplace_back(i);
    }
    QUARRY_RETURN_IF_ERROR(in.CheckListSize(out.size()));
    return Value::MakeList(std::move(out));
  }));
  g.Set(Value("namespace"), Value::MakeCallable("namespace", [](Interpreter& in, CallArgs& args) -> absl::StatusOr<Value> {
    auto ns = std::make_shared<Namespace>();
    in.TrackNamespace(ns);
    for (const Value& v : args.positional) {
      if (!v.is_dict()) return TypeError("namespace() positional arguments must be mappings");
      for (const auto& [k, x] : v.as_dict().entries) ns->attrs.Set(k, x);
    }
    for (auto& [k, x] : args.keyword) ns->attrs.Set(Value(k), x);
    return Value(NamespacePtr(std::move(ns)));
  }));
  g.Set(Value("dict"), Value::MakeCallable("dict", [](Interpreter&, CallArgs& args) -> absl::StatusOr<Value> {
    Dict d;
    for (const Value& v : args.positional) {
      if (!v.is_dict()) return TypeError("dict() positional arguments must be mappings");
      for (const auto& [k, x] : v.as_dict().entries) d.Set(k, x);
    }
    for (auto& [k, x] : args.keyword) d.Set(Value(k), x);
    return Value::MakeDict(std::move(d));
  }));
  g.Set(Value("raise_exception"),
        Value::MakeCallable("raise_exception", [](Interpreter&, CallArgs& args) -> absl::StatusOr<Value> {
          std::string msg = args.positional.empty() ? "" : ToStr(args.positional[0]);
          return absl::InvalidArgumentError(absl::StrCat("raise_exception: ", msg));
        }));
  g.Set(Value("strftime_now"),
        Value::MakeCallable("strftime_now", [](Interpreter&, CallArgs& args) -> absl::StatusOr<Value> {
          if (args.positional.size() != 1 || !args.positional[0].is_string()) {
            return TypeError("strftime_now(format) takes one string");
          }
          std::time_t now = std::time(nullptr);
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[256];
          size_t n = std::strftime(buf, sizeof(buf), args.positional[0].as_string().c_str(), &tm);
          return Value(std::string(buf, n));
        }));
}

}  // namespace quarry::chat
