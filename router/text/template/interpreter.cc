#include "router/text/template/interpreter.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry::chat {
namespace {

// Prefixes the template line unless an inner node already did.
absl::Status WithLine(const absl::Status& s, int line) {
  std::string msg(s.message());
  if (msg.rfind("chat template line ", 0) == 0) return s;
  return absl::Status(s.code(), absl::StrCat("chat template line ", line, ": ", msg));
}

}  // namespace

const Value* Interpreter::Frame::Find(std::string_view name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent.get()) {
    for (const auto& [k, v] : f->vars) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Interpreter::Frame::Set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

absl::Status Interpreter::CheckStringSize(size_t bytes) const {
  if (bytes <= limits_.max_output_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("a string of ", bytes,
                                                   " bytes exceeds max_output_bytes (",
                                                   limits_.max_output_bytes, ")"));
}

absl::Status Interpreter::CheckListSize(size_t items) const {
  if (static_cast<int64_t>(items) <= limits_.max_list_items) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("a list of ", items,
                                                   " items exceeds max_list_items (", limits_.max_list_items,
                                                   ")"));
}

absl::Status Interpreter::CountIterations(int64_t n) {
  iterations_ += n;
  if (iterations_ <= limits_.max_loop_iterations) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("more than max_loop_iterations (",
                                                   limits_.max_loop_iterations, ") loop iterations"));
}

absl::Status Interpreter::Emit(std::string_view text) {
  if (out_->size() + text.size() > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("output exceeds max_output_bytes (",
                                                     limits_.max_output_bytes, ")"));
  }
  out_->append(text);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::Render(const Body& body, const Dict& globals) {
  auto root = std::make_shared<Frame>();
  Dict builtins;
  AddBuiltinGlobals(builtins);
  for (auto& [k, v] : builtins.entries) root->Set(k.as_string(), v);
  for (const auto& [k, v] : globals.entries) {
    if (k.is_string()) root->Set(k.as_string(), v);
  }
  auto top = std::make_shared<Frame>();
  top->parent = root;
  std::string out;
  out_ = &out;
  iterations_ = 0;
  call_depth_ = 0;
  auto flow = ExecBody(body, top);
  out_ = nullptr;
  BreakCycles();
  if (!flow.ok()) return flow.status();
  return out;
}

void Interpreter::BreakCycles() {
  for (auto& weak : namespaces_) {
    if (auto ns = weak.lock()) ns->attrs.entries.clear();
  }
  for (auto& weak : macro_frames_) {
    if (auto f = weak.lock()) f->vars.clear();
  }
  namespaces_.clear();
  macro_frames_.clear();
}

absl::StatusOr<std::string> Interpreter::Capture(const Body& body, const FramePtr& frame) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  auto flow = ExecBody(body, frame);
  out_ = saved;
  if (!flow.ok()) return flow.status();
  return buf;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecBody(const Body& body, const FramePtr& frame) {
  for (const auto& s : body) {
    auto flow = Exec(*s, frame);
    if (!flow.ok()) return WithLine(flow.status(), s->line);
    if (*flow != Flow::kNormal) return *flow;
  }
  return Flow::kNormal;
}

absl::Status Interpreter::Assign(const std::vector<std::string>& names, const Value& v, Frame& frame) {
  if (names.size() == 1) {
    frame.Set(names[0], v);
    return absl::OkStatus();
  }
  QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.size() != names.size()) {
    return TypeError(absl::StrCat(items.size() < names.size() ? "not enough" : "too many",
                                  " values to unpack (expected ", names.size(), ", got ", items.size(), ")"));
  }
  for (size_t i = 0; i < names.size(); ++i) frame.Set(names[i], items[i]);
  return absl::OkStatus();
}

