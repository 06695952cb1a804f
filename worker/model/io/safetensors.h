// safetensors files: header parsing with full validation, and a memory-mapped reader.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry {

enum class StDType : uint8_t { kF32, kBF16, kF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

const char* StDTypeName(StDType t);  // "F32", "BF16", ...
size_t StDTypeSize(StDType t);

struct TensorInfo {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
  const void* data = nullptr;  // set by SafetensorsFile (points into the mapping)
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;         // in header order
  std::map<std::string, std::string> metadata;  // "__metadata__"
  uint64_t data_offset = 0;                // 8 + header length
};

// Validates a whole file image: 8-byte little-endian header length inside the file, header is a JSON
// object, every entry has a known dtype, non-negative shape, data_offsets inside the data section,
// numel × dtype size == end - begin, no two tensors overlapping. Errors are INVALID_ARGUMENT (or
// DATA_LOSS for truncation) and start with `label` (the path) and name the tensor.
absl::StatusOr<SafetensorsHeader> ParseSafetensors(std::string_view file_bytes, std::string_view label);

// A memory-mapped, validated safetensors file. Tensor data stay in the mapping (no copy).
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* Find(std::string_view name) const;  // nullptr when absent
  uint64_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace quarry
