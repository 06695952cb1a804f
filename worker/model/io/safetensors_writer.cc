// Streaming safetensors writer: header, then each tensor's bytes in bounded chunks from its fill callback.
// Every file is written under a temporary name and renamed into place once complete.
#include "worker/model/io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

constexpr uint64_t kChunkBytes = 16ull << 20;

std::string JoinPath(const std::string& dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  return dir.back() == '/' ? absl::StrCat(dir, name) : absl::StrCat(dir, "/", name);
}

// Checks names, shapes and callbacks; returns each tensor's byte size.
absl::StatusOr<std::vector<uint64_t>> TensorBytes(const std::vector<TensorToWrite>& tensors) {
  std::vector<uint64_t> bytes;
  std::set<std::string_view> names;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat("invalid tensor name '", t.name, "'"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' is listed twice"));
    }
    uint64_t n = StDTypeSize(t.dtype);
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': unknown dtype"));
    for (int64_t d : t.shape) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': negative dimension ", d));
      if (d != 0 && n > std::numeric_limits<int64_t>::max() / static_cast<uint64_t>(d)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': shape overflows"));
      }
      n *= static_cast<uint64_t>(d);
    }
    if (n != 0 && !t.fill) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' has no fill callback"));
    }
    bytes.push_back(n);
  }
  return bytes;
}

// The 8-byte length plus the JSON header, padded with spaces to a multiple of 8 bytes.
std::string HeaderBytes(const std::vector<const TensorToWrite*>& tensors, const std::vector<uint64_t>& bytes) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    header[tensors[i]->name] = {{"dtype", StDTypeName(tensors[i]->dtype)},
                                {"shape", tensors[i]->shape},
                                {"data_offsets", {offset, offset + bytes[i]}}};
    offset += bytes[i];
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + json;
}

class OutFile {
 public:
  ~OutFile() { Abandon(); }

  absl::Status Create(const std::string& final_path) {
    final_ = final_path;
    tmp_ = absl::StrCat(final_path, ".tmp.", ::getpid());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp_));
    return absl::OkStatus();
  }

  absl::Status Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", tmp_));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }

  absl::Status Commit() {
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot close ", tmp_));
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot rename ", tmp_, " to ", final_));
    }
    tmp_.clear();
    return absl::OkStatus();
  }

 private:
  void Abandon() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
  }

  std::string final_, tmp_;
  int fd_ = -1;
};

struct Progress {
  uint64_t done = 0;
  uint64_t total = 0;
  const std::function<void(uint64_t, uint64_t)>* callback = nullptr;
  void Add(uint64_t n) {
    done += n;
    if (callback != nullptr && *callback) (*callback)(done, total);
  }
};

// Two chunk buffers: while one is written (on a helper thread), the next chunk is filled into the other.
struct ChunkBuffers {
  std::vector<char> data[2];
};

absl::Status WriteOneFile(const std::string& path, const std::vector<const TensorToWrite*>& tensors,
                          const std::vector<uint64_t>& bytes, ChunkBuffers& buffers, Progress& progress) {
  OutFile out;
  absl::Status s = out.Create(path);
  if (!s.ok()) return s;
  const std::string header = HeaderBytes(tensors, bytes);
  s = out.Write(header.data(), header.size());
  if (!s.ok()) return s;
  std::future<absl::Status> pending;  // the write of the previous chunk
  size_t pending_bytes = 0;
  auto finish_pending = [&]() -> absl::Status {
    if (!pending.valid()) return absl::OkStatus();
    absl::Status st = pending.get();
    if (st.ok()) progress.Add(pending_bytes);
    return st;
  };
  int cur = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = *tensors[i];
    const uint64_t elem = StDTypeSize(t.dtype);
    const int64_t numel = static_cast<int64_t>(bytes[i] / elem);
    const int64_t per_chunk = static_cast<int64_t>(std::max<uint64_t>(1, kChunkBytes / elem));
    for (int64_t first = 0; first < numel; first += per_chunk) {
      const int64_t count = std::min(per_chunk, numel - first);
      const size_t n = static_cast<size_t>(count) * elem;
      std::vector<char>& buffer = buffers.data[cur];
      if (buffer.size() < n) buffer.resize(n);
      t.fill(first, count, buffer.data());  // overlaps the write of the other buffer
      s = finish_pending();
      if (!s.ok()) return s;
      const char* p = buffer.data();
      pending = std::async(std::launch::async, [&out, p, n] { return out.Write(p, n); });
      pending_bytes = n;
      cur ^= 1;
    }
  }
  s = finish_pending();
  if (!s.ok()) return s;
  return out.Commit();
}

void RemoveIfExists(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

}  // namespace

absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  absl::StatusOr<std::vector<uint64_t>> bytes = TensorBytes(tensors);
  if (!bytes.ok()) return bytes.status();
  std::vector<const TensorToWrite*> ptrs;
  for (const TensorToWrite& t : tensors) ptrs.push_back(&t);
  ChunkBuffers buffers;
  Progress progress;
  return WriteOneFile(path, ptrs, *bytes, buffers, progress);
}

absl::Status WriteSafetensors(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                              const WriteOptions& options) {
  absl::StatusOr<std::vector<uint64_t>> bytes = TensorBytes(tensors);
  if (!bytes.ok()) return bytes.status();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create directory ", dir, ": ", ec.message()));

  // Greedy sharding in the given order: a shard is closed when the next tensor would push it past the
  // limit (a single tensor larger than the limit gets a shard of its own).
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (options.max_shard_bytes > 0 && !shards.back().empty() &&
        shard_bytes + (*bytes)[i] > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += (*bytes)[i];
    total += (*bytes)[i];
  }

  Progress progress{0, total, &options.progress};
  ChunkBuffers buffers;
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  auto write_shard = [&](const std::vector<size_t>& members, const std::string& path) {
    std::vector<const TensorToWrite*> ptrs;
    std::vector<uint64_t> sizes;
    for (size_t i : members) {
      ptrs.push_back(&tensors[i]);
      sizes.push_back((*bytes)[i]);
    }
    return WriteOneFile(path, ptrs, sizes, buffers, progress);
  };

  if (shards.size() == 1) {
    // A stale index would take precedence over the new file when the checkpoint is opened.
    RemoveIfExists(index_path);
    return write_shard(shards[0], JoinPath(dir, "model.safetensors"));
  }

  RemoveIfExists(index_path);  // the index is written last: its presence means every shard is complete
  RemoveIfExists(JoinPath(dir, "model.safetensors"));
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::map<std::string, std::string> sorted_map;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    absl::Status st = write_shard(shards[s], JoinPath(dir, name));
    if (!st.ok()) return st;
    for (size_t i : shards[s]) sorted_map[tensors[i].name] = name;
  }
  for (const auto& [tensor, file] : sorted_map) weight_map[tensor] = file;
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  OutFile out;
  absl::Status st = out.Create(index_path);
  if (st.ok()) st = out.Write(text.data(), text.size());
  if (st.ok()) st = out.Commit();
  return st;
}

}  // namespace quarry
