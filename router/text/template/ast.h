// Template syntax tree: expressions and statements produced by the parser, each tagged with its source line.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "router/text/template/value.h"

namespace quarry::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kConst,     // value
    kName,      // name
    kList,      // children = items
    kTuple,     // children = items
    kDict,      // children = k0, v0, k1, v1, ...
    kGetattr,   // children[0] . name
    kGetitem,   // children[0] [ children[1] ]
    kSlice,     // children = start, stop, step (each may be null)
    kCall,      // children[0](children[1..]); the last kwarg_names.size() children are keyword args
    kFilter,    // children[0] | name(children[1..]) (kwargs as in kCall)
    kTest,      // children[0] is [not] name(children[1..])
    kUnary,     // name in {"not", "-", "+"}; children[0]
    kBinary,    // name in {"and", "or", "+", "-", "*", "/", "//", "%", "**"}; children[0], children[1]
    kConcat,    // children joined with ~
    kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
    kCondExpr,  // children = test, then, else (else may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::string> kwarg_names;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kOutput,    // text
    kPrint,     // expr
    kIf,        // exprs[i] guards bodies[i]; bodies.size() == exprs.size() + 1 when there is an else
    kFor,       // names = targets, expr = iterable, cond = optional filter, bodies[0] = body, bodies[1] = else
    kSet,       // names = targets (attr != "": names[0].attr), expr = value
    kSetBlock,  // names[0] = target, bodies[0] = captured body
    kMacro,     // text = name, names = params, exprs = defaults (null: required), bodies[0]
    kBreak,
    kContinue,
    kWith,      // names[i] = exprs[i] in a new scope, bodies[0]
    kScope,     // bodies[0] rendered in place (generation blocks)
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::string attr;
  std::vector<std::string> names;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<ExprPtr> exprs;
  std::vector<Body> bodies;
};

}  // namespace quarry::chat
