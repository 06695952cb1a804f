// ChatTemplate API: the spec §8.4 reference renderings, loading paths, input validation, errors and limits.
#include "router/text/template/chat_template.h"

#include <gtest/gtest.h>

namespace quarry::chat {
namespace {

using Json = nlohmann::ordered_json;

const char* kConfig = "assets/tokenizer/tokenizer_config.json";

Json WeatherTool() {
  return Json::parse(R"({"type": "function", "function": {"name": "get_current_weather",
    "description": "Get the current weather for a specified city.", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "description": "Name of the city"}}, "required": ["city"]}}})");
}

const std::string kToolsBlock =
    "You are a helpful assistant with access to the following tools. You may call one or more tools to assist "
    "with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"get_current_weather\", \"description\": \"Get the current "
    "weather for a specified city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
    "\"string\", \"description\": \"Name of the city\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each tool "
    "call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>. If a tool does not "
    "exist in the provided list of tools, notify the user that you do not have the ability to fulfill the request.";

ChatTemplate Granite() {
  auto t = ChatTemplate::FromTokenizerConfig(kConfig);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(ChatTemplate, SpecUserOnly) {
  RenderInput in;
  in.messages = Json::parse(R"([{"role": "user", "content": "Please list one IBM Research laboratory located in the United States. You should only output its name and location."}])");
  in.add_generation_prompt = true;
  auto out = Granite().Render(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|start_of_role|>system<|end_of_role|>You are a helpful assistant. Please ensure responses are "
            "professional, accurate, and safe.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Please list one "
            "IBM Research laboratory located in the United States. You should only output its name and "
            "location.<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
}

TEST(ChatTemplate, SpecOneTool) {
  RenderInput in;
  in.messages = Json::parse(R"([{"role": "user", "content": "What's the weather like in Boston right now?"}])");
  in.tools = Json::array({WeatherTool()});
  in.add_generation_prompt = true;
  auto out = Granite().Render(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<|start_of_role|>system<|end_of_role|>" + kToolsBlock +
                      "<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>What's the weather like in Boston "
                      "right now?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>");
}

TEST(ChatTemplate, SpecToolCallsAndResponses) {
  RenderInput in;
  in.messages = Json::parse(R"([
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Weather in Boston and Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "get_current_weather", "arguments": {"city": "Boston"}}},
      {"type": "function", "function": {"name": "get_current_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "content": "Boston: sunny, 30C"},
    {"role": "tool", "content": "Paris: rain, 12C"}])");
  in.tools = Json::array({WeatherTool()});
  in.add_generation_prompt = true;
  auto out = Granite().Render(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|start_of_role|>system<|end_of_role|>You are a weather bot.\n\n" + kToolsBlock +
                "<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Weather in Boston and Paris?<|end_of_text|>\n"
                "<|start_of_role|>assistant<|end_of_role|><tool_call>\n{\"name\": \"get_current_weather\", "
                "\"arguments\": {\"city\": \"Boston\"}}\n</tool_call>\n<tool_call>\n{\"name\": "
                "\"get_current_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|end_of_text|>\n"
                "<|start_of_role|>user<|end_of_role|>\n<tool_response>\nBoston: sunny, 30C\n</tool_response>\n"
                "<tool_response>\nParis: rain, 12C\n</tool_response><|end_of_text|>\n"
                "<|start_of_role|>assistant<|end_of_role|>");
}

TEST(ChatTemplate, LoadingPathsAgree) {
  auto from_file = ChatTemplate::FromFile("assets/chat_template/granite-4.0-h.jinja");
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->source(), Granite().source());
  EXPECT_EQ(Granite().source().size(), 6418u);
  EXPECT_EQ(Granite().default_variables().value("eos_token", ""), "<|end_of_text|>");
  EXPECT_EQ(ChatTemplate::FromFile("no/such/file.jinja").status().code(), absl::StatusCode::kNotFound);
}

TEST(ChatTemplate, SpecialTokensAndExtraVariables) {
  auto t = ChatTemplate::FromString("{{ eos_token }}|{{ flag }}|{{ tools }}|{{ documents }}");
  ASSERT_TRUE(t.ok());
  RenderInput in;
  in.extra = {{"flag", true}};
  EXPECT_EQ(*t->Render(in), "|True|None|None");
  auto g = Granite();
  auto t2 = ChatTemplate::FromString("{{ x }}");
  ASSERT_TRUE(t2.ok());
}

TEST(ChatTemplate, RejectsBadInputShapes) {
  RenderInput in;
  in.messages = Json::object();
  EXPECT_EQ(Granite().Render(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.messages = Json::array({1});
  EXPECT_EQ(Granite().Render(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.messages = Json::array({{{"role", "user"}, {"content", "x"}}});
  in.tools = Json::object();
  EXPECT_EQ(Granite().Render(in).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplate, ErrorsNameTheTemplateLine) {
  auto syntax = ChatTemplate::FromString("line1\n{% if x %}\nno end");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(syntax.status().message().find("endif"), std::string::npos) << syntax.status();

  auto t = ChatTemplate::FromString("a\nb\n{{ raise_exception('Conversation roles must alternate') }}");
  ASSERT_TRUE(t.ok());
  auto r = t->Render({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("Conversation roles must alternate"), std::string::npos);

  auto u = ChatTemplate::FromString("\n\n\n{{ messages[5].role }}");
  ASSERT_TRUE(u.ok());
  auto ur = u->Render({});
  ASSERT_FALSE(ur.ok());
  EXPECT_NE(ur.status().message().find("line 4"), std::string::npos) << ur.status();
}

TEST(ChatTemplate, LimitsStopRunawayTemplates) {
  auto loops = ChatTemplate::FromString(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  ASSERT_TRUE(loops.ok());
  auto r = loops->Render({});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(r.status().message().find("max_loop_iterations"), std::string::npos);

  auto grow = ChatTemplate::FromString("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}");
  ASSERT_TRUE(grow.ok());
  r = grow->Render({});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(r.status().message().find("max_output_bytes"), std::string::npos);

  auto repeat = ChatTemplate::FromString("{{ 'x' * 1000000000000 }}");
  ASSERT_TRUE(repeat.ok());
  EXPECT_EQ(repeat->Render({}).status().code(), absl::StatusCode::kResourceExhausted);

  auto output = ChatTemplate::FromString("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}");
  ASSERT_TRUE(output.ok());
  RenderLimits small;
  small.max_output_bytes = 1 << 20;
  output->set_limits(small);
  r = output->Render({});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();

  auto recurse = ChatTemplate::FromString("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_TRUE(recurse.ok());
  r = recurse->Render({});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(r.status().message().find("max_call_depth"), std::string::npos);

  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  auto nested = ChatTemplate::FromString(deep);
  EXPECT_EQ(nested.status().code(), absl::StatusCode::kInvalidArgument);

  auto big_range = ChatTemplate::FromString("{{ range(200000)|length }}");
  ASSERT_TRUE(big_range.ok());
  EXPECT_FALSE(big_range->Render({}).ok());
}

}  // namespace
}  // namespace quarry::chat