absl::StatusOr<Interpreter::Flow> Interpreter::Exec(const Stmt& s, const FramePtr& frame) {
  switch (s.kind) {
    case Stmt::Kind::kOutput:
      QUARRY_RETURN_IF_ERROR(Emit(s.text));
      return Flow::kNormal;
    case Stmt::Kind::kPrint: {
      QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
      QUARRY_RETURN_IF_ERROR(Emit(ToStr(v)));
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (size_t i = 0; i < s.exprs.size(); ++i) {
        QUARRY_ASSIGN_OR_RETURN(Value c, Eval(*s.exprs[i], frame));
        if (c.Truthy()) return ExecBody(s.bodies[i], frame);
      }
      if (s.bodies.size() > s.exprs.size()) return ExecBody(s.bodies.back(), frame);
      return Flow::kNormal;
    case Stmt::Kind::kFor:
      return ExecFor(s, frame);
    case Stmt::Kind::kSet: {
      QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
      if (!s.attr.empty()) {
        const Value* target = frame->Find(s.names[0]);
        if (target == nullptr || !target->is_namespace()) {
          return TypeError("can't assign attribute on non-namespace object");
        }
        target->as_namespace().attrs.Set(Value(s.attr), std::move(v));
        return Flow::kNormal;
      }
      QUARRY_RETURN_IF_ERROR(Assign(s.names, v, *frame));
      return Flow::kNormal;
    }
    case Stmt::Kind::kSetBlock: {
      QUARRY_ASSIGN_OR_RETURN(std::string text, Capture(s.bodies[0], frame));
      frame->Set(s.names[0], Value(std::move(text)));
      return Flow::kNormal;
    }
    case Stmt::Kind::kMacro:
      frame->Set(s.text, MakeMacro(s, frame));
      return Flow::kNormal;
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
    case Stmt::Kind::kWith: {
      auto inner = std::make_shared<Frame>();
      inner->parent = frame;
      for (size_t i = 0; i < s.names.size(); ++i) {
        QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*s.exprs[i], frame));
        inner->Set(s.names[i], std::move(v));
      }
      return ExecBody(s.bodies[0], inner);
    }
    case Stmt::Kind::kScope:
      return ExecBody(s.bodies[0], frame);
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecFor(const Stmt& s, const FramePtr& frame) {
  QUARRY_ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr, frame));
  QUARRY_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(iterable));
  auto loop_frame = std::make_shared<Frame>();
  loop_frame->parent = frame;
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      QUARRY_RETURN_IF_ERROR(CountIterations(1));
      QUARRY_RETURN_IF_ERROR(Assign(s.names, item, *loop_frame));
      QUARRY_ASSIGN_OR_RETURN(Value c, Eval(*s.cond, loop_frame));
      if (c.Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
    loop_frame->vars.clear();
  }
  if (items.empty()) {
    if (s.bodies.size() > 1) return ExecBody(s.bodies[1], loop_frame);
    return Flow::kNormal;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    QUARRY_RETURN_IF_ERROR(CountIterations(1));
    // jinja2: names assigned in the body start from the enclosing scope again in every iteration.
    loop_frame = std::make_shared<Frame>();
    loop_frame->parent = frame;
    QUARRY_RETURN_IF_ERROR(Assign(s.names, items[i], *loop_frame));
    Dict loop;
    loop.entries.reserve(12);
    auto put = [&](const char* k, Value v) { loop.entries.emplace_back(Value(k), std::move(v)); };
    put("index", Value(i + 1));
    put("index0", Value(i));
    put("revindex", Value(n - i));
    put("revindex0", Value(n - i - 1));
    put("first", Value(i == 0));
    put("last", Value(i == n - 1));
    put("length", Value(n));
    put("depth", Value(1));
    put("depth0", Value(0));
    if (i > 0) put("previtem", items[i - 1]);
    if (i + 1 < n) put("nextitem", items[i + 1]);
    put("cycle", Value::MakeCallable("loop.cycle", [i](Interpreter&, CallArgs& args) -> absl::StatusOr<Value> {
          if (args.positional.empty()) return TypeError("no items for cycling given");
          return args.positional[i % args.positional.size()];
        }));
    loop_frame->Set("loop", Value::MakeDict(std::move(loop)));
    QUARRY_ASSIGN_OR_RETURN(Flow flow, ExecBody(s.bodies[0], loop_frame));
    if (flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Value Interpreter::MakeMacro(const Stmt& s, const FramePtr& frame) {
  const Stmt* def = &s;
  FramePtr closure = frame;
  macro_frames_.push_back(frame);
  return Value::MakeCallable(s.text, [def, closure](Interpreter& in, CallArgs& args) -> absl::StatusOr<Value> {
    if (args.positional.size() > def->names.size()) {
      return TypeError(absl::StrCat("macro '", def->text, "' takes not more than ", def->names.size(),
                                    " argument(s)"));
    }
    auto f = std::make_shared<Frame>();
    f->parent = closure;
    std::vector<bool> bound(def->names.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      f->Set(def->names[i], args.positional[i]);
      bound[i] = true;
    }
    for (auto& [k, v] : args.keyword) {
      size_t idx = 0;
      while (idx < def->names.size() && def->names[idx] != k) ++idx;
      if (idx == def->names.size()) {
        return TypeError(absl::StrCat("macro '", def->text, "' takes no keyword argument '", k, "'"));
      }
      f->Set(k, v);
      bound[idx] = true;
    }
    for (size_t i = 0; i < def->names.size(); ++i) {
      if (bound[i]) continue;
      if (def->exprs[i]) {
        QUARRY_ASSIGN_OR_RETURN(Value v, in.Eval(*def->exprs[i], f));
        f->Set(def->names[i], std::move(v));
      } else {
        f->Set(def->names[i], Value(Undefined{def->names[i]}));
      }
    }
    QUARRY_ASSIGN_OR_RETURN(std::string text, in.Capture(def->bodies[0], f));
    return Value(std::move(text));
  });
}

absl::StatusOr<Value> Interpreter::Call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (!callee.is_callable()) return TypeError(absl::StrCat("'", callee.TypeName(), "' object is not callable"));
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(absl::StrCat("calls nested deeper than max_call_depth (",
                                                     limits_.max_call_depth, ")"));
  }
  ++call_depth_;
  auto r = callee.as_callable().fn(*this, args);
  --call_depth_;
  return r;
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& e, size_t first, const FramePtr& frame) {
  CallArgs args;
  size_t n_kw = e.kwarg_names.size();
  size_t n_pos = e.children.size() - n_kw;
  for (size_t i = first; i < e.children.size(); ++i) {
    QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i], frame));
    if (i < n_pos) {
      args.positional.push_back(std::move(v));
    } else {
      args.keyword.emplace_back(e.kwarg_names[i - n_pos], std::move(v));
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& e, const FramePtr& frame) {
  auto v = EvalImpl(e, frame);
  if (!v.ok()) return WithLine(v.status(), e.line);
  if (v->is_string()) {
    absl::Status s = CheckStringSize(v->as_string().size());
    if (!s.ok()) return WithLine(s, e.line);
  } else if (v->is_list()) {
    absl::Status s = CheckListSize(v->as_list().items.size());
    if (!s.ok()) return WithLine(s, e.line);
  }
  return v;
}

