// Router output processing with the real Granite tokenizer: tool calls parsed from streamed tokens (whole and
// malformed blocks), stop strings over detokenized text, FIM prompt construction.
#include "router/server/output_pipeline.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "router/text/tokenizer/fim_prompt.h"

namespace quarry {
namespace {

class OutputPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = Tokenizer::Load("assets/tokenizer");
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = t->release();
  }
  static void TearDownTestSuite() { delete tok_; }

  // Streams `text` token by token through a pipeline; returns the merged result.
  OutputPipeline::Delta Stream(const std::string& text, PreparedRequest p) {
    auto ids = tok_->Encode(text, {});
    EXPECT_TRUE(ids.ok());
    OutputPipeline pipe(*tok_, p);
    OutputPipeline::Delta all;
    auto merge = [&](OutputPipeline::Delta d) {
      all.text += d.text;
      for (auto& c : d.tool_calls) all.tool_calls.push_back(c);
      for (auto& e : d.tool_call_errors) all.tool_call_errors.push_back(e);
      all.stopped |= d.stopped;
      if (d.stopped) all.matched_stop = d.matched_stop;
    };
    for (int32_t id : *ids) {
      auto d = pipe.Push({&id, 1});
      EXPECT_TRUE(d.ok());
      merge(*d);
      if (all.stopped) return all;
    }
    merge(pipe.Finish());
    return all;
  }

  static Tokenizer* tok_;
};

Tokenizer* OutputPipelineTest::tok_ = nullptr;

TEST_F(OutputPipelineTest, ToolCallsFromStreamedTokens) {
  PreparedRequest p;
  p.id = "r1";
  p.parse_tool_calls = true;
  const std::string out =
      "<tool_call>\n{\"name\": \"get_current_weather\", \"arguments\": {\"city\": \"Boston\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_current_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  OutputPipeline::Delta d = Stream(out, p);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_current_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\":\"Boston\"}");
  EXPECT_EQ(d.tool_calls[1].arguments, "{\"city\":\"Paris\"}");
  EXPECT_EQ(d.tool_calls[0].id, "call_r1_0");
  EXPECT_EQ(d.tool_calls[1].id, "call_r1_1");
  EXPECT_EQ(d.text, "");
  EXPECT_TRUE(d.tool_call_errors.empty());
}

TEST_F(OutputPipelineTest, MalformedToolCallComesBackAsContentWithAnError) {
  PreparedRequest p;
  p.id = "r2";
  p.parse_tool_calls = true;
  const std::string out = "Let me check. <tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call>";
  OutputPipeline::Delta d = Stream(out, p);
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.tool_call_errors.size(), 1u);
  EXPECT_NE(d.text.find("{oops}"), std::string::npos) << d.text;
  EXPECT_EQ(d.text.rfind("Let me check. ", 0), 0u);
}

TEST_F(OutputPipelineTest, WithoutToolParsingTagsAreText) {
  PreparedRequest p;
  const std::string out = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
  OutputPipeline::Delta d = Stream(out, p);
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.text, out);
}

TEST_F(OutputPipelineTest, StopStringOnDetokenizedText) {
  PreparedRequest p;
  p.stop = {"STOP"};
  OutputPipeline::Delta d = Stream("Hello world STOP and more", p);
  EXPECT_TRUE(d.stopped);
  EXPECT_EQ(d.text, "Hello world ");
  EXPECT_EQ(d.matched_stop, "STOP");
}

TEST_F(OutputPipelineTest, FimPromptUsesControlTokensAndPlainText) {
  auto ids = BuildFimPrompt(*tok_, "def add(a, b):\n    return ", "\n\nprint(<|fim_middle|>)");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->front(), 100258);  // <|fim_prefix|>
  EXPECT_EQ(ids->back(), 100259);   // <|fim_middle|>
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 100260), 1);  // <|fim_suffix|>
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 100259), 1);  // the suffix's "<|fim_middle|>" stays text
  auto text = tok_->Decode(*ids, /*skip_special_tokens=*/false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\nprint(<|fim_middle|>)<|fim_middle|>");
}

}  // namespace
}  // namespace quarry
