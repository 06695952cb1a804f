// safetensors header validation (ParseSafetensors) and the memory-mapped reader (SafetensorsFile).
#include "worker/model/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

using Json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we (a real 40-layer header is ~60 KB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A valid header nests 3 levels deep (object -> tensor object -> shape array); anything much deeper is
// garbage, and refusing it early keeps the JSON parser's work bounded.
constexpr int kMaxJsonDepth = 16;

struct DTypeEntry {
  const char* name;
  StDType type;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {"F32", StDType::kF32, 4}, {"BF16", StDType::kBF16, 2}, {"F16", StDType::kF16, 2},
    {"F64", StDType::kF64, 8}, {"I64", StDType::kI64, 8},   {"I32", StDType::kI32, 4},
    {"I16", StDType::kI16, 2}, {"I8", StDType::kI8, 1},     {"U8", StDType::kU8, 1},
    {"BOOL", StDType::kBool, 1},
};

// Maximum bracket nesting outside of strings; stops counting once past `limit`.
int JsonDepth(std::string_view text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status ParseTensor(const std::string& name, const Json& entry, uint64_t data_size,
                         absl::string_view label, TensorInfo* out) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": tensor '", name, "': ", what));
  };
  if (!entry.is_object()) return bad("entry is not a JSON object");
  out->name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return bad("missing string field 'dtype'");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  size_t elem_size = 0;
  for (const DTypeEntry& d : kDTypes) {
    if (dtype_name == d.name) {
      out->dtype = d.type;
      elem_size = d.size;
    }
  }
  if (elem_size == 0) return bad(absl::StrCat("unsupported dtype '", dtype_name, "'"));

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) return bad("missing array field 'shape'");
  uint64_t numel = 1;
  bool overflow = false, has_zero = false;
  for (const Json& dim : *shape_it) {
    if (!dim.is_number_integer()) return bad(absl::StrCat("shape entry ", dim.dump(), " is not an integer"));
    if (dim.is_number_unsigned()) {
      uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad(absl::StrCat("shape entry ", d, " is too large"));
      }
      out->shape.push_back(static_cast<int64_t>(d));
    } else {
      int64_t d = dim.get<int64_t>();
      if (d < 0) return bad(absl::StrCat("shape entry ", d, " is negative"));
      out->shape.push_back(d);
    }
    const uint64_t d = static_cast<uint64_t>(out->shape.back());
    if (d == 0) {
      has_zero = true;
    } else if (numel > std::numeric_limits<uint64_t>::max() / d) {
      overflow = true;
    } else {
      numel *= d;
    }
  }
  if (has_zero) {
    numel = 0;  // a zero dimension makes any product empty
  } else if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
             numel > std::numeric_limits<uint64_t>::max() / elem_size) {
    return bad(absl::StrCat("shape ", ShapeString(out->shape), " overflows 64-bit byte counts"));
  }
  const uint64_t nbytes = numel * elem_size;

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    return bad("'data_offsets' must be an array of two non-negative integers");
  }
  out->begin = (*off_it)[0].get<uint64_t>();
  out->end = (*off_it)[1].get<uint64_t>();
  if (out->begin > out->end) {
    return bad(absl::StrCat("data_offsets [", out->begin, ", ", out->end, "] are reversed"));
  }
  if (out->end > data_size) {
    return absl::DataLossError(absl::StrCat(label, ": tensor '", name, "': data_offsets [", out->begin, ", ",
                                            out->end, "] point past the end of the data section (",
                                            data_size, " bytes)"));
  }
  if (out->end - out->begin != nbytes) {
    return bad(absl::StrCat("shape ", ShapeString(out->shape), " × ", dtype_name, " needs ", nbytes,
                            " bytes but data_offsets [", out->begin, ", ", out->end, "] hold ",
                            out->end - out->begin));
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsHeader> ParseHeaderJson(const Json& root, uint64_t data_size, absl::string_view label) {
  SafetensorsHeader header;
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header is a JSON ", root.type_name(), ", expected an object"));
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": '__metadata__' is not a JSON object"));
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(label, ": '__metadata__' entry '", m.key(), "' is not a string"));
        }
        header.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo info;
    absl::Status s = ParseTensor(it.key(), *it, data_size, label, &info);
    if (!s.ok()) return s;
    header.tensors.push_back(std::move(info));
  }

  // Overlap check over non-empty tensors, sorted by begin.
  std::vector<const TensorInfo*> sorted;
  for (const TensorInfo& t : header.tensors) {
    if (t.end > t.begin) sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorInfo* prev = sorted[i - 1];
    const TensorInfo* cur = sorted[i];
    if (cur->begin < prev->end) {
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": tensor '", cur->name, "' (bytes [", cur->begin, ", ", cur->end, ")) overlaps tensor '",
          prev->name, "' (bytes [", prev->begin, ", ", prev->end, "))"));
    }
  }
  return header;
}

}  // namespace

