// Tokenizer tests on the Granite 4.0 files: ids equal to js-tiktoken's (committed expected_ids.json), round
// trips, the hand-written GPT-4 matcher equal to PCRE2, invalid UTF-8, added / special tokens.
#include "router/text/tokenizer/tokenizer.h"

#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/text/tokenizer/regex.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

const Tokenizer& Granite() {
  static const Tokenizer* tok = [] {
    auto t = Tokenizer::Load("assets/tokenizer");
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

std::vector<int32_t> Encode(std::string_view text, bool parse_special = true) {
  auto ids = Granite().Encode(text, EncodeOptions{parse_special});
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::string Decode(const std::vector<int32_t>& ids, bool skip = false) {
  auto text = Granite().Decode(ids, skip);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

TEST(GraniteTokenizer, MatchesJsTiktokenOnCorpus) {
  const nlohmann::json corpus = ReadJson("tests/data/tokenizer/corpus.json");
  const nlohmann::json expected = ReadJson("tests/data/tokenizer/expected_ids.json");
  ASSERT_EQ(corpus.size(), expected.size());
  ASSERT_GE(corpus.size(), 300u);
  int failures = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    const auto want = expected[i].get<std::vector<int32_t>>();
    const auto got = Encode(text);
    if (got != want && ++failures <= 5) ADD_FAILURE() << "corpus[" << i << "] = " << nlohmann::json(text).dump();
    EXPECT_EQ(Decode(got), text) << "round trip of corpus[" << i << "]";
  }
  EXPECT_EQ(failures, 0);
}

TEST(GraniteTokenizer, SpecialIdsAndVocab) {
  const Tokenizer& t = Granite();
  EXPECT_EQ(t.vocab_size(), 100352);
  EXPECT_EQ(t.special_ids().bos, 100257);
  EXPECT_EQ(t.special_ids().eos, 100257);
  EXPECT_EQ(t.special_ids().pad, 100256);
  EXPECT_EQ(t.special_ids().unk, 100269);
  EXPECT_EQ(t.TokenToId("<|start_of_role|>"), 100264);
  EXPECT_EQ(t.TokenToId("<tool_call>"), 100270);
  EXPECT_EQ(t.TokenToId("Hello"), 9906);
  EXPECT_EQ(t.TokenToId("Ġworld"), 1917);
  EXPECT_EQ(t.TokenToId("no such token at all"), std::nullopt);
  EXPECT_EQ(t.IdToToken(1917), "Ġworld");
  EXPECT_EQ(t.IdToToken(100257), "<|end_of_text|>");
  EXPECT_EQ(t.IdToToken(-1), std::nullopt);
  EXPECT_EQ(t.IdToToken(100352), std::nullopt);
  EXPECT_TRUE(t.IsSpecial(100264));
  EXPECT_FALSE(t.IsSpecial(100270));  // <tool_call> is added but not special
  EXPECT_TRUE(t.IsAddedToken(100270));
  EXPECT_FALSE(t.IsSpecial(9906));
  EXPECT_FALSE(t.config().chat_template.empty());
  EXPECT_FALSE(t.config().add_bos_token);
}

TEST(GraniteTokenizer, SkipSpecialTokensDropsOnlySpecialOnes) {
  const auto ids = Encode("<|start_of_role|>user<|end_of_role|>hi<tool_call>x</tool_call><think>y<|end_of_text|>");
  EXPECT_EQ(ids.front(), 100264);
  EXPECT_EQ(Decode(ids, /*skip=*/true), "userhi<tool_call>x</tool_call><think>y");
  EXPECT_EQ(Decode(ids, /*skip=*/false),
            "<|start_of_role|>user<|end_of_role|>hi<tool_call>x</tool_call><think>y<|end_of_text|>");
}

TEST(GraniteTokenizer, ParseSpecialFalseEncodesAddedTokensAsText) {
  const std::string text = "a<|start_of_role|>b<tool_call><|end_of_text|>";
  const auto parsed = Encode(text, true);
  const auto plain = Encode(text, false);
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 100264), parsed.end());
  for (int32_t id : plain) EXPECT_LT(id, 100256) << "added token id leaked into parse_special=false";
  EXPECT_EQ(Decode(plain), text);
  // Same as encoding the pieces as ordinary text: "<|" "start" "_of" ... from cl100k.
  EXPECT_EQ(plain, Encode("a<|start_of_role|>b<tool_call><|end_of_text|>", false));
  EXPECT_EQ(Encode("<|start_of_role|>", false), (std::vector<int32_t>{27, 91, 2527, 3659, 20378, 91, 29}));
}

TEST(GraniteTokenizer, AddedTokensLeftmostLongest) {
  EXPECT_EQ(Encode("<think_on>"), (std::vector<int32_t>{100276}));
  EXPECT_EQ(Encode("<think><think_on>"), (std::vector<int32_t>{100274, 100276}));
  EXPECT_EQ(Encode("<<think>>").size(), 3u);
}

TEST(GraniteTokenizer, InvalidUtf8IsEncodedBytewiseAndRoundTrips) {
  const std::vector<std::string> inputs = {"\xff", "abc\xff\xfe def", "\xc3", "caf\xc3", "\xe6\x97",
                                           "\xed\xa0\x80 surrogate", "ok \xf0\x9f\x98 broken emoji \xf0\x9f\x98\x80",
                                           std::string("nul\0byte", 8), "\x80\x80\x80<|pad|>\xc0\xaf"};
  for (const std::string& s : inputs) {
    const auto ids = Encode(s);
    std::string bytes;
    for (int32_t id : ids) ASSERT_TRUE(Granite().AppendTokenBytes(id, false, &bytes).ok());
    EXPECT_EQ(bytes, s);
    std::string lossy;
    AppendUtf8Lossy(s, &lossy);
    EXPECT_EQ(Decode(ids), lossy);
    EXPECT_TRUE(IsValidUtf8(Decode(ids)));
  }
  std::string replaced;
  AppendUtf8Lossy("a\xf0\x9f\x98z\xff", &replaced);
  EXPECT_EQ(replaced, "a\xEF\xBF\xBDz\xEF\xBF\xBD");  // maximal subpart F0 9F 98 -> one U+FFFD
}

TEST(GraniteTokenizer, RandomBytesNeverCrashAndRoundTrip) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : " a\n'1<|>\xc3\xa9"[rng() % 12]);
    const auto ids = Encode(s);
    std::string bytes;
    for (int32_t id : ids) ASSERT_TRUE(Granite().AppendTokenBytes(id, false, &bytes).ok());
    EXPECT_EQ(bytes, s);
  }
}

