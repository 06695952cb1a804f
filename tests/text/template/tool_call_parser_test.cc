// Tool-call parser: whole text, malformed blocks, and streaming equivalence for every split.
#include "router/text/template/tool_call_parser.h"

#include <gtest/gtest.h>

namespace quarry::chat {
namespace {

TEST(ToolCallParser, ExtractsCallsAndContent) {
  auto r = ParseToolCalls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_current_weather\", \"arguments\": {\"city\": \"Boston\", "
      "\"units\": [1, 2.5]}}\n</tool_call>\n<tool_call>\n{\"name\": \"noop\"}\n</tool_call>");
  EXPECT_EQ(r.content, "Let me check.\n");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].id, "call_0");
  EXPECT_EQ(r.tool_calls[0].name, "get_current_weather");
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\":\"Boston\",\"units\":[1,2.5]}");
  EXPECT_EQ(r.tool_calls[1].id, "call_1");
  EXPECT_EQ(r.tool_calls[1].arguments, "{}");
  EXPECT_TRUE(r.errors.empty());
}

TEST(ToolCallParser, PlainTextAndStringArguments) {
  auto r = ParseToolCalls("no calls here < tool_call > <tool_");
  EXPECT_EQ(r.content, "no calls here < tool_call > <tool_");
  EXPECT_TRUE(r.tool_calls.empty());
  r = ParseToolCalls("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"a\": 1}");
}

TEST(ToolCallParser, MalformedBlocksStayContent) {
  auto r = ParseToolCalls("a<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>b");
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.content, "a<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>b");
  ASSERT_EQ(r.errors.size(), 1u);
  r = ParseToolCalls("<tool_call>[1, 2]</tool_call><tool_call>{\"arguments\": {}}</tool_call>");
  EXPECT_EQ(r.errors.size(), 2u);
  EXPECT_TRUE(r.tool_calls.empty());
  r = ParseToolCalls("x<tool_call>\n{\"name\": \"f\"");
  EXPECT_EQ(r.content, "x<tool_call>\n{\"name\": \"f\"");
  EXPECT_EQ(r.errors.size(), 1u);
}

TEST(ToolCallParser, StreamingMatchesWholeTextForEverySplit) {
  const std::vector<std::string> texts = {
      "Sure.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": \"v<\"}}\n</tool_call>\n<tool_call>\n"
      "{\"name\": \"b\", \"arguments\": {}}\n</tool_call>\n",
      "<tool_call>\n{bad json}\n</tool_call> tail <tool",
      "text with < and <t and <tool_call but no close",
      "<tool_call>{\"name\": \"x\"}</tool_call>  after <tool_call>{\"name\": \"y\"}</tool_call>",
  };
  for (const std::string& text : texts) {
    ToolCallDelta whole = ParseToolCalls(text);
    for (size_t a = 0; a <= text.size(); ++a) {
      for (size_t b = a; b <= text.size(); b += 7) {
        ToolCallStreamParser p;
        std::string content;
        std::vector<ParsedToolCall> calls;
        for (auto piece : {text.substr(0, a), text.substr(a, b - a), text.substr(b)}) {
          ToolCallDelta d = p.Push(piece);
          // Never emits a prefix of "<tool_call>" that later turns out to be a tag.
          content += d.content;
          EXPECT_EQ(whole.content.compare(0, content.size(), content), 0) << "split " << a << "," << b;
          calls.insert(calls.end(), d.tool_calls.begin(), d.tool_calls.end());
        }
        ToolCallDelta d = p.Finish();
        content += d.content;
        calls.insert(calls.end(), d.tool_calls.begin(), d.tool_calls.end());
        EXPECT_EQ(content, whole.content) << "split " << a << "," << b;
        ASSERT_EQ(calls.size(), whole.tool_calls.size());
        for (size_t i = 0; i < calls.size(); ++i) {
          EXPECT_EQ(calls[i].name, whole.tool_calls[i].name);
          EXPECT_EQ(calls[i].arguments, whole.tool_calls[i].arguments);
          EXPECT_EQ(calls[i].id, whole.tool_calls[i].id);
        }
      }
    }
  }
}

TEST(ToolCallParser, HoldsBackPartialTag) {
  ToolCallStreamParser p("req7_");
  EXPECT_EQ(p.Push("Hi <tool").content, "Hi ");
  auto d = p.Push("_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].id, "req7_0");
  EXPECT_EQ(p.Push("\n").content, "");
  EXPECT_EQ(p.Finish().content, "");
}

}  // namespace
}  // namespace quarry::chat
