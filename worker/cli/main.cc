// `quarry`: the command-line entry point (verify, make-model, generate, tokenize, serve, chat).
#include <cstdio>

#include <omp.h>

#include "worker/cli/commands.h"

namespace quarry::cli {

int ConfigureThreads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  return omp_get_max_threads();
}

}  // namespace quarry::cli

int main(int argc, char** argv) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) {
    std::fprintf(stderr, "quarry: this CPU lacks AVX2/FMA/F16C (x86-64-v3), which the CPU kernels need\n");
    return quarry::cli::kExitError;
  }
#endif
  CLI::App app{"Quarry: serving engine for IBM Granite-4.0-H models", "quarry"};
  app.require_subcommand(1);
  int exit_code = quarry::cli::kExitOk;
  quarry::cli::RegisterVerify(app, &exit_code);
  quarry::cli::RegisterMakeModel(app, &exit_code);
  quarry::cli::RegisterGenerate(app, &exit_code);
  quarry::cli::RegisterTokenize(app, &exit_code);
  quarry::cli::RegisterServe(app, &exit_code);
#ifdef QUARRY_WITH_GRPC
  quarry::cli::RegisterChat(app, &exit_code);
#endif
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