absl::StatusOr<Value> Interpreter::EvalImpl(const Expr& e, const FramePtr& frame) {
  switch (e.kind) {
    case Expr::Kind::kConst:
      return e.value;
    case Expr::Kind::kName: {
      const Value* v = frame->Find(e.name);
      if (v == nullptr) return Value(Undefined{e.name});
      return *v;
    }
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const auto& c : e.children) {
        QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*c, frame));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items), e.kind == Expr::Kind::kTuple);
    }
    case Expr::Kind::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        QUARRY_ASSIGN_OR_RETURN(Value k, Eval(*e.children[i], frame));
        QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1], frame));
        if (k.is_list() && !k.as_list().is_tuple) return TypeError("unhashable type: 'list'");
        if (k.is_dict()) return TypeError("unhashable type: 'dict'");
        d.Set(std::move(k), std::move(v));
      }
      return Value::MakeDict(std::move(d));
    }
    case Expr::Kind::kGetattr: {
      QUARRY_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0], frame));
      return GetAttr(obj, e.name);
    }
    case Expr::Kind::kGetitem: {
      QUARRY_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0], frame));
      const Expr& idx = *e.children[1];
      if (idx.kind == Expr::Kind::kSlice) {
        Value parts[3];
        for (int k = 0; k < 3; ++k) {
          if (idx.children[k]) {
            QUARRY_ASSIGN_OR_RETURN(parts[k], Eval(*idx.children[k], frame));
          } else {
            parts[k] = Value(None{});
          }
        }
        return SliceValue(obj, parts[0], parts[1], parts[2]);
      }
      QUARRY_ASSIGN_OR_RETURN(Value key, Eval(idx, frame));
      return GetItem(obj, key);
    }
    case Expr::Kind::kSlice:
      return TypeError("slice outside of a subscript");
    case Expr::Kind::kCall: {
      QUARRY_ASSIGN_OR_RETURN(Value callee, Eval(*e.children[0], frame));
      QUARRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return Call(callee, args);
    }
    case Expr::Kind::kFilter: {
      QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0], frame));
      QUARRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return ApplyFilter(e.name, v, args);
    }
    case Expr::Kind::kTest: {
      QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0], frame));
      QUARRY_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      QUARRY_ASSIGN_OR_RETURN(bool r, ApplyTest(e.name, v, args));
      return Value(e.negated ? !r : r);
    }
    case Expr::Kind::kUnary: {
      QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0], frame));
      if (e.name == "not") return Value(!v.Truthy());
      if (v.is_undefined()) return UndefinedError(v);
      if (!v.is_number()) return TypeError(absl::StrCat("bad operand type for unary ", e.name, ": '",
                                                        v.TypeName(), "'"));
      if (e.name == "+") return v.is_bool() ? Value(v.IntLike()) : v;
      if (v.is_float()) return Value(-v.as_float());
      if (v.IntLike() == INT64_MIN) return TypeError("integer overflow");
      return Value(-v.IntLike());
    }
    case Expr::Kind::kBinary: {
      QUARRY_ASSIGN_OR_RETURN(Value a, Eval(*e.children[0], frame));
      if (e.name == "and") return a.Truthy() ? Eval(*e.children[1], frame) : a;
      if (e.name == "or") return a.Truthy() ? a : Eval(*e.children[1], frame);
      QUARRY_ASSIGN_OR_RETURN(Value b, Eval(*e.children[1], frame));
      return BinaryOp(e.name, a, b, limits_);
    }
    case Expr::Kind::kConcat: {
      std::string s;
      for (const auto& c : e.children) {
        QUARRY_ASSIGN_OR_RETURN(Value v, Eval(*c, frame));
        s += ToStr(v);
        QUARRY_RETURN_IF_ERROR(CheckStringSize(s.size()));
      }
      return Value(std::move(s));
    }
    case Expr::Kind::kCompare: {
      QUARRY_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0], frame));
      for (size_t i = 0; i < e.ops.size(); ++i) {
        QUARRY_ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1], frame));
        QUARRY_ASSIGN_OR_RETURN(bool r, CompareOp(e.ops[i], left, right));
        if (!r) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case Expr::Kind::kCondExpr: {
      QUARRY_ASSIGN_OR_RETURN(Value c, Eval(*e.children[0], frame));
      if (c.Truthy()) return Eval(*e.children[1], frame);
      if (e.children[2]) return Eval(*e.children[2], frame);
      return Value(Undefined{"the inline if-expression's else branch"});
    }
  }
  return TypeError("unknown expression");
}

}  // namespace quarry::chat