const char* StDTypeName(StDType t) {
  for (const DTypeEntry& d : kDTypes) {
    if (d.type == t) return d.name;
  }
  return "?";
}

size_t StDTypeSize(StDType t) {
  for (const DTypeEntry& d : kDTypes) {
    if (d.type == t) return d.size;
  }
  return 0;
}

int64_t TensorInfo::numel() const {
  // Unsigned: wrap-around is defined, and ParseSafetensors guarantees the product of a parsed shape fits.
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

absl::StatusOr<SafetensorsHeader> ParseSafetensors(std::string_view file_bytes, std::string_view label_in) {
  // This abseil's string_view is its own type: convert once.
  const absl::string_view label(label_in.data(), label_in.size());
  const uint64_t size = file_bytes.size();
  if (size < 8) {
    return absl::DataLossError(
        absl::StrCat(label, ": file is ", size, " bytes, too short for the 8-byte header length"));
  }
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<uint8_t>(file_bytes[i]);
  if (len > size - 8) {
    return absl::DataLossError(absl::StrCat(label, ": header length ", len,
                                            " points past the end of the file (size ", size, ")"));
  }
  if (len < 2) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": header length ", len, " is too small for a JSON object"));
  }
  if (len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header length ", len, " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  std::string_view text = file_bytes.substr(8, len);
  if (JsonDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header JSON nests deeper than ", kMaxJsonDepth, " levels"));
  }

  // Duplicate top-level keys would silently shadow each other in the parsed object: detect them.
  std::set<std::string> seen;
  std::string duplicate;
  Json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event, Json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string() && duplicate.empty()) {
      if (!seen.insert(parsed.get<std::string>()).second) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/true);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": header is not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": tensor '", duplicate, "' appears twice in the header"));
  }
  absl::StatusOr<SafetensorsHeader> header;
  try {
    header = ParseHeaderJson(root, size - 8 - len, label);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": malformed header: ", e.what()));
  }
  if (header.ok()) header->data_offset = 8 + len;
  return header;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open safetensors file ", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", size, " bytes, too short for the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) return absl::ErrnoToStatus(map_err, absl::StrCat("cannot mmap ", path));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->size_ = size;
  // Small files (tests, tiny models) are read in full soon: ask for read-ahead. Multi-GB shards are left
  // to demand paging so that opening a checkpoint stays cheap.
  if (size <= (256ull << 20)) ::madvise(map, size, MADV_WILLNEED);

  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensors(std::string_view(static_cast<const char*>(map), size), path);
  if (!header.ok()) return header.status();
  file->header_ = *std::move(header);
  const char* data = static_cast<const char*>(map) + file->header_.data_offset;
  for (size_t i = 0; i < file->header_.tensors.size(); ++i) {
    TensorInfo& t = file->header_.tensors[i];
    t.data = data + t.begin;
    file->index_.emplace(t.name, i);
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

}  // namespace quarry
