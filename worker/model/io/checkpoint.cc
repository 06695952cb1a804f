// Checkpoint directories: model.safetensors or shards listed by model.safetensors.index.json.
#include "worker/model/io/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string JoinPath(const std::string& dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A shard name from the index must stay inside the checkpoint directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return buffer.str();
}

// Parses the index's weight_map into (tensor name -> shard file name).
absl::StatusOr<std::map<std::string, std::string>> ParseIndex(const std::string& index_path) {
  absl::StatusOr<std::string> text = ReadTextFile(index_path);
  if (!text.ok()) return text.status();
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(*text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": expected a JSON object"));
  }
  auto wm = root.find("weight_map");
  if (wm == root.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing object field 'weight_map'"));
  }
  std::map<std::string, std::string> weight_map;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry '", it.key(), "' is not a file name string"));
    }
    const std::string& file = it->get_ref<const std::string&>();
    if (!IsPlainFileName(file)) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map entry '", it.key(),
                                                     "' names file '", file,
                                                     "', which is not a plain file name inside the directory"));
    }
    weight_map.emplace(it.key(), file);
  }
  if (weight_map.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is empty"));
  }
  return weight_map;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string index_path = JoinPath(dir, kIndexFile);
  const std::string single_path = JoinPath(dir, kSingleFile);

  if (IsRegularFile(index_path)) {
    absl::StatusOr<std::map<std::string, std::string>> weight_map = ParseIndex(index_path);
    if (!weight_map.ok()) return weight_map.status();
    std::map<std::string, size_t> shard_index;  // file name -> files_ index
    for (const auto& [tensor, file] : *weight_map) {
      if (shard_index.count(file)) continue;
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> shard = SafetensorsFile::Open(JoinPath(dir, file));
      if (!shard.ok()) {
        return absl::Status(shard.status().code(),
                            absl::StrCat(index_path, ": shard '", file, "' (holding tensor '", tensor,
                                         "'): ", shard.status().message()));
      }
      shard_index.emplace(file, ckpt->files_.size());
      ckpt->files_.push_back(*std::move(shard));
    }
    for (const auto& [tensor, file] : *weight_map) {
      size_t fi = shard_index.at(file);
      if (ckpt->files_[fi]->Find(tensor) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": maps tensor '", tensor, "' to '", file,
                                                       "', which does not hold it"));
      }
      ckpt->names_.emplace_back(tensor, fi);  // std::map iteration: already sorted
    }
    return ckpt;
  }

  if (IsRegularFile(single_path)) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(single_path);
    if (!file.ok()) return file.status();
    ckpt->files_.push_back(*std::move(file));
    for (const TensorInfo& t : ckpt->files_[0]->tensors()) ckpt->names_.emplace_back(t.name, 0);
    std::sort(ckpt->names_.begin(), ckpt->names_.end());
    return ckpt;
  }

  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  return absl::NotFoundError(
      absl::StrCat("checkpoint directory ", dir, " holds neither ", kSingleFile, " nor ", kIndexFile));
}

TensorRef Checkpoint::Find(std::string_view name) const {
  auto it = std::lower_bound(names_.begin(), names_.end(), name,
                             [](const std::pair<std::string, size_t>& e, std::string_view n) { return e.first < n; });
  if (it == names_.end() || it->first != name) return TensorRef{};
  const SafetensorsFile* file = files_[it->second].get();
  return TensorRef{file->Find(name), file};
}

absl::StatusOr<TensorRef> Checkpoint::Require(std::string_view name_in, const std::vector<int64_t>& shape,
                                              const std::vector<StDType>& allowed) const {
  TensorRef ref = Find(name_in);
  const absl::string_view name(name_in.data(), name_in.size());
  if (ref.info == nullptr) {
    std::vector<std::string> files;
    for (const auto& f : files_) files.push_back(BaseName(f->path()));
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' is missing from ", dir_,
                                            " (files: ", absl::StrJoin(files, ", "), ")"));
  }
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), ref.info->dtype) == allowed.end()) {
    std::vector<std::string> names;
    for (StDType t : allowed) names.push_back(StDTypeName(t));
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", ref.file->path(), " has dtype ",
                                                   StDTypeName(ref.info->dtype), ", expected ",
                                                   names.size() == 1 ? "" : "one of ", absl::StrJoin(names, ", ")));
  }
  if (ref.info->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", ref.file->path(), " has shape ",
                                                   ShapeString(ref.info->shape), ", expected ",
                                                   ShapeString(shape)));
  }
  return ref;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> out;
  out.reserve(names_.size());
  for (const auto& [name, file] : names_) out.push_back(name);
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, fi] : names_) {
    const TensorInfo* t = files_[fi]->Find(name);
    if (t != nullptr) total += t->end - t->begin;
  }
  return total;
}

}  // namespace quarry
