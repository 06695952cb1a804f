// Tokenizer loading of general Hugging Face files (merges as strings or pairs, Split behaviours, ByteLevel with
// the GPT-2 regex and prefix space), malformed files as INVALID_ARGUMENT, and streaming detokenization.
#include <random>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/text/tokenizer/bpe.h"
#include "router/text/tokenizer/incremental_decoder.h"
#include "router/text/tokenizer/tokenizer.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

using Json = nlohmann::json;

std::string ByteChar(uint8_t b) {
  std::string s;
  AppendCodePoint(ByteToUnicode(b), &s);
  return s;
}

// A small byte-level BPE tokenizer.json: 256 byte tokens, then merges h+e, l+l, he+ll, hell+o, Ġ+w.
Json MiniTokenizer(bool merges_as_pairs = false) {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(static_cast<uint8_t>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}};
  Json m = Json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next++;
    m.push_back(merges_as_pairs ? Json::array({a, b}) : Json(a + " " + b));
  }
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array({{{"id", 300}, {"content", "<|eot|>"}, {"special", true}},
                                   {{"id", 301}, {"content", "<tag>"}, {"special", false}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}};
  return j;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(const Json& j) {
  return Tokenizer::FromJson(j.dump(), "mini/tokenizer.json");
}

std::vector<int32_t> Ids(const Tokenizer& t, std::string_view text) {
  auto ids = t.Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(TokenizerFiles, MergesAsStringsOrPairs) {
  for (bool pairs : {false, true}) {
    auto t = FromJson(MiniTokenizer(pairs));
    ASSERT_TRUE(t.ok()) << t.status();
    // GPT-2 regex: "hello" " world" "<|eot|>" -> hello=259, Ġw=260 + o r l d, added 300.
    EXPECT_EQ(Ids(**t, "hello world<|eot|>"),
              (std::vector<int32_t>{259, 260, 'o', 'r', 'l', 'd', 300}));
    EXPECT_EQ(*(*t)->Decode(Ids(**t, "hello world<|eot|><tag>"), true), "hello world<tag>");
  }
}

TEST(TokenizerFiles, ByteLevelPrefixSpaceAndSplitBehaviours) {
  Json j = MiniTokenizer();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  auto t = FromJson(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(Ids(**t, "world"), (std::vector<int32_t>{260, 'o', 'r', 'l', 'd'}));  // " world"
  // Split on literal "-" removed, then ByteLevel without regex: pieces "hello", "hello".
  j = MiniTokenizer();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Removed"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  t = FromJson(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(Ids(**t, "hello-hello"), (std::vector<int32_t>{259, 259}));
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithPrevious";
  t = FromJson(j);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Ids(**t, "hello-hello"), (std::vector<int32_t>{259, '-', 259}));
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Isolated";
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\s+"}};
  j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true;  // matches are the words: same pieces when Isolated
  t = FromJson(j);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Ids(**t, "hello  hello"), (std::vector<int32_t>{259, ' ', ' ', 259}));
}

TEST(TokenizerFiles, MalformedFilesAreInvalidArgumentNamingTheFile) {
  struct Case {
    std::string name;
    std::string text;
    std::string expect;  // substring of the message
  };
  const std::string good = MiniTokenizer().dump();
  std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() / 2), "not valid JSON"},
      {"empty", "", "not valid JSON"},
      {"array", "[1,2]", "top level"},
  };
  Json j = MiniTokenizer();
  j["model"]["type"] = "WordPiece";
  cases.push_back({"model type", j.dump(), "WordPiece"});
  j = MiniTokenizer();
  j["model"].erase("vocab");
  cases.push_back({"missing vocab", j.dump(), "model.vocab"});
  j = MiniTokenizer();
  j["model"]["merges"].push_back("h nosuchtoken");
  cases.push_back({"unknown merge token", j.dump(), "model.merges[5]"});
  j = MiniTokenizer();
  j["model"]["merges"].push_back("o o");
  cases.push_back({"merge result missing", j.dump(), "merged token"});
  j = MiniTokenizer();
  j["model"]["merges"].push_back("a b c");
  cases.push_back({"three-part merge", j.dump(), "model.merges[5]"});
  j = MiniTokenizer();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
                          {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  cases.push_back({"bad regex", j.dump(), "does not compile"});
  j = MiniTokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  cases.push_back({"unsupported pre-tokenizer", j.dump(), "Metaspace"});
  j = MiniTokenizer();
  j["model"]["vocab"].erase(ByteChar('a'));
  cases.push_back({"missing byte token", j.dump(), "byte 0x61"});
  j = MiniTokenizer();
  j["model"]["vocab"]["dup"] = 5;
  cases.push_back({"duplicate id", j.dump(), "id 5"});
  j = MiniTokenizer();
  j["added_tokens"][0].erase("content");
  cases.push_back({"added token without content", j.dump(), "added_tokens[0]"});
  j = MiniTokenizer();
  j["normalizer"] = {{"type", "NFC"}};
  cases.push_back({"normalizer", j.dump(), "normalizer"});
  j = MiniTokenizer();
  j["decoder"] = {{"type", "WordPiece"}};
  cases.push_back({"decoder", j.dump(), "decoder"});
  for (const Case& c : cases) {
    auto t = Tokenizer::FromJson(c.text, "mini/tokenizer.json");
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << t.status();
    EXPECT_NE(t.status().message().find("mini/tokenizer.json"), std::string::npos) << c.name << ": " << t.status();
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << c.name << ": " << t.status();
  }
  auto bad_config = Tokenizer::FromJson(good, "mini/tokenizer.json", "{\"eos_token\": \"<nope>\"}", "mini/cfg.json");
  EXPECT_EQ(bad_config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_config.status().message().find("mini/cfg.json"), std::string::npos);
  EXPECT_EQ(Tokenizer::Load("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
}

// Streaming: every way of feeding the ids gives the one-shot Decode, and no emitted chunk is broken UTF-8.
void CheckStreaming(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip) {
  const std::string want = *t.Decode(ids, skip);
  for (size_t chunk = 1; chunk <= 3; ++chunk) {
    IncrementalDecoder dec(t, skip);
    std::string got;
    for (size_t i = 0; i < ids.size(); i += chunk) {
      std::string piece;
      ASSERT_TRUE(dec.Add(absl::MakeConstSpan(ids).subspan(i, std::min(chunk, ids.size() - i)), &piece).ok());
      EXPECT_TRUE(IsValidUtf8(piece));
      got += piece;
      // Never revised: what was sent is a prefix of the final text.
      ASSERT_EQ(want.compare(0, got.size(), got), 0);
    }
    got += dec.Finish();
    EXPECT_EQ(got, want);
  }
}

TEST(IncrementalDecoder, MatchesOneShotDecodeOnEverySplit) {
  auto t = Tokenizer::Load("assets/tokenizer");
  ASSERT_TRUE(t.ok()) << t.status();
  for (std::string text : {"Hello 👋🏽 world 👩‍💻 中文 한국어 é", "<|start_of_role|>日本<|end_of_role|>😀",
                           "plain ascii only", "🏳️‍🌈🇩🇪"}) {
    const auto ids = *(*t)->Encode(text);
    CheckStreaming(**t, ids, false);
    CheckStreaming(**t, ids, true);
  }
  // Byte-level ids for each byte of multi-byte characters (as a model may generate them), plus broken ones.
  std::vector<int32_t> bytes;
  for (unsigned char c : std::string("\xF0\x9F\x98\x80 \xE4\xB8\xAD \xF0\x9F\x98 \xFF x \xC3")) {
    bytes.push_back(*(*t)->TokenToId(ByteChar(c)));
  }
  CheckStreaming(**t, bytes, false);
  IncrementalDecoder dec(**t, false);
  EXPECT_EQ(*dec.Add(bytes[0]), "");
  EXPECT_EQ(dec.pending_bytes(), 1u);
  EXPECT_EQ(*dec.Add(bytes[1]), "");
  EXPECT_EQ(*dec.Add(bytes[2]), "");
  EXPECT_EQ(*dec.Add(bytes[3]), "😀");
  EXPECT_EQ(*dec.Add(bytes[0]), "");
  EXPECT_EQ(dec.Finish(), "\xEF\xBF\xBD");  // unfinished sequence at the end -> U+FFFD
  EXPECT_EQ(dec.Add(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IncrementalDecoder, RandomIdStreams) {
  auto t = Tokenizer::Load("assets/tokenizer");
  ASSERT_TRUE(t.ok());
  std::mt19937 rng(99);
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<int32_t> ids(1 + rng() % 20);
    for (int32_t& id : ids) id = rng() % 3 == 0 ? static_cast<int32_t>(rng() % 256) : rng() % 100352;
    CheckStreaming(**t, ids, iter % 2 == 0);
  }
}

}  // namespace
}  // namespace quarry
