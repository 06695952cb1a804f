// quarry-tokenizer-bench: encode / decode throughput (MB/s, one thread) and load time of the tokenizer on
// fixed texts; prints a table and writes JSON. js_tiktoken_bench.mjs measures js-tiktoken on the same texts.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "router/text/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

bool ReadText(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  if (path.size() > 5 && path.substr(path.size() - 5) == ".json") {  // a JSON array of strings: join them
    auto j = nlohmann::json::parse(*out, nullptr, false);
    if (j.is_array()) {
      out->clear();
      for (const auto& s : j) {
        if (s.is_string()) *out += s.get<std::string>() + "\n";
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tokenizer throughput and load time", "quarry-tokenizer-bench"};
  std::string dir = "assets/tokenizer";
  std::string json_out = "tokenizer_bench.json";
  std::vector<std::string> texts = {"english=docs/granite-4.0-h-tiny-spec.md", "code=worker/model/config.cc",
                                    "multilingual=tests/data/tokenizer/corpus.json"};
  double min_seconds = 1.0;
  app.add_option("--tokenizer", dir, "directory with tokenizer.json");
  app.add_option("--text", texts, "NAME=PATH texts to encode (a .json array of strings is joined)");
  app.add_option("--json", json_out, "where to write the JSON results");
  app.add_option("--seconds", min_seconds, "minimum time per measurement");
  CLI11_PARSE(app, argc, argv);

  double best_load = 1e9;
  std::unique_ptr<quarry::Tokenizer> tok;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    auto t = quarry::Tokenizer::Load(dir);
    const auto t1 = Clock::now();
    if (!t.ok()) {
      std::fprintf(stderr, "quarry-tokenizer-bench: %s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    best_load = std::min(best_load, Seconds(t0, t1));
    tok = std::move(*t);
  }
  nlohmann::json results = {{"load_seconds", best_load}, {"texts", nlohmann::json::array()}};
  std::printf("load: %.3f s (best of 3)\n\n", best_load);
  std::printf("%-14s %10s %10s %12s %12s\n", "text", "bytes", "tokens", "encode MB/s", "decode MB/s");
  for (const std::string& spec : texts) {
    const size_t eq = spec.find('=');
    const std::string name = eq == std::string::npos ? spec : spec.substr(0, eq);
    const std::string path = eq == std::string::npos ? spec : spec.substr(eq + 1);
    std::string text;
    if (!ReadText(path, &text)) {
      std::fprintf(stderr, "quarry-tokenizer-bench: cannot read %s\n", path.c_str());
      return 2;
    }
    // parse_special = false: added-token strings in the texts are plain text, exactly the work js-tiktoken does.
    const quarry::EncodeOptions opts{.parse_special = false};
    std::vector<int32_t> ids = *tok->Encode(text, opts);  // warm-up (fills the piece cache, as in a running router)
    size_t bytes = 0;
    const auto t0 = Clock::now();
    auto t1 = t0;
    do {
      ids = *tok->Encode(text, opts);
      bytes += text.size();
      t1 = Clock::now();
    } while (Seconds(t0, t1) < min_seconds);
    const double encode_mbs = bytes / Seconds(t0, t1) / 1e6;
    bytes = 0;
    const auto d0 = Clock::now();
    auto d1 = d0;
    do {
      bytes += tok->Decode(ids)->size();
      d1 = Clock::now();
    } while (Seconds(d0, d1) < min_seconds);
    const double decode_mbs = bytes / Seconds(d0, d1) / 1e6;
    std::printf("%-14s %10zu %10zu %12.1f %12.1f\n", name.c_str(), text.size(), ids.size(), encode_mbs, decode_mbs);
    results["texts"].push_back({{"name", name}, {"path", path}, {"bytes", text.size()}, {"tokens", ids.size()},
                                {"encode_mb_per_s", encode_mbs}, {"decode_mb_per_s", decode_mbs}});
  }
  std::ofstream(json_out) << results.dump(2) << "\n";
  std::printf("\nwrote %s\n", json_out.c_str());
  return 0;
}
