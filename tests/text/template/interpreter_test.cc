// Interpreter details with hand-written expectations (jinja2 behaviour checked by hand; the differential test
// covers the bulk of the language against jinja2 itself).
#include <gtest/gtest.h>

#include "router/text/template/chat_template.h"

namespace quarry::chat {
namespace {

std::string Render(const std::string& src, nlohmann::ordered_json vars = nlohmann::ordered_json::object()) {
  auto t = ChatTemplate::FromString(src);
  if (!t.ok()) return "PARSE ERROR: " + std::string(t.status().message());
  RenderInput in;
  in.extra = std::move(vars);
  auto r = t->Render(in);
  if (!r.ok()) return "ERROR: " + std::string(r.status().message());
  return *r;
}

TEST(Interpreter, WhitespaceControl) {
  EXPECT_EQ(Render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
  EXPECT_EQ(Render("x  {{- 1 -}}  y"), "x1y");
  EXPECT_EQ(Render("x  {%- if true -%}  y  {%- endif %}"), "xy");
  EXPECT_EQ(Render("  {%+ if true %}k{% endif +%}\nz"), "  k\nz");
  EXPECT_EQ(Render("a {# c #}\nb"), "a b");
  EXPECT_EQ(Render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(Interpreter, ScopingAndControlFlow) {
  EXPECT_EQ(Render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(Render("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"), "2");
  EXPECT_EQ(Render("{% for i in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "012");
  EXPECT_EQ(Render("{% for i in range(4) if i is even %}{{ loop.index }}{{ i }}{% endfor %}"), "1022");
  EXPECT_EQ(Render("{% generation %}g{% endgeneration %}"), "g");
  EXPECT_EQ(Render("{% macro m(a, b=a ~ '!') %}{{ b }}{% endmacro %}{{ m('x') }}"), "x!");
}

TEST(Interpreter, ValuesAndUndefined) {
  EXPECT_EQ(Render("{{ m.content is string }}|{{ m.missing }}|{{ m.missing is defined }}",
                   {{"m", {{"content", "hi"}}}}),
            "True||False");
  EXPECT_EQ(Render("{{ x|tojson }}", {{"x", {{"b", 1.0}, {"a", {1, 2}}}}}), "{\"b\": 1.0, \"a\": [1, 2]}");
  EXPECT_EQ(Render("{{ 'ab'[5] is defined }}{{ [1][-1] }}{{ 'héllo'|length }}"), "False15");
  EXPECT_NE(Render("{{ nope.x }}").find("ERROR: chat template line 1"), std::string::npos);
  EXPECT_NE(Render("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
  EXPECT_NE(Render("{{ strftime_now('%Y') }}").find("20"), std::string::npos);
}

TEST(Interpreter, SyntaxErrors) {
  EXPECT_NE(Render("{% for %}").find("PARSE ERROR: chat template line 1"), std::string::npos);
  EXPECT_NE(Render("a\n{{ 1 + }}").find("line 2"), std::string::npos);
  EXPECT_NE(Render("{% break %}").find("outside of a loop"), std::string::npos);
  EXPECT_NE(Render("{% include 'x' %}").find("unsupported tag"), std::string::npos);
  EXPECT_NE(Render("{{ 'abc }}").find("PARSE ERROR"), std::string::npos);
  EXPECT_NE(Render("{# open").find("comment"), std::string::npos);
}

}  // namespace
}  // namespace quarry::chat
