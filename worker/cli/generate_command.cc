// `quarry generate --model DIR --prompt-ids 1,2,3 --max-tokens N`: greedy generation with speed figures.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "worker/cli/commands.h"
#include "worker/cli/progress.h"
#include "worker/engine/generator.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt_ids;
  int64_t max_tokens = 32;
  int64_t prefill_chunk = 512;
  bool ignore_eos = false;
  bool no_prefault = false;
  int threads = 0;
};

int RunGenerate(const GenerateFlags& f) {
  const int threads = ConfigureThreads(f.threads);
  std::vector<int32_t> prompt;
  for (absl::string_view part : absl::StrSplit(f.prompt_ids, ',', absl::SkipWhitespace())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &id)) {
      std::fprintf(stderr, "quarry generate: --prompt-ids: '%s' is not an integer token id\n",
                   std::string(part).c_str());
      return kExitError;
    }
    prompt.push_back(id);
  }
  if (prompt.empty()) {
    std::fprintf(stderr, "quarry generate: --prompt-ids is empty\n");
    return kExitError;
  }
  ProgressBar bar("loading " + f.model);
  WeightLoadOptions load;
  load.prefault = !f.no_prefault;
  load.progress = [&bar](uint64_t d, uint64_t t) { bar.Update(d, t); };
  auto weights = LoadModelDir(f.model, load);
  bar.Finish();
  if (!weights.ok()) {
    std::fprintf(stderr, "quarry generate: %s\n", std::string(weights.status().message()).c_str());
    return kExitError;
  }
  Model model(**weights);
  GenerateOptions opts;
  opts.max_new_tokens = f.max_tokens;
  opts.prefill_chunk = f.prefill_chunk;
  opts.ignore_eos = f.ignore_eos;
  for (int64_t id : model.config().eos_token_id) opts.stop_token_ids.push_back(static_cast<int32_t>(id));
  GenerateStats stats;
  auto result = GreedyGenerate(model, prompt, opts, &stats);
  if (!result.ok()) {
    std::fprintf(stderr, "quarry generate: %s\n", std::string(result.status().message()).c_str());
    return kExitError;
  }
  std::printf("tokens:");
  for (int32_t t : result->tokens) std::printf(" %d", t);
  std::printf("\nfinish: %s\n", result->finish_reason.c_str());
  const int64_t decoded = stats.generated_tokens - 1;
  std::printf("prefill: %lld tokens in %.3f s (%.1f tok/s)\n", static_cast<long long>(stats.prompt_tokens),
              stats.prefill_seconds, stats.prompt_tokens / std::max(stats.prefill_seconds, 1e-9));
  std::printf("decode:  %lld tokens in %.3f s (%.2f tok/s, %.1f ms/token), %d threads\n",
              static_cast<long long>(decoded), stats.decode_seconds,
              decoded > 0 ? decoded / std::max(stats.decode_seconds, 1e-9) : 0.0,
              decoded > 0 ? 1e3 * stats.decode_seconds / decoded : 0.0, threads);
  return kExitOk;
}

}  // namespace

void RegisterGenerate(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Greedy generation from token ids on the CPU engine, with speed.");
  cmd->add_option("--model", flags->model, "Checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--prompt-ids", flags->prompt_ids, "Comma-separated prompt token ids, e.g. 1,2,3")->required();
  cmd->add_option("--max-tokens", flags->max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--prefill-chunk", flags->prefill_chunk, "Prefill chunk size in tokens")->capture_default_str();
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Do not stop at the end-of-text token");
  cmd->add_flag("--no-prefault", flags->no_prefault, "Do not read the weights into memory before generating");
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->callback([flags, exit_code] { *exit_code = RunGenerate(*flags); });
}

}  // namespace quarry::cli
