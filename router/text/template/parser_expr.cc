// Expression-level parsing (unary, primary, postfix, filters, tests, call arguments, subscripts).
#include "router/text/template/parser_impl.h"

namespace quarry::chat::internal {

ExprOr Parser::ParseUnary(bool with_filter) {
  QUARRY_RETURN_IF_ERROR(Enter());
  int line = Cur().line;
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    auto u = NewExpr(Expr::Kind::kUnary, line);
    u->name = Cur().text;
    Next();
    QUARRY_ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary(false));
    u->children.push_back(std::move(inner));
    node = std::move(u);
  } else {
    QUARRY_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  QUARRY_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    QUARRY_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  --depth_;
  return node;
}

ExprOr Parser::ParsePrimary() {
  const Token& tok = Cur();
  int line = tok.line;
  if (tok.type == TokenType::kName) {
    auto c = NewExpr(Expr::Kind::kConst, line);
    if (tok.text == "true" || tok.text == "True") {
      c->value = Value(true);
    } else if (tok.text == "false" || tok.text == "False") {
      c->value = Value(false);
    } else if (tok.text == "none" || tok.text == "None") {
      c->value = Value(None{});
    } else {
      c->kind = Expr::Kind::kName;
      c->name = tok.text;
    }
    Next();
    return c;
  }
  if (tok.type == TokenType::kString) {
    std::string s;
    while (Cur().type == TokenType::kString) {
      s += Cur().text;
      Next();
    }
    auto c = NewExpr(Expr::Kind::kConst, line);
    c->value = Value(std::move(s));
    return c;
  }
  if (tok.type == TokenType::kInteger || tok.type == TokenType::kFloat) {
    auto c = NewExpr(Expr::Kind::kConst, line);
    c->value = tok.type == TokenType::kInteger ? Value(tok.int_value) : Value(tok.float_value);
    Next();
    return c;
  }
  if (SkipOp("(")) {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(true, true));
    QUARRY_RETURN_IF_ERROR(ExpectOp(")"));
    return e;
  }
  if (SkipOp("[")) {
    auto l = NewExpr(Expr::Kind::kList, line);
    while (!IsOp("]")) {
      if (!l->children.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("]")) break;
      QUARRY_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
      l->children.push_back(std::move(item));
    }
    Next();
    return l;
  }
  if (SkipOp("{")) {
    auto d = NewExpr(Expr::Kind::kDict, line);
    while (!IsOp("}")) {
      if (!d->children.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("}")) break;
      QUARRY_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
      QUARRY_RETURN_IF_ERROR(ExpectOp(":"));
      QUARRY_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      d->children.push_back(std::move(key));
      d->children.push_back(std::move(value));
    }
    Next();
    return d;
  }
  return Error(absl::StrCat("unexpected '", Describe(), "'"));
}

ExprOr Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    int line = Cur().line;
    if (SkipOp(".")) {
      if (Cur().type == TokenType::kName) {
        auto g = NewExpr(Expr::Kind::kGetattr, line);
        g->name = Cur().text;
        g->children.push_back(std::move(node));
        node = std::move(g);
      } else if (Cur().type == TokenType::kInteger) {
        auto g = NewExpr(Expr::Kind::kGetitem, line);
        auto idx = NewExpr(Expr::Kind::kConst, line);
        idx->value = Value(Cur().int_value);
        g->children.push_back(std::move(node));
        g->children.push_back(std::move(idx));
        node = std::move(g);
      } else {
        return Error("expected name or number after '.'");
      }
      Next();
    } else if (SkipOp("[")) {
      std::vector<ExprPtr> args;
      while (!IsOp("]")) {
        if (!args.empty()) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
        QUARRY_ASSIGN_OR_RETURN(ExprPtr a, ParseSubscribed());
        args.push_back(std::move(a));
      }
      Next();
      auto g = NewExpr(Expr::Kind::kGetitem, line);
      g->children.push_back(std::move(node));
      if (args.size() == 1) {
        g->children.push_back(std::move(args[0]));
      } else {
        auto t = NewExpr(Expr::Kind::kTuple, line);
        t->children = std::move(args);
        g->children.push_back(std::move(t));
      }
      node = std::move(g);
    } else if (IsOp("(")) {
      auto c = NewExpr(Expr::Kind::kCall, line);
      c->children.push_back(std::move(node));
      QUARRY_RETURN_IF_ERROR(ParseCallArgs(*c));
      node = std::move(c);
    } else {
      return node;
    }
  }
}

