// The public tokenizer of Quarry: loads a Hugging Face byte-level BPE tokenizer.json (+ tokenizer_config.json),
// encodes text to token ids (added tokens first, then pre-tokenizer + BPE) and decodes ids back to text.
// Immutable after loading; Encode/Decode are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "router/text/tokenizer/tokenizer_json.h"

namespace quarry {

class AddedTokenMatcher;
class BpeModel;
class PreTokenizer;

struct EncodeOptions {
  // When false, added-token strings in the text (special or not) are encoded as ordinary text, so that user
  // text cannot inject control tokens such as <|start_of_role|>.
  bool parse_special = true;
};

// Ids of the special tokens named in tokenizer_config.json; -1 when not set.
struct SpecialTokenIds {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t pad = -1;
  int32_t unk = -1;
};

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // config_path may be empty (no tokenizer_config.json).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFiles(const std::string& tokenizer_json_path,
                                                              const std::string& config_path);
  // From file contents; the names are used in error messages. config_json may be empty.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view tokenizer_json_name,
                                                             std::string_view config_json = {},
                                                             std::string_view config_name = "tokenizer_config.json");
  ~Tokenizer();

  // Encodes text (any bytes: invalid UTF-8 is encoded byte by byte and round-trips). Granite adds no BOS/EOS.
  // Errors only when the PCRE2 fallback regex hits its limits (RESOURCE_EXHAUSTED).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& options = {}) const;
  absl::Status EncodeAppend(std::string_view text, const EncodeOptions& options, std::vector<int32_t>* out) const;

  // Decodes ids to text; invalid UTF-8 in the result becomes U+FFFD. skip_special_tokens drops added tokens
  // with special = true only. INVALID_ARGUMENT for an id that is not a token.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Appends the raw bytes of one token (nothing for a skipped special token). INVALID_ARGUMENT for a bad id.
  absl::Status AppendTokenBytes(int32_t id, bool skip_special_tokens, std::string* out) const;

  // Token string (added-token content, else the byte-level vocab string such as "Ġhello") <-> id.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;

  bool IsSpecial(int32_t id) const { return id >= 0 && id < vocab_size() && special_[id]; }
  bool IsAddedToken(int32_t id) const { return id >= 0 && id < vocab_size() && added_[id]; }
  // One past the largest id (vocab and added tokens): 100352 for Granite 4.0.
  int32_t vocab_size() const { return static_cast<int32_t>(special_.size()); }
  const SpecialTokenIds& special_ids() const { return special_ids_; }
  const TokenizerConfig& config() const { return config_; }
  const std::vector<AddedTokenSpec>& added_tokens() const { return added_tokens_; }

 private:
  Tokenizer();
  absl::Status EncodeSegment(std::string_view text, std::vector<int32_t>* out) const;

  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<AddedTokenMatcher> added_matcher_;
  std::vector<AddedTokenSpec> added_tokens_;
  std::vector<int32_t> added_index_;  // id -> index into added_tokens_, -1 if not added
  std::vector<bool> special_;
  std::vector<bool> added_;
  SpecialTokenIds special_ids_;
  TokenizerConfig config_;
};

}  // namespace quarry
