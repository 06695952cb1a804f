// quarry-bench datasets through the real Granite tokenizer (assets/tokenizer): random prompts of exact token
// lengths (range ratio, shared prefix, seeds), ShareGPT filters and oversampling, custom and tool-chat JSONL
// with line-numbered errors.
#include "bench/quarry_bench/dataset.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace quarry::bench {
namespace {

const Tokenizer& Granite() {
  static const Tokenizer* tok = [] {
    auto t = Tokenizer::Load(QUARRY_SOURCE_DIR "/assets/tokenizer");
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? t->release() : nullptr;
  }();
  return *tok;
}

size_t EncodedLen(const std::string& text) {
  auto ids = Granite().Encode(text, {.parse_special = true});
  EXPECT_TRUE(ids.ok());
  return ids.ok() ? ids->size() : 0;
}

TEST(RandomDataset, ExactTokenCounts) {
  RandomOptions o;
  o.input_len = 128;
  o.output_len = 32;
  o.seed = 1;
  RandomStats stats;
  auto ds = RandomDataset(Granite(), o, 16, &stats);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->size(), 16u);
  EXPECT_EQ(stats.token_mismatch, 0);
  std::set<std::string> distinct;
  for (const SampleRequest& r : *ds) {
    EXPECT_EQ(r.prompt_len, 128);
    EXPECT_EQ(EncodedLen(r.prompt), 128u);  // what the router will count
    auto ids = Granite().Encode(r.prompt, {.parse_special = true});
    EXPECT_EQ(*ids, r.prompt_ids);
    EXPECT_EQ(r.expected_output_len, 32);
    for (int32_t id : r.prompt_ids) EXPECT_FALSE(Granite().IsSpecial(id)) << id;
    distinct.insert(r.prompt);
  }
  EXPECT_EQ(distinct.size(), 16u);
}

TEST(RandomDataset, RangeRatioBoundsAndSeeds) {
  RandomOptions o;
  o.input_len = 100;
  o.output_len = 20;
  o.range_ratio = 0.25;
  o.seed = 5;
  auto ds = RandomDataset(Granite(), o, 60);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::set<int> in_lens, out_lens;
  for (const SampleRequest& r : *ds) {
    EXPECT_GE(r.prompt_len, 75);
    EXPECT_LE(r.prompt_len, 125);
    EXPECT_EQ(EncodedLen(r.prompt), static_cast<size_t>(r.prompt_len));
    EXPECT_GE(r.expected_output_len, 15);
    EXPECT_LE(r.expected_output_len, 25);
    in_lens.insert(r.prompt_len);
    out_lens.insert(r.expected_output_len);
  }
  EXPECT_GT(in_lens.size(), 10u);
  EXPECT_GT(out_lens.size(), 5u);
  auto again = RandomDataset(Granite(), o, 60);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < ds->size(); ++i) EXPECT_EQ((*again)[i].prompt, (*ds)[i].prompt);
  o.seed = 6;
  auto other = RandomDataset(Granite(), o, 60);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].prompt, (*ds)[0].prompt);

  o.range_ratio = 1.0;
  EXPECT_EQ(RandomDataset(Granite(), o, 1).status().code(), absl::StatusCode::kInvalidArgument);
  o.range_ratio = 0;
  o.output_len = 0;
  EXPECT_EQ(RandomDataset(Granite(), o, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RandomDataset, SharedPrefix) {
  RandomOptions o;
  o.input_len = 48;
  o.output_len = 8;
  o.prefix_len = 32;
  o.seed = 2;
  auto ds = RandomDataset(Granite(), o, 6);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::string common = (*ds)[0].prompt;
  for (const SampleRequest& r : *ds) {
    EXPECT_EQ(r.prompt_len, 32 + 48);
    EXPECT_EQ(EncodedLen(r.prompt), 80u);
    size_t n = 0;
    while (n < common.size() && n < r.prompt.size() && common[n] == r.prompt[n]) ++n;
    common.resize(n);
  }
  // The shared prefix survives decode -> re-encode except perhaps a token merged at its end.
  EXPECT_GE(EncodedLen(common), 30u) << common;
  // Without a prefix, prompts start differently.
  o.prefix_len = 0;
  auto plain = RandomDataset(Granite(), o, 2);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE((*plain)[0].prompt.substr(0, 8), (*plain)[1].prompt.substr(0, 8));
}

std::string ShareGptFixture() {
  std::string long_reply;
  for (int i = 0; i < 2100; ++i) long_reply += " stone";
  return R"([
    {"id": "a", "conversations": [{"from": "human", "value": "Explain how granite forms in the crust."},
                                  {"from": "gpt", "value": "Granite forms when magma cools slowly underground."}]},
    {"id": "b", "conversations": [{"from": "human", "value": "Only one turn here, so it is skipped."}]},
    {"id": "c", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there, how are you?"}]},
    {"id": "d", "conversations": [{"from": "human", "value": "Write a long essay about stones please."},
                                  {"from": "gpt", "value": ")" + long_reply + R"("}]},
    {"id": "e", "conversations": [{"from": "human", "value": "What is the hardness of quartz on the Mohs scale?"},
                                  {"from": "gpt", "value": "Quartz has a Mohs hardness of 7."},
                                  {"from": "human", "value": "And feldspar?"}]},
    {"id": "f", "conversations": [{"from": "human", "value": "Name three igneous rocks, with one example use each."},
                                  {"from": "gpt", "value": "Yes."}]},
    {"id": "g"},
    {"id": "h", "conversations": [{"from": "human", "value": "Is basalt denser than granite, and why is that so?"},
                                  {"from": "gpt", "value": "Yes: basalt has more iron and magnesium minerals."}]}
  ])";
}