ExprOr Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    int line = Cur().line;
    if (SkipOp("|")) {
      QUARRY_ASSIGN_OR_RETURN(std::string name, ExpectName());
      while (SkipOp(".")) {
        QUARRY_ASSIGN_OR_RETURN(std::string more, ExpectName());
        name += "." + more;
      }
      auto f = NewExpr(Expr::Kind::kFilter, line);
      f->name = name;
      f->children.push_back(std::move(node));
      if (IsOp("(")) QUARRY_RETURN_IF_ERROR(ParseCallArgs(*f));
      node = std::move(f);
    } else if (IsName("is")) {
      Next();
      auto t = NewExpr(Expr::Kind::kTest, line);
      t->negated = SkipName("not");
      QUARRY_ASSIGN_OR_RETURN(t->name, ExpectName());
      while (SkipOp(".")) {
        QUARRY_ASSIGN_OR_RETURN(std::string more, ExpectName());
        t->name += "." + more;
      }
      t->children.push_back(std::move(node));
      if (IsOp("(")) {
        QUARRY_RETURN_IF_ERROR(ParseCallArgs(*t));
      } else if ((Cur().type == TokenType::kName || Cur().type == TokenType::kString ||
                  Cur().type == TokenType::kInteger || Cur().type == TokenType::kFloat || IsOp("[") ||
                  IsOp("{")) &&
                 !IsName("else") && !IsName("or") && !IsName("and")) {
        if (IsName("is")) return Error("You cannot chain multiple tests with is");
        QUARRY_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
        QUARRY_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
        t->children.push_back(std::move(arg));
      }
      node = std::move(t);
    } else if (IsOp("(")) {
      auto c = NewExpr(Expr::Kind::kCall, line);
      c->children.push_back(std::move(node));
      QUARRY_RETURN_IF_ERROR(ParseCallArgs(*c));
      node = std::move(c);
    } else {
      return node;
    }
  }
}

absl::Status Parser::ParseCallArgs(Expr& call) {
  QUARRY_RETURN_IF_ERROR(ExpectOp("("));
  bool first = true;
  while (!IsOp(")")) {
    if (!first) QUARRY_RETURN_IF_ERROR(ExpectOp(","));
    first = false;
    if (IsOp(")")) break;
    if (IsOp("*") || IsOp("**")) return Error("*args and **kwargs in calls are not supported");
    if (Cur().type == TokenType::kName && Peek().type == TokenType::kOp && Peek().text == "=") {
      std::string key = Cur().text;
      Next();
      Next();
      QUARRY_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      call.kwarg_names.push_back(key);
      call.children.push_back(std::move(value));
    } else {
      if (!call.kwarg_names.empty()) return Error("positional argument follows keyword argument");
      QUARRY_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      call.children.push_back(std::move(value));
    }
  }
  Next();
  return absl::OkStatus();
}

ExprOr Parser::ParseSubscribed() {
  int line = Cur().line;
  std::vector<ExprPtr> args;
  if (SkipOp(":")) {
    args.push_back(nullptr);
  } else {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr node, ParseExpression(true));
    if (!IsOp(":")) return node;
    Next();
    args.push_back(std::move(node));
  }
  if (IsOp(":")) {
    args.push_back(nullptr);
  } else if (!IsOp("]") && !IsOp(",")) {
    QUARRY_ASSIGN_OR_RETURN(ExprPtr stop, ParseExpression(true));
    args.push_back(std::move(stop));
  } else {
    args.push_back(nullptr);
  }
  if (SkipOp(":")) {
    if (!IsOp("]") && !IsOp(",")) {
      QUARRY_ASSIGN_OR_RETURN(ExprPtr step, ParseExpression(true));
      args.push_back(std::move(step));
    } else {
      args.push_back(nullptr);
    }
  } else {
    args.push_back(nullptr);
  }
  auto s = NewExpr(Expr::Kind::kSlice, line);
  s->children = std::move(args);
  return s;
}

}  // namespace quarry::chat::internal
