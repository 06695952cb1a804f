// Value: the template interpreter's data model (Python semantics: None, bool, int, float, str, list/tuple,
// insertion-ordered dict, jinja2 Undefined, namespace, callables) plus truthiness, equality, ordering and str().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry::chat {

class Value;
class Interpreter;

struct Undefined {
  std::string hint;  // what was looked up (for error messages)
};
struct None {};

struct List {
  std::vector<Value> items;
  bool is_tuple = false;
};

// Insertion-ordered mapping with Python key equality (linear lookup: template dicts are small).
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  const Value* Find(const Value& key) const;
  const Value* FindStr(std::string_view key) const;
  // Replaces the value of an existing key or appends a new entry.
  void Set(Value key, Value value);
};

// Mutable attribute bag created by namespace(...); the only mutable object templates see.
struct Namespace {
  Dict attrs;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::function<absl::StatusOr<Value>(Interpreter&, CallArgs&)> fn;
};

using ListPtr = std::shared_ptr<const List>;
using DictPtr = std::shared_ptr<const Dict>;
using NamespacePtr = std::shared_ptr<Namespace>;
using CallablePtr = std::shared_ptr<const Callable>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Value() : v_(Undefined{}) {}
  Value(None) : v_(None{}) {}
  Value(Undefined u) : v_(std::move(u)) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(ListPtr l) : v_(std::move(l)) {}
  Value(DictPtr d) : v_(std::move(d)) {}
  Value(NamespacePtr n) : v_(std::move(n)) {}
  Value(CallablePtr c) : v_(std::move(c)) {}

  static Value MakeList(std::vector<Value> items, bool is_tuple = false);
  static Value MakeDict(Dict dict);
  static Value MakeCallable(std::string name,
                            std::function<absl::StatusOr<Value>(Interpreter&, CallArgs&)> fn);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return *std::get<ListPtr>(v_); }
  const Dict& as_dict() const { return *std::get<DictPtr>(v_); }
  Namespace& as_namespace() const { return *std::get<NamespacePtr>(v_); }
  const Callable& as_callable() const { return *std::get<CallablePtr>(v_); }
  const Undefined& as_undefined() const { return std::get<Undefined>(v_); }

  // Numeric value of bool/int as int64 (Python: bool is an int).
  int64_t IntLike() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  double ToDouble() const { return is_float() ? as_float() : static_cast<double>(IntLike()); }

  bool Truthy() const;
  // Python type name ("str", "int", "dict", ...), used in error messages.
  std::string TypeName() const;

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr, DictPtr, NamespacePtr, CallablePtr>
      v_;
};

// Python ==.
bool Equal(const Value& a, const Value& b);
// Python <: numbers, strings (code point order), lists/tuples lexicographically; other pairs are a TypeError.
absl::StatusOr<bool> Less(const Value& a, const Value& b);
// Python str(x) as jinja2 prints it ({{ x }}, ~, |string); Undefined prints as "".
std::string ToStr(const Value& v);
// Python repr(x).
std::string Repr(const Value& v);
// Python repr(float): shortest round-trip digits, "1.0", "1e-05", "1e+16", "inf", "nan".
std::string PyFloatRepr(double d);
// Python repr(str) (quotes chosen like Python; non-ASCII kept).
std::string PyStrRepr(std::string_view s);

}  // namespace quarry::chat