TEST(ShareGpt, FirstTwoTurnsFiltersAndOversampling) {
  FileOptions o;
  o.seed = 0;
  auto ds = ShareGptFromJson(ShareGptFixture(), "fixture.json", Granite(), o, 5);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->size(), 5u);  // 3 valid (a, e, h) oversampled to 5
  std::set<std::string> prompts;
  for (const SampleRequest& r : *ds) {
    prompts.insert(r.prompt);
    EXPECT_EQ(static_cast<size_t>(r.prompt_len), EncodedLen(r.prompt));
    EXPECT_GE(r.expected_output_len, 4);
  }
  EXPECT_EQ(prompts, (std::set<std::string>{"Explain how granite forms in the crust.",
                                            "What is the hardness of quartz on the Mohs scale?",
                                            "Is basalt denser than granite, and why is that so?"}));
  // The reference completion's length is the output length.
  for (const SampleRequest& r : *ds) {
    if (r.prompt[0] == 'W') {
      EXPECT_EQ(static_cast<size_t>(r.expected_output_len), EncodedLen("Quartz has a Mohs hardness of 7."));
    }
  }
  // --sharegpt-output-len overrides it and skips the minimum-output check ("Yes." passes; the long one too).
  o.output_len = 2;
  ds = ShareGptFromJson(ShareGptFixture(), "fixture.json", Granite(), o, 10);
  ASSERT_TRUE(ds.ok());
  prompts.clear();
  for (const SampleRequest& r : *ds) {
    prompts.insert(r.prompt);
    EXPECT_EQ(r.expected_output_len, 2);
  }
  EXPECT_EQ(prompts.size(), 5u);  // a, d, e, f, h
}

