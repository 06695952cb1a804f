// `quarry tokenize --tokenizer DIR --input FILE.json [--decode]`: encodes a JSON array of strings into a JSON
// array of id arrays, or (--decode) the reverse. Prints the result on stdout.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "router/text/tokenizer/tokenizer.h"
#include "worker/cli/commands.h"

namespace quarry::cli {
namespace {

struct TokenizeFlags {
  std::string tokenizer = QUARRY_ASSETS_DIR "/tokenizer";
  std::string input;
  bool decode = false;
  bool skip_special_tokens = false;
  bool no_parse_special = false;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "quarry tokenize: %s\n", message.c_str());
  return kExitError;
}

int RunTokenize(const TokenizeFlags& f) {
  auto tok = Tokenizer::Load(f.tokenizer);
  if (!tok.ok()) return Fail(std::string(tok.status().message()));
  std::ifstream in(f.input, std::ios::binary);
  if (!in) return Fail(f.input + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json input = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (input.is_discarded() || !input.is_array()) return Fail(f.input + ": not a JSON array");
  nlohmann::json output = nlohmann::json::array();
  for (size_t i = 0; i < input.size(); ++i) {
    const nlohmann::json& item = input[i];
    if (f.decode) {
      std::vector<int32_t> ids;
      if (!item.is_array()) return Fail(f.input + ": element " + std::to_string(i) + " is not an array of ids");
      for (const auto& id : item) {
        if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX) {
          return Fail(f.input + ": element " + std::to_string(i) + " holds a non-integer id " + id.dump());
        }
        ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
      auto text = (*tok)->Decode(ids, f.skip_special_tokens);
      if (!text.ok()) return Fail(f.input + ": element " + std::to_string(i) + ": " + std::string(text.status().message()));
      output.push_back(*text);
    } else {
      if (!item.is_string()) return Fail(f.input + ": element " + std::to_string(i) + " is not a string");
      auto ids = (*tok)->Encode(item.get_ref<const std::string&>(), EncodeOptions{!f.no_parse_special});
      if (!ids.ok()) return Fail(f.input + ": element " + std::to_string(i) + ": " + std::string(ids.status().message()));
      output.push_back(*ids);
    }
  }
  std::string text = output.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
  return kExitOk;
}

}  // namespace

void RegisterTokenize(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Encode a JSON array of strings to ids (or --decode ids to text)");
  cmd->add_option("--tokenizer", flags->tokenizer, "directory with tokenizer.json (+ tokenizer_config.json)");
  cmd->add_option("--input", flags->input, "JSON file: array of strings, or with --decode array of id arrays")
      ->required();
  cmd->add_flag("--decode", flags->decode, "decode id arrays to strings");
  cmd->add_flag("--skip-special-tokens", flags->skip_special_tokens, "with --decode: drop special tokens");
  cmd->add_flag("--no-parse-special", flags->no_parse_special, "encode added-token strings as plain text");
  cmd->callback([flags, exit_code] { *exit_code = RunTokenize(*flags); });
}

}  // namespace quarry::cli
