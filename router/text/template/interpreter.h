// Interpreter: renders a parsed template over Values with jinja2 semantics (scoping, loops, macros,
// Undefined) inside fixed resource limits; also the value operations the builtins share.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/text/template/ast.h"
#include "router/text/template/value.h"

namespace quarry::chat {

struct RenderLimits {
  size_t max_output_bytes = 16u << 20;      // rendered text and any single string value
  int64_t max_loop_iterations = 1000000;    // all for-loop iterations of one render together
  int64_t max_list_items = 1000000;         // any single list value (range, *, +)
  int max_call_depth = 64;                  // nested macro / callable calls
};

class Interpreter {
 public:
  explicit Interpreter(RenderLimits limits) : limits_(limits) {}

  // Renders `body` with `globals` as the outermost scope (builtins are added below them).
  absl::StatusOr<std::string> Render(const Body& body, const Dict& globals);

  // Calls a callable value (macro, builtin function, bound method).
  absl::StatusOr<Value> Call(const Value& callee, CallArgs& args);
  absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& v, CallArgs& args);
  absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, CallArgs& args);

  // Limit checks; RESOURCE_EXHAUSTED naming the limit.
  absl::Status CheckStringSize(size_t bytes) const;
  absl::Status CheckListSize(size_t items) const;
  absl::Status CountIterations(int64_t n);
  const RenderLimits& limits() const { return limits_; }
  // Namespaces are the only mutable values and may reference themselves: the interpreter clears every
  // namespace it saw when a render ends so reference cycles cannot leak.
  void TrackNamespace(const NamespacePtr& ns) { namespaces_.push_back(ns); }

 private:
  struct Frame {
    std::vector<std::pair<std::string, Value>> vars;
    std::shared_ptr<Frame> parent;
    const Value* Find(std::string_view name) const;
    void Set(const std::string& name, Value v);
  };
  using FramePtr = std::shared_ptr<Frame>;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> ExecBody(const Body& body, const FramePtr& frame);
  absl::StatusOr<Flow> Exec(const Stmt& s, const FramePtr& frame);
  absl::StatusOr<Flow> ExecFor(const Stmt& s, const FramePtr& frame);
  absl::Status Assign(const std::vector<std::string>& names, const Value& v, Frame& frame);
  Value MakeMacro(const Stmt& s, const FramePtr& frame);
  absl::StatusOr<std::string> Capture(const Body& body, const FramePtr& frame);
  absl::Status Emit(std::string_view text);

  absl::StatusOr<Value> Eval(const Expr& e, const FramePtr& frame);
  absl::StatusOr<Value> EvalImpl(const Expr& e, const FramePtr& frame);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first, const FramePtr& frame);

  void BreakCycles();

  RenderLimits limits_;
  std::vector<std::weak_ptr<Namespace>> namespaces_;
  std::vector<std::weak_ptr<Frame>> macro_frames_;  // frames holding macros that capture them
  std::string* out_ = nullptr;
  int64_t iterations_ = 0;
  int call_depth_ = 0;
};

// ---- Value operations shared by the interpreter and the builtins (all return INVALID_ARGUMENT on
// Python TypeErrors and jinja2 UndefinedErrors) ----

absl::Status TypeError(std::string_view msg);
// jinja2's UndefinedError for using `v` (an Undefined) strictly.
absl::Status UndefinedError(const Value& v);
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b, const RenderLimits& limits);
absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b);
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// jinja2 sandbox getattr / getitem (attribute falls back to key and vice versa).
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
absl::StatusOr<Value> SliceValue(const Value& obj, const Value& start, const Value& stop, const Value& step);
// Python iter(v) materialised: list items, dict keys, string characters; Undefined is empty.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// Python len(v) (Undefined: 0).
absl::StatusOr<int64_t> Length(const Value& v);

// Binds call arguments to parameter names (positional first); unknown keywords or too many positionals
// are errors naming `fname`. Unbound parameters are nullopt.
absl::StatusOr<std::vector<std::optional<Value>>> BindArgs(std::string_view fname, const CallArgs& args,
                                                           const std::vector<std::string_view>& params);

// The builtin globals (range, namespace, dict, raise_exception) and method lookup on str/dict/list.
void AddBuiltinGlobals(Dict& globals);
// Bound method `name` of str/dict/list `obj`, or nullopt when it has none by that name.
std::optional<Value> LookupMethod(const Value& obj, const std::string& name);

}  // namespace quarry::chat
