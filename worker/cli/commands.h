// The `quarry` command-line tool: each subcommand registers its flags and its run function here.
#pragma once

#include "CLI/CLI.hpp"

namespace quarry::cli {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // ran, but the result is a failure (e.g. verify mismatch)
inline constexpr int kExitError = 2;   // could not run (bad input, unreadable files)

// Each Register* adds a subcommand whose callback stores its exit code in *exit_code.
void RegisterVerify(CLI::App& app, int* exit_code);
void RegisterMakeModel(CLI::App& app, int* exit_code);
void RegisterGenerate(CLI::App& app, int* exit_code);
void RegisterTokenize(CLI::App& app, int* exit_code);
void RegisterServe(CLI::App& app, int* exit_code);
#ifdef QUARRY_WITH_GRPC
void RegisterChat(CLI::App& app, int* exit_code);  // needs gRPC (not in QUARRY_ENGINE_ONLY builds)
#endif

// Applies --threads (0 = all cores) to OpenMP; returns the number used.
int ConfigureThreads(int threads);

}  // namespace quarry::cli
