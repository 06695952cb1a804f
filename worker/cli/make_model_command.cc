// `quarry make-model --preset P --out DIR`: a random-weight Hugging Face checkpoint of a Granite-4.0-H preset.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_join.h"
#include "worker/cli/commands.h"
#include "worker/cli/progress.h"
#include "worker/model/io/make_model.h"

#ifndef QUARRY_ASSETS_DIR
#define QUARRY_ASSETS_DIR "assets"
#endif

namespace quarry::cli {
namespace {

struct MakeModelFlags {
  std::string preset = "tiny";
  int64_t vocab = 0;
  std::string dtype = "bf16";
  uint64_t seed = 0;
  std::string out;
  std::string tokenizer_dir = QUARRY_ASSETS_DIR "/tokenizer";
  double max_shard_gb = 4.0;
  int threads = 0;
};

int RunMakeModel(const MakeModelFlags& f) {
  ConfigureThreads(f.threads);
  MakeModelOptions o;
  o.preset = f.preset;
  o.vocab_size = f.vocab;
  if (f.dtype == "bf16") o.dtype = StDType::kBF16;
  else if (f.dtype == "f32") o.dtype = StDType::kF32;
  else {
    std::fprintf(stderr, "quarry make-model: --dtype must be bf16 or f32, got '%s'\n", f.dtype.c_str());
    return kExitError;
  }
  o.seed = f.seed;
  o.out_dir = f.out;
  o.tokenizer_dir = f.tokenizer_dir;
  o.max_shard_bytes = static_cast<uint64_t>(f.max_shard_gb * 1e9);
  ProgressBar bar("writing " + f.out);
  o.progress = [&bar](uint64_t d, uint64_t t) { bar.Update(d, t); };
  absl::Status st = MakeModel(o);
  bar.Finish();
  if (!st.ok()) {
    std::fprintf(stderr, "quarry make-model: %s\n", std::string(st.message()).c_str());
    return kExitError;
  }
  std::printf("wrote %s (preset %s, %s)\n", f.out.c_str(), f.preset.c_str(), f.dtype.c_str());
  return kExitOk;
}

}  // namespace

void RegisterMakeModel(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<MakeModelFlags>();
  CLI::App* cmd = app.add_subcommand(
      "make-model", "Write a random-weight Hugging Face checkpoint of a Granite-4.0-H architecture preset.");
  cmd->add_option("--preset", flags->preset, "One of: " + absl::StrJoin(PresetNames(), ", "))
      ->capture_default_str();
  cmd->add_option("--vocab", flags->vocab, "Vocabulary size (0 = the preset's)")->capture_default_str();
  cmd->add_option("--dtype", flags->dtype, "bf16 or f32")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Random seed")->capture_default_str();
  cmd->add_option("--out", flags->out, "Output directory")->required();
  cmd->add_option("--tokenizer-dir", flags->tokenizer_dir,
                  "Granite tokenizer files copied in when the vocabulary is 100352")->capture_default_str();
  cmd->add_option("--max-shard-gb", flags->max_shard_gb, "Shard size for large checkpoints")->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->callback([flags, exit_code] { *exit_code = RunMakeModel(*flags); });
}

}  // namespace quarry::cli
