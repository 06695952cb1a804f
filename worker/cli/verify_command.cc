// `quarry verify --model DIR --reference FILE`: golden reference check with one line per case.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "worker/cli/commands.h"
#include "worker/engine/reference_check.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry::cli {
namespace {

struct VerifyFlags {
  std::string model;
  std::string reference;
  double tolerance = 2e-3;
  int64_t prefill_chunk = 0;
  int64_t mamba_chunk = 0;
  int threads = 0;
};

int RunVerify(const VerifyFlags& f) {
  ConfigureThreads(f.threads);
  auto weights = LoadModelDir(f.model, {});
  if (!weights.ok()) {
    std::fprintf(stderr, "quarry verify: %s\n", std::string(weights.status().message()).c_str());
    return kExitError;
  }
  Model model(**weights, {f.mamba_chunk});
  ReferenceOptions opts;
  opts.tolerance = f.tolerance;
  opts.prefill_chunk = f.prefill_chunk;
  auto results = RunReferenceFile(model, f.reference, opts);
  if (!results.ok()) {
    std::fprintf(stderr, "quarry verify: %s\n", std::string(results.status().message()).c_str());
    return kExitError;
  }
  int passed = 0;
  double worst = 0;
  for (const ReferenceCaseResult& r : *results) {
    std::printf("%-6s prompt %4lld  prefill %.2e  steps %.2e  full %.2e  token mismatches %lld  %s%s%s\n",
                r.name.c_str(), static_cast<long long>(r.prompt_tokens), r.prefill_max_abs, r.step_max_abs,
                r.full_max_abs, static_cast<long long>(r.token_mismatches), r.ok ? "OK" : "FAIL",
                r.first_mismatch.empty() ? "" : "  ", r.first_mismatch.c_str());
    passed += r.ok;
    worst = std::max({worst, r.prefill_max_abs, r.step_max_abs, r.full_max_abs});
  }
  const bool ok = passed == static_cast<int>(results->size());
  std::printf("verify: %d/%zu cases passed, max |dlogit| %.2e (tolerance %.1e): %s\n", passed, results->size(),
              worst, f.tolerance, ok ? "PASS" : "FAIL");
  return ok ? kExitOk : kExitFailed;
}

}  // namespace

void RegisterVerify(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Check the engine against a golden reference file (prefill logits, greedy tokens with step logits, full "
      "logits). Exits 0 only if every case is within tolerance and every greedy token matches.");
  cmd->add_option("--model", flags->model, "Checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--reference", flags->reference, "reference.safetensors with case{i}.* tensors")->required();
  cmd->add_option("--tolerance", flags->tolerance, "Max |logit difference| allowed")->capture_default_str();
  cmd->add_option("--prefill-chunk", flags->prefill_chunk, "Prefill in chunks of N tokens (0 = whole prompt)")
      ->capture_default_str();
  cmd->add_option("--mamba-chunk", flags->mamba_chunk, "SSD scan chunk size (0 = config mamba_chunk_size)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->callback([flags, exit_code] { *exit_code = RunVerify(*flags); });
}

}  // namespace quarry::cli
