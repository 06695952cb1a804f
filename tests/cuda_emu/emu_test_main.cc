// Quarry CUDA emulator (tests/cuda_emu): main of quarry_kernels_cuda_emu_test. Without --gtest_filter (or
// GTEST_FILTER) it applies the default filter of tests/cuda_emu/CMakeLists.txt, so running the binary directly
// runs exactly what ctest runs; pass --gtest_filter='*' to include the excluded tests.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

#ifndef QUARRY_EMU_DEFAULT_FILTER
#define QUARRY_EMU_DEFAULT_FILTER "*"
#endif

int main(int argc, char** argv) {
  bool has_filter = std::getenv("GTEST_FILTER") != nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--gtest_filter", 14) == 0) has_filter = true;
  }
  ::testing::InitGoogleTest(&argc, argv);
  // Death tests of the emulator's checks re-execute the binary instead of forking a process that may already
  // hold OpenMP threads (the CPU references).
  ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
  if (!has_filter) {
    ::testing::GTEST_FLAG(filter) = QUARRY_EMU_DEFAULT_FILTER;
    std::fprintf(stderr, "quarry_kernels_cuda_emu_test: default filter %s (--gtest_filter='*' runs everything)\n",
                 QUARRY_EMU_DEFAULT_FILTER);
  }
  return RUN_ALL_TESTS();
}
