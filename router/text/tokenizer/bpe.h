// Byte-level BPE model: the vocabulary (GPT-2 byte-to-unicode strings <-> raw bytes), the merge rank table keyed
// by pair of ids, and the merge loop for one pre-token with a per-thread bounded cache.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "router/text/tokenizer/tokenizer_json.h"

namespace quarry {

// GPT-2 bytes_to_unicode: the code point that stands for byte b in byte-level token strings.
uint32_t ByteToUnicode(uint8_t b);

class BpeModel {
 public:
  // Builds the model from spec.vocab / spec.merges. INVALID_ARGUMENT (naming spec.source) for duplicate ids,
  // merges that refer to unknown tokens or whose result is not in the vocabulary, and missing byte tokens.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const TokenizerSpec& spec);

  // Appends the ids of one pre-token (raw bytes, any content).
  void EncodePiece(std::string_view piece, std::vector<int32_t>* out) const;

  // Vocabulary. Ids without a vocab entry have an empty string and has_token() false.
  int32_t id_limit() const { return static_cast<int32_t>(token_strings_.size()); }
  bool has_token(int32_t id) const { return id >= 0 && id < id_limit() && present_[id]; }
  const std::string& token_string(int32_t id) const { return token_strings_[id]; }  // byte-level form
  const std::string& token_bytes(int32_t id) const { return token_bytes_[id]; }      // raw bytes
  std::optional<int32_t> TokenToId(std::string_view token_string) const;
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  void MergeSmall(std::string_view piece, std::vector<int32_t>* out) const;
  void MergeLarge(std::string_view piece, std::vector<int32_t>* out) const;

  uint64_t serial_ = 0;  // identifies this model in the per-thread cache
  bool ignore_merges_ = false;
  int32_t byte_ids_[256] = {};
  absl::flat_hash_map<uint64_t, Merge> merges_;
  absl::flat_hash_map<std::string, int32_t> string_to_id_;
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;  // only with ignore_merges
  std::vector<std::string> token_strings_;
  std::vector<std::string> token_bytes_;
  std::vector<bool> present_;
};

}  // namespace quarry
