// Helpers for the checkpoint I/O tests: scratch directories and hand-made safetensors images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace quarry::testing {

// A fresh, empty directory under the test temp dir, named after the running test.
inline std::string ScratchDir(std::string_view suffix = "") {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              (std::string("quarry_io_") + info->test_suite_name() + "_" + info->name() +
                               std::string(suffix));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void WriteBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// 8-byte little-endian length + header + data.
inline std::string MakeImage(std::string_view header_json, std::string_view data) {
  std::string out(8, '\0');
  uint64_t len = header_json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out.append(header_json);
  out.append(data);
  return out;
}

}  // namespace quarry::testing
