// Internal: the recursive-descent Parser class shared by parser.cc (statements) and parser_expr.cc
// (expressions). Not part of the public API.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/template/ast.h"
#include "router/text/template/lexer.h"
#include "router/text/template/parser.h"

namespace quarry::chat::internal {

using ExprOr = absl::StatusOr<ExprPtr>;

inline ExprPtr NewExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({}));
    if (Cur().type != TokenType::kEof) return Error(absl::StrCat("unexpected '", Cur().text, "'"));
    return body;
  }

 private:
  const Token& Cur() const { return t_[i_]; }
  const Token& Peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void Next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool IsOp(std::string_view op) const { return Cur().type == TokenType::kOp && Cur().text == op; }
  bool IsName(std::string_view n) const { return Cur().type == TokenType::kName && Cur().text == n; }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view n) {
    if (!IsName(n)) return false;
    Next();
    return true;
  }
  absl::Status Error(std::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat("chat template line ", Cur().line, ": ", std::string(msg)));
  }
  std::string Describe() const {
    switch (Cur().type) {
      case TokenType::kEof: return "end of template";
      case TokenType::kBlockEnd: return "end of statement block";
      case TokenType::kVarEnd: return "end of print statement";
      default: return Cur().text;
    }
  }
  absl::Status ExpectOp(std::string_view op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", std::string(op), "', got '", Describe(), "'"));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != TokenType::kName) return Error(absl::StrCat("expected a name, got '", Describe(), "'"));
    std::string n = Cur().text;
    Next();
    return n;
  }
  absl::Status ExpectBlockEnd() {
    if (Cur().type == TokenType::kBlockEnd) {
      Next();
      return absl::OkStatus();
    }
    return Error(absl::StrCat("expected end of statement block, got '", Describe(), "'"));
  }
  absl::Status Enter() {
    if (++depth_ > kMaxParseDepth) return Error(absl::StrCat("nesting deeper than the limit of ", kMaxParseDepth));
    return absl::OkStatus();
  }

  // Parses until a block tag whose keyword is in `end` (left at that keyword) or EOF.
  absl::StatusOr<Body> Subparse(const std::set<std::string>& end) {
    Body body;
    while (Cur().type != TokenType::kEof) {
      const Token& tok = Cur();
      if (tok.type == TokenType::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = tok.line;
        s->text = tok.text;
        body.push_back(std::move(s));
        Next();
      } else if (tok.type == TokenType::kVarBegin) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kPrint;
        s->line = tok.line;
        QUARRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
        if (Cur().type != TokenType::kVarEnd) {
          return Error(absl::StrCat("expected end of print statement, got '", Describe(), "'"));
        }
        Next();
        body.push_back(std::move(s));
      } else if (tok.type == TokenType::kBlockBegin) {
        Next();
        if (Cur().type == TokenType::kName && end.count(Cur().text)) return body;
        QUARRY_RETURN_IF_ERROR(Enter());
        QUARRY_ASSIGN_OR_RETURN(StmtPtr s, ParseStatement());
        --depth_;
        body.push_back(std::move(s));
      } else {
        return Error(absl::StrCat("unexpected '", Describe(), "'"));
      }
    }
    if (!end.empty()) {
      std::string names;
      for (const auto& e : end) names += (names.empty() ? "'" : " or '") + e + "'";
      return Error(absl::StrCat("unexpected end of template, expected ", names));
    }
    return body;
  }

  absl::StatusOr<StmtPtr> ParseStatement() {
    if (Cur().type != TokenType::kName) return Error("tag name expected");
    std::string kw = Cur().text;
    auto s = std::make_unique<Stmt>();
    s->line = Cur().line;
    Next();
    if (kw == "if") {
      s->kind = Stmt::Kind::kIf;
      while (true) {
        QUARRY_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, false));
        s->exprs.push_back(std::move(cond));
        QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
        QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"elif", "else", "endif"}));
        s->bodies.push_back(std::move(body));
        std::string which = Cur().text;
        Next();
        if (which == "elif") continue;
        if (which == "else") {
          QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
          QUARRY_ASSIGN_OR_RETURN(Body else_body, Subparse({"endif"}));
          s->bodies.push_back(std::move(else_body));
          Next();
        }
        break;
      }
    } else if (kw == "for") {
      s->kind = Stmt::Kind::kFor;
      QUARRY_ASSIGN_OR_RETURN(s->names, ParseTargets());
      if (!SkipName("in")) return Error(absl::StrCat("expected 'in', got '", Describe(), "'"));
      QUARRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false));
      if (SkipName("if")) {
        QUARRY_ASSIGN_OR_RETURN(s->cond, ParseExpression(true));
      }
      if (IsName("recursive")) return Error("recursive for loops are not supported");
      QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
      ++loop_depth_;
      QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"endfor", "else"}));
      --loop_depth_;
      s->bodies.push_back(std::move(body));
      if (Cur().text == "else") {
        Next();
        QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
        QUARRY_ASSIGN_OR_RETURN(Body else_body, Subparse({"endfor"}));
        s->bodies.push_back(std::move(else_body));
      }
      Next();
    } else if (kw == "set") {
      QUARRY_ASSIGN_OR_RETURN(s->names, ParseTargets());
      if (SkipOp(".")) {
        if (s->names.size() != 1) return Error("can't assign to an attribute of a tuple");
        QUARRY_ASSIGN_OR_RETURN(s->attr, ExpectName());
      }
      if (SkipOp("=")) {
        s->kind = Stmt::Kind::kSet;
        QUARRY_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
      } else {
        if (s->names.size() != 1 || !s->attr.empty()) return Error("block set needs a single name");
        s->kind = Stmt::Kind::kSetBlock;
        QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
        QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"endset"}));
        s->bodies.push_back(std::move(body));
        Next();
      }
    } else if (kw == "macro") {
      s->kind = Stmt::Kind::kMacro;
      QUARRY_ASSIGN_OR_RETURN(s->text, ExpectName());
      QUARRY_RETURN_IF_ERROR(ExpectOp("("));
      while (!IsOp(")")) {
        if (!s->names.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
        QUARRY_ASSIGN_OR_RETURN(std::string param, ExpectName());
        s->names.push_back(param);
        if (SkipOp("=")) {
          QUARRY_ASSIGN_OR_RETURN(ExprPtr def, ParseExpression(true));
          s->exprs.push_back(std::move(def));
        } else {
          if (!s->exprs.empty() && s->exprs.back()) return Error("non-default argument follows default argument");
          s->exprs.push_back(nullptr);
        }
      }
      Next();
      QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
      int saved = loop_depth_;
      loop_depth_ = 0;
      QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"endmacro"}));
      loop_depth_ = saved;
      s->bodies.push_back(std::move(body));
      Next();
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) return Error(absl::StrCat("'", kw, "' outside of a loop"));
      s->kind = kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    } else if (kw == "with") {
      s->kind = Stmt::Kind::kWith;
      while (Cur().type != TokenType::kBlockEnd) {
        if (!s->names.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
        QUARRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
        QUARRY_RETURN_IF_ERROR(ExpectOp("="));
        QUARRY_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(true));
        s->names.push_back(n);
        s->exprs.push_back(std::move(e));
      }
      QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
      QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"endwith"}));
      s->bodies.push_back(std::move(body));
      Next();
    } else if (kw == "generation") {
      s->kind = Stmt::Kind::kScope;
      QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
      QUARRY_ASSIGN_OR_RETURN(Body body, Subparse({"endgeneration"}));
      s->bodies.push_back(std::move(body));
      Next();
    } else {
      return Error(absl::StrCat("Encountered unknown or unsupported tag '", kw, "'"));
    }
    QUARRY_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // name | name, name | (name, name)
  absl::StatusOr<std::vector<std::string>> ParseTargets() {
    bool paren = SkipOp("(");
    std::vector<std::string> names;
    do {
      if (paren && IsOp(")")) break;
      QUARRY_ASSIGN_OR_RETURN(std::string n, ExpectName());
      names.push_back(n);
    } while (SkipOp(","));
    if (paren) QUARRY_RETURN_IF_ERROR(ExpectOp(")"));
    return names;
  }

  bool IsTupleEnd() const {
    return Cur().type == TokenType::kVarEnd || Cur().type == TokenType::kBlockEnd || IsOp(")") ||
           Cur().type == TokenType::kEof;
  }

  ExprOr ParseTuple(bool with_condexpr, bool explicit_parens) {
    int line = Cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd()) break;
      QUARRY_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
      items.push_back(std::move(e));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) return Error(absl::StrCat("Expected an expression, got '", Describe(), "'"));
    }
    auto t = NewExpr(Expr::Kind::kTuple, line);
    t->children = std::move(items);
    return t;
  }

  ExprOr ParseExpression(bool with_condexpr) {
    QUARRY_RETURN_IF_ERROR(Enter());
    ExprOr r = with_condexpr ? ParseCondExpr() : ParseOr();
    --depth_;
    return r;
  }

  ExprOr ParseCondExpr() {
    int line = Cur().line;
    QUARRY_ASSIGN_OR_RETURN(ExprPtr expr1, ParseOr());
    while (SkipName("if")) {
      QUARRY_ASSIGN_OR_RETURN(ExprPtr expr2, ParseOr());
      ExprPtr expr3;
      if (SkipName("else")) {
        QUARRY_ASSIGN_OR_RETURN(expr3, ParseCondExpr());
      }
      auto c = NewExpr(Expr::Kind::kCondExpr, line);
      c->children.push_back(std::move(expr2));
      c->children.push_back(std::move(expr1));
      c->children.push_back(std::move(expr3));
      expr1 = std::move(c);
    }
    return expr1;
  }

  ExprPtr Binary(std::string op, ExprPtr l, ExprPtr r, int line) {
    auto b = NewExpr(Expr::Kind::kBinary, line);
    b->name = std::move(op);
    b->children.push_back(std::move(l));
    b->children.push_back(std::move(r));
    return b;
  }

  ExprOr ParseOr() {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      int line = Cur().line;
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      left = Binary("or", std::move(left), std::move(right), line);
    }
    return left;
  }

  ExprOr ParseAnd() {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      int line = Cur().line;
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      left = Binary("and", std::move(left), std::move(right), line);
    }
    return left;
  }

  ExprOr ParseNot() {
    if (IsName("not")) {
      auto u = NewExpr(Expr::Kind::kUnary, Cur().line);
      Next();
      u->name = "not";
      QUARRY_RETURN_IF_ERROR(Enter());
      QUARRY_ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
      --depth_;
      u->children.push_back(std::move(inner));
      return u;
    }
    return ParseCompare();
  }

  ExprOr ParseCompare() {
    int line = Cur().line;
    QUARRY_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == TokenType::kOp &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == "<=" ||
           Cur().text == ">" || Cur().text == ">=")) {
        op = Cur().text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek().type == TokenType::kName && Peek().text == "in") {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = NewExpr(Expr::Kind::kCompare, line);
        cmp->children.push_back(std::move(first));
      }
      QUARRY_ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath1());
      cmp->ops.push_back(op);
      cmp->children.push_back(std::move(rhs));
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprOr ParseMath1() {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      std::string op = Cur().text;
      int line = Cur().line;
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
      left = Binary(op, std::move(left), std::move(right), line);
    }
    return left;
  }

  ExprOr ParseConcat() {
    int line = Cur().line;
    QUARRY_ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
    if (!IsOp("~")) return first;
    auto c = NewExpr(Expr::Kind::kConcat, line);
    c->children.push_back(std::move(first));
    while (SkipOp("~")) {
      QUARRY_ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
      c->children.push_back(std::move(next));
    }
    return c;
  }

  ExprOr ParseMath2() {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Cur().text;
      int line = Cur().line;
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
      left = Binary(op, std::move(left), std::move(right), line);
    }
    return left;
  }

  ExprOr ParsePow() {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (IsOp("**")) {
      int line = Cur().line;
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      left = Binary("**", std::move(left), std::move(right), line);
    }
    return left;
  }

  ExprOr ParseUnary(bool with_filter);
  ExprOr ParsePrimary();
  ExprOr ParsePostfix(ExprPtr node);
  ExprOr ParseFilterExpr(ExprPtr node);
  absl::Status ParseCallArgs(Expr& call);
  ExprOr ParseSubscribed();

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace quarry::chat::internal
