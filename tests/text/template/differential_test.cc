// Differential test: every case rendered by jinja2 (render_reference.py, run by CTest as a fixture) must render
// byte for byte the same here; cases where jinja2 raised must fail here with INVALID_ARGUMENT.
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "router/text/template/chat_template.h"

namespace quarry::chat {
namespace {

using Json = nlohmann::ordered_json;

std::string Escape(std::string_view s) {
  Json j = std::string(s);
  return j.dump(-1, ' ', true, Json::error_handler_t::replace);
}

// First differing byte offset with some context on both sides.
std::string DescribeDiff(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  size_t from = i > 40 ? i - 40 : 0;
  std::ostringstream os;
  os << "first difference at byte " << i << " (expected " << want.size() << " bytes, got " << got.size()
     << ")\n  expected: ..." << Escape(want.substr(from, 100)) << "\n  got:      ..."
     << Escape(got.substr(from, 100));
  return os.str();
}

TEST(Differential, MatchesJinja2) {
  const char* path = std::getenv("QUARRY_CHAT_REFERENCE");
  if (path == nullptr) GTEST_SKIP() << "QUARRY_CHAT_REFERENCE not set (run through ctest: chat_template_differential)";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "cannot open " << path;
  Json ref = Json::parse(in, nullptr, false);
  ASSERT_FALSE(ref.is_discarded()) << path << " is not valid JSON";

  auto granite = ChatTemplate::FromTokenizerConfig("assets/tokenizer/tokenizer_config.json");
  ASSERT_TRUE(granite.ok()) << granite.status();
  ASSERT_EQ(granite->source(), ref["templates"]["granite"].get<std::string>());
  std::map<std::string, ChatTemplate> templates;
  std::map<std::string, absl::Status> template_errors;
  for (auto it = ref["templates"].begin(); it != ref["templates"].end(); ++it) {
    if (it.key() == "granite") continue;
    auto t = ChatTemplate::FromString(it.value().get<std::string>());
    if (t.ok()) {
      templates.emplace(it.key(), *std::move(t));
    } else {
      template_errors[it.key()] = t.status();
    }
  }

  int compared = 0, errors = 0, granite_cases = 0;
  for (const Json& c : ref["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string tid = c["template"].get<std::string>();
    SCOPED_TRACE(name);
    RenderInput input;
    input.messages = c["messages"];
    if (!c["tools"].is_null()) input.tools = c["tools"];
    if (!c["documents"].is_null()) input.documents = c["documents"];
    input.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    input.extra = c["extra"];
    absl::StatusOr<std::string> got;
    if (tid == "granite") {
      ++granite_cases;
      got = granite->Render(input);
    } else if (template_errors.count(tid)) {
      got = template_errors[tid];
    } else {
      got = templates.at(tid).Render(input);
    }
    if (c.contains("error")) {
      ++errors;
      EXPECT_FALSE(got.ok()) << "jinja2 raised " << c["error"] << " but Quarry rendered " << Escape(*got);
      if (!got.ok()) {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
        EXPECT_NE(got.status().message().find("chat template line "), std::string::npos) << got.status();
      }
      continue;
    }
    ++compared;
    ASSERT_TRUE(got.ok()) << got.status();
    const std::string want = c["expected"].get<std::string>();
    if (*got != want) ADD_FAILURE() << DescribeDiff(want, *got);
  }
  EXPECT_GE(granite_cases, 200);
  std::printf("compared %d renderings (%d granite conversations) and %d expected errors\n", compared,
              granite_cases, errors);
}

}  // namespace
}  // namespace quarry::chat