TEST(ShareGpt, BadFiles) {
  FileOptions o;
  auto bad = ShareGptFromJson("[{]", "x.json", Granite(), o, 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("x.json"), std::string::npos);
  EXPECT_EQ(ShareGptFromJson(R"({"a": 1})", "x.json", Granite(), o, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShareGptFromJson("[]", "x.json", Granite(), o, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShareGptDataset("/nonexistent/sharegpt.json", Granite(), o, 1).status().code(), absl::StatusCode::kNotFound);
}

TEST(CustomJsonl, PromptsOutputLengthsAndLineErrors) {
  FileOptions o;
  o.shuffle = false;
  o.output_len = 64;
  const std::string text =
      "{\"prompt\": \"Describe marble.\", \"output_tokens\": 12}\n"
      "\n"
      "{\"prompt\": \"Describe slate.\"}\r\n"
      "{\"prompt\": \"Describe shale.\", \"max_tokens\": 7}";
  auto ds = CustomFromJsonl(text, "c.jsonl", Granite(), o, 3);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->size(), 3u);
  EXPECT_EQ((*ds)[0].prompt, "Describe marble.");
  EXPECT_EQ((*ds)[0].expected_output_len, 12);
  EXPECT_EQ((*ds)[1].expected_output_len, 64);
  EXPECT_EQ((*ds)[2].expected_output_len, 7);
  EXPECT_EQ(static_cast<size_t>((*ds)[1].prompt_len), EncodedLen("Describe slate."));
  EXPECT_EQ(CustomFromJsonl(text, "c.jsonl", Granite(), o, 2)->size(), 2u);

  auto bad = CustomFromJsonl("{\"prompt\": \"ok\"}\n{\"prompt\": \"ok\"}\n{not json}\n", "c.jsonl", Granite(), o, 3);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bad.status().message()), "c.jsonl:3: not valid JSON");
  bad = CustomFromJsonl("{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n", "c.jsonl", Granite(), o, 3);
  EXPECT_EQ(std::string(bad.status().message()), "c.jsonl:2: missing string field \"prompt\"");
  bad = CustomFromJsonl("{\"prompt\": \"ok\", \"output_tokens\": 0}\n", "c.jsonl", Granite(), o, 3);
  EXPECT_EQ(std::string(bad.status().message()), "c.jsonl:1: \"output_tokens\" must be an integer >= 1");
  bad = CustomFromJsonl("[1, 2]\n", "c.jsonl", Granite(), o, 3);
  EXPECT_EQ(std::string(bad.status().message()), "c.jsonl:1: expected a JSON object");
  EXPECT_EQ(CustomFromJsonl("\n\n", "c.jsonl", Granite(), o, 3).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ToolChats, SyntheticAndJsonl) {
  FileOptions o;
  o.seed = 4;
  auto ds = ToolChatDataset("", o, 12);
  ASSERT_TRUE(ds.ok());
  ASSERT_EQ(ds->size(), 12u);
  for (const SampleRequest& r : *ds) {
    ASSERT_TRUE(r.messages.is_array());
    EXPECT_EQ(r.messages[0]["role"], "user");
    EXPECT_EQ(r.tools.size(), 4u);
    EXPECT_EQ(r.expected_output_len, 128);
    EXPECT_EQ(r.prompt_len, 0);  // rendered by the server: its usage counts the prompt
  }
  const std::string jsonl =
      R"({"messages": [{"role": "user", "content": "Weather in Bern?"}], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}], "max_tokens": 40})"
      "\n"
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})";
  o.shuffle = false;
  ds = ToolChatsFromJsonl(jsonl, "t.jsonl", o, 2);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)[0].tools[0]["name"], "get_weather");
  EXPECT_EQ((*ds)[0].tools[0]["parameters"]["type"], "object");
  EXPECT_EQ((*ds)[0].expected_output_len, 40);
  EXPECT_EQ((*ds)[1].messages.size(), 2u);
  EXPECT_EQ((*ds)[1].prompt, "Hi");
  auto bad = ToolChatsFromJsonl(R"({"messages": []})", "t.jsonl", o, 1);
  EXPECT_EQ(std::string(bad.status().message()), "t.jsonl:1: \"messages\" must be a non-empty array");
  bad = ToolChatsFromJsonl("{\"messages\": [{\"content\": \"x\"}]}", "t.jsonl", o, 1);
  EXPECT_EQ(std::string(bad.status().message()), "t.jsonl:1: every message needs a string \"role\"");
  bad = ToolChatsFromJsonl(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"description": "no name"}]})",
                           "t.jsonl", o, 1);
  EXPECT_EQ(std::string(bad.status().message()), "t.jsonl:1: every tool needs a string \"name\"");
}

TEST(IsValidSequence, VllmFilters) {
  EXPECT_TRUE(IsValidSequence(4, 4, false));
  EXPECT_FALSE(IsValidSequence(3, 100, false));
  EXPECT_FALSE(IsValidSequence(100, 3, false));
  EXPECT_TRUE(IsValidSequence(100, 3, true));
  EXPECT_FALSE(IsValidSequence(1025, 10, false));
  EXPECT_FALSE(IsValidSequence(1024, 1025, false));
  EXPECT_TRUE(IsValidSequence(1024, 1024, false));
}

}  // namespace
}  // namespace quarry::bench
