// Python operator semantics on Values: arithmetic, comparison, membership, attribute/item access, slicing.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/template/interpreter.h"
#include "router/text/template/pystr.h"

namespace quarry::chat {
namespace {

absl::Status Unsupported(std::string_view op, const Value& a, const Value& b) {
  return TypeError(absl::StrCat("unsupported operand type(s) for ", std::string(op), ": '", a.TypeName(),
                                "' and '", b.TypeName(), "'"));
}

absl::Status Overflow() { return TypeError("integer overflow (values are limited to 64 bits)"); }

absl::StatusOr<Value> Repeat(const Value& seq, int64_t times, const RenderLimits& limits) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(times) > limits.max_output_bytes / s.size()) {
      return absl::ResourceExhaustedError(absl::StrCat("string repetition exceeds max_output_bytes (",
                                                       limits.max_output_bytes, ")"));
    }
    std::string out;
    out.reserve(s.size() * times);
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = seq.as_list().items;
  if (!items.empty() && times > limits.max_list_items / static_cast<int64_t>(items.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("list repetition exceeds max_list_items (",
                                                     limits.max_list_items, ")"));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::MakeList(std::move(out), seq.as_list().is_tuple);
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t NormIndex(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

absl::Status TypeError(std::string_view msg) { return absl::InvalidArgumentError(std::string(msg)); }

absl::Status UndefinedError(const Value& v) {
  const std::string& hint = v.is_undefined() ? v.as_undefined().hint : std::string();
  if (hint.empty()) return absl::InvalidArgumentError("undefined value used");
  return absl::InvalidArgumentError(absl::StrCat("'", hint, "' is undefined"));
}

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b, const RenderLimits& limits) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    bool fl = a.is_float() || b.is_float();
    double x = a.ToDouble(), y = b.ToDouble();
    int64_t i = fl ? 0 : a.IntLike(), j = fl ? 0 : b.IntLike();
    int64_t r;
    if (op == "+") {
      if (fl) return Value(x + y);
      if (__builtin_add_overflow(i, j, &r)) return Overflow();
      return Value(r);
    }
    if (op == "-") {
      if (fl) return Value(x - y);
      if (__builtin_sub_overflow(i, j, &r)) return Overflow();
      return Value(r);
    }
    if (op == "*") {
      if (fl) return Value(x * y);
      if (__builtin_mul_overflow(i, j, &r)) return Overflow();
      return Value(r);
    }
    if (op == "/") {
      if (y == 0) return TypeError("division by zero");
      return Value(x / y);
    }
    if (op == "//" || op == "%") {
      if (y == 0) return TypeError(op == "//" ? "integer division or modulo by zero" : "modulo by zero");
      if (fl) {  // Python's float_divmod
        double m = std::fmod(x, y);
        double div = (x - m) / y;
        if (m != 0) {
          if ((y < 0) != (m < 0)) {
            m += y;
            div -= 1.0;
          }
        } else {
          m = std::copysign(0.0, y);
        }
        if (op == "%") return Value(m);
        double fd = 0;
        if (div != 0) {
          fd = std::floor(div);
          if (div - fd > 0.5) fd += 1.0;
        } else {
          fd = std::copysign(0.0, x / y);
        }
        return Value(fd);
      }
      if (i == INT64_MIN && j == -1) return Overflow();
      int64_t q = FloorDiv(i, j);
      return op == "//" ? Value(q) : Value(i - q * j);
    }
    if (op == "**") {
      if (!fl && j >= 0) {
        int64_t acc = 1;
        for (int64_t k = 0; k < j; ++k) {
          if (__builtin_mul_overflow(acc, i, &acc)) return Overflow();
          if (acc == 0 || acc == 1) break;
        }
        return Value(acc);
      }
      return Value(std::pow(x, y));
    }
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
      std::vector<Value> items = a.as_list().items;
      items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
      return Value::MakeList(std::move(items), a.as_list().is_tuple);
    }
    if (a.is_string()) {
      return TypeError(absl::StrCat("can only concatenate str (not \"", b.TypeName(), "\") to str"));
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return Repeat(a, b.IntLike(), limits);
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return Repeat(b, a.IntLike(), limits);
  }
  if (op == "%" && a.is_string()) return TypeError("printf-style string formatting is not supported");
  return Unsupported(op, a, b);
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError(absl::StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& v : container.as_list().items) {
        if (Equal(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return container.as_dict().Find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      return TypeError(absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return Equal(a, b);
  if (op == "!=") return !Equal(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") {
    QUARRY_ASSIGN_OR_RETURN(bool r, Contains(b, a));
    return !r;
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (op == "<") return Less(a, b);
  if (op == ">") return Less(b, a);
  if (op == "<=") {
    QUARRY_ASSIGN_OR_RETURN(bool gt, Less(b, a));
    return !gt && !(a.is_float() && std::isnan(a.as_float())) && !(b.is_float() && std::isnan(b.as_float()));
  }
  if (op == ">=") {
    QUARRY_ASSIGN_OR_RETURN(bool lt, Less(a, b));
    return !lt && !(a.is_float() && std::isnan(a.as_float())) && !(b.is_float() && std::isnan(b.as_float()));
  }
  return TypeError(absl::StrCat("unknown comparison ", std::string(op)));
}

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return TypeError(absl::StrCat("'", obj.as_undefined().hint.empty() ? "value" : obj.as_undefined().hint,
                                    "' is undefined (looking up attribute '", name, "')"));
    case Value::Kind::kNamespace: {
      const Value* v = obj.as_namespace().attrs.FindStr(name);
      if (v != nullptr) return *v;
      return Value(Undefined{name});
    }
    case Value::Kind::kDict: {
      if (auto m = LookupMethod(obj, name)) return *m;
      const Value* v = obj.as_dict().FindStr(name);
      if (v != nullptr) return *v;
      return Value(Undefined{name});
    }
    case Value::Kind::kString:
    case Value::Kind::kList:
      if (auto m = LookupMethod(obj, name)) return *m;
      return Value(Undefined{name});
    default:
      return Value(Undefined{name});
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return TypeError(absl::StrCat("'", obj.as_undefined().hint.empty() ? "value" : obj.as_undefined().hint,
                                    "' is undefined (subscripted with ", Repr(key), ")"));
    case Value::Kind::kDict: {
      const Value* v = obj.as_dict().Find(key);
      if (v != nullptr) return *v;
      if (key.is_string()) {
        if (auto m = LookupMethod(obj, key.as_string())) return *m;
      }
      return Value(Undefined{key.is_string() ? key.as_string() : Repr(key)});
    }
    case Value::Kind::kNamespace:
      if (key.is_string()) return GetAttr(obj, key.as_string());
      return Value(Undefined{Repr(key)});
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.is_string()) return GetAttr(obj, key.as_string());
      if (!key.is_int() && !key.is_bool()) return Value(Undefined{Repr(key)});
      if (obj.is_list()) {
        const auto& items = obj.as_list().items;
        int64_t i = NormIndex(key.IntLike(), static_cast<int64_t>(items.size()));
        if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value(Undefined{Repr(key)});
        return items[i];
      }
      const std::string& s = obj.as_string();
      std::vector<size_t> off = CodePointOffsets(s);
      int64_t n = static_cast<int64_t>(off.size()) - 1;
      int64_t i = NormIndex(key.IntLike(), n);
      if (i < 0 || i >= n) return Value(Undefined{Repr(key)});
      return Value(s.substr(off[i], off[i + 1] - off[i]));
    }
    default:
      return Value(Undefined{Repr(key)});
  }
}

absl::StatusOr<Value> SliceValue(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (!obj.is_list() && !obj.is_string()) return TypeError(absl::StrCat("'", obj.TypeName(),
                                                                        "' object is not subscriptable"));
  auto as_index = [](const Value& v, const char* what) -> absl::StatusOr<std::optional<int64_t>> {
    if (v.is_none()) return std::optional<int64_t>();
    if (v.is_int() || v.is_bool()) return std::optional<int64_t>(v.IntLike());
    return TypeError(absl::StrCat("slice ", what, " must be an integer or None"));
  };
  QUARRY_ASSIGN_OR_RETURN(auto b, as_index(start, "start"));
  QUARRY_ASSIGN_OR_RETURN(auto e, as_index(stop, "stop"));
  QUARRY_ASSIGN_OR_RETURN(auto st, as_index(step, "step"));
  int64_t k = st.value_or(1);
  if (k == 0) return TypeError("slice step cannot be zero");
  std::vector<size_t> off;
  int64_t n;
  if (obj.is_string()) {
    off = CodePointOffsets(obj.as_string());
    n = static_cast<int64_t>(off.size()) - 1;
  } else {
    n = static_cast<int64_t>(obj.as_list().items.size());
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = k < 0 ? -1 : 0;
    } else if (x >= n) {
      x = k < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t lo = adjust(b, k < 0 ? n - 1 : 0);
  int64_t hi = adjust(e, k < 0 ? -1 : n);
  std::vector<int64_t> idx;
  for (int64_t i = lo; k > 0 ? i < hi : i > hi; i += k) idx.push_back(i);
  if (obj.is_string()) {
    const std::string& s = obj.as_string();
    if (k == 1) return Value(s.substr(off[lo], idx.empty() ? 0 : off[hi] - off[lo]));
    std::string out;
    for (int64_t i : idx) out += s.substr(off[i], off[i + 1] - off[i]);
    return Value(std::move(out));
  }
  std::vector<Value> items;
  for (int64_t i : idx) items.push_back(obj.as_list().items[i]);
  return Value::MakeList(std::move(items), obj.as_list().is_tuple);
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return v.as_list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, val] : v.as_dict().entries) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      const std::string& s = v.as_string();
      std::vector<size_t> off = CodePointOffsets(s);
      std::vector<Value> chars;
      for (size_t i = 0; i + 1 < off.size(); ++i) chars.emplace_back(s.substr(off[i], off[i + 1] - off[i]));
      return chars;
    }
    default:
      return TypeError(absl::StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(CodePointCount(v.as_string()));
    case Value::Kind::kList: return static_cast<int64_t>(v.as_list().items.size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.as_dict().entries.size());
    default: return TypeError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<std::vector<std::optional<Value>>> BindArgs(std::string_view fname, const CallArgs& args,
                                                           const std::vector<std::string_view>& params) {
  if (args.positional.size() > params.size()) {
    return TypeError(absl::StrCat(std::string(fname), "() takes at most ", params.size(), " argument(s) (",
                                  args.positional.size(), " given)"));
  }
  std::vector<std::optional<Value>> out(params.size());
  for (size_t i = 0; i < args.positional.size(); ++i) out[i] = args.positional[i];
  for (const auto& [k, v] : args.keyword) {
    size_t i = 0;
    while (i < params.size() && params[i] != k) ++i;
    if (i == params.size()) {
      return TypeError(absl::StrCat(std::string(fname), "() got an unexpected keyword argument '", k, "'"));
    }
    if (out[i]) return TypeError(absl::StrCat(std::string(fname), "() got multiple values for argument '", k, "'"));
    out[i] = v;
  }
  return out;
}

}  // namespace quarry::chat