TEST(GraniteTokenizer, DecodeRejectsBadIds) {
  EXPECT_EQ(Granite().Decode({1, -5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Granite().Decode({100352}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GraniteTokenizer, LongInputsUseWindowsWithoutChangingIds) {
  std::string text;
  for (int i = 0; text.size() < (3u << 20); ++i) text += "Line " + std::to_string(i) + " of   text,\n  indented\n";
  const auto ids = Encode(text);
  // Splitting the text at a line start gives the same ids as one call.
  const size_t cut = text.find("\nLine 1000 ") + 1;
  auto a = Encode(text.substr(0, cut));
  const auto b = Encode(text.substr(cut));
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(ids, a);
  EXPECT_EQ(Decode(ids), text);
}

// The hand-written matcher must give exactly PCRE2's matches.
std::vector<std::string_view> SplitAll(const SplitRegex& re, std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0, b = 0, e = 0;
  while (pos < text.size()) {
    auto found = re.Find(text, pos, &b, &e);
    EXPECT_TRUE(found.ok());
    if (!found.ok() || !*found) break;
    EXPECT_EQ(b, pos) << "GPT-4 pattern must partition the text";
    out.push_back(text.substr(b, e - b));
    pos = e > b ? e : e + 1;
  }
  return out;
}

TEST(Gpt4Matcher, EqualsPcre2OnCorpusAndRandomStrings) {
  auto fast = SplitRegex::Compile(kGpt4Pattern, true, /*allow_fast_path=*/true);
  auto slow = SplitRegex::Compile(kGpt4Pattern, true, /*allow_fast_path=*/false);
  ASSERT_TRUE(fast.ok() && slow.ok());
  ASSERT_TRUE((*fast)->uses_fast_path());
  ASSERT_FALSE((*slow)->uses_fast_path());
  const nlohmann::json corpus = ReadJson("tests/data/tokenizer/corpus.json");
  for (const auto& j : corpus) {
    const std::string s = j.get<std::string>();
    ASSERT_EQ(SplitAll(**fast, s), SplitAll(**slow, s)) << nlohmann::json(s).dump();
  }
  const std::vector<uint32_t> pool = {
      'a', 'Z', 's', 'S', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'V', 'm', 'M', 'l', 'L', 'd', 'D', 'k', '\'', '\'',
      '0', '9', ' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', '.', '!', '-', '_', '"', 0x17F, 0x212A, 0x85, 0xA0,
      0x1680, 0x2000, 0x2028, 0x2029, 0x202F, 0x3000, 0xFEFF, 0x200B, 0x200D, 0x301, 0x663, 0xB2, 0x2163, 0xBD,
      0x4E2D, 0xAC00, 0x627, 0x928, 0x94D, 0x1F600, 0x1F3FD, 0xE9, 0xDF, 0x10400, 0x1D7CE};
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s;
    const int n = 1 + rng() % 24;
    for (int k = 0; k < n; ++k) {
      uint32_t cp = pool[rng() % pool.size()];
      if (rng() % 16 == 0) {
        cp = rng() % 0x110000;
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      }
      AppendCodePoint(cp, &s);
    }
    ASSERT_EQ(SplitAll(**fast, s), SplitAll(**slow, s)) << nlohmann::json(s).dump();
  }
}

TEST(Gpt4Matcher, ClassTableAgreesWithUnicode) {
  EXPECT_EQ(CodePointClass('a'), kClassLetter);
  EXPECT_EQ(CodePointClass(0x4E2D), kClassLetter);
  EXPECT_EQ(CodePointClass('7'), kClassNumber);
  EXPECT_EQ(CodePointClass(0x2163), kClassNumber);  // ROMAN NUMERAL FOUR (Nl)
  EXPECT_EQ(CodePointClass(' '), kClassSpace);
  EXPECT_EQ(CodePointClass(0x85), kClassSpace);  // NEL: White_Space, as Oniguruma and Rust regex see \s
  EXPECT_EQ(CodePointClass(0x3000), kClassSpace);
  EXPECT_EQ(CodePointClass(0x200B), 0);  // ZERO WIDTH SPACE is Cf, not White_Space
  EXPECT_EQ(CodePointClass(0x1F600), 0);
}

}  // namespace
}  // namespace quarry
