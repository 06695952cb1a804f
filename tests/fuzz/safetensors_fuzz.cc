// libFuzzer entry point for the safetensors header parser: any byte string must yield a status, never a
// crash, hang or sanitizer report; accepted headers must satisfy the invariants the reader relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/model/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto header = quarry::ParseSafetensors(bytes, "fuzz");
  if (!header.ok()) return 0;
  // Invariants of an accepted file: every tensor lies inside the data section and has the right size.
  const uint64_t data_size = size - header->data_offset;
  if (header->data_offset < 10 || header->data_offset > size) std::abort();
  for (const quarry::TensorInfo& t : header->tensors) {
    if (t.begin > t.end || t.end > data_size) std::abort();
    if (static_cast<uint64_t>(t.numel()) * quarry::StDTypeSize(t.dtype) != t.end - t.begin) std::abort();
  }
  return 0;
}
