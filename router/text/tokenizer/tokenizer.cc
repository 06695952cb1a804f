// Tokenizer loading, encoding and decoding (see tokenizer.h).
#include "router/text/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/tokenizer/added_tokens.h"
#include "router/text/tokenizer/bpe.h"
#include "router/text/tokenizer/pretokenizer.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  const std::filesystem::path d(dir);
  const std::string config = (d / "tokenizer_config.json").string();
  std::error_code ec;
  return FromFiles((d / "tokenizer.json").string(), std::filesystem::exists(config, ec) ? config : "");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFiles(const std::string& tokenizer_json_path,
                                                                const std::string& config_path) {
  QUARRY_ASSIGN_OR_RETURN(std::string json, ReadTokenizerFile(tokenizer_json_path));
  std::string config;
  if (!config_path.empty()) {
    QUARRY_ASSIGN_OR_RETURN(config, ReadTokenizerFile(config_path));
  }
  return FromJson(json, tokenizer_json_path, config, config_path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view tokenizer_json_name,
                                                               std::string_view config_json,
                                                               std::string_view config_name) {
  QUARRY_ASSIGN_OR_RETURN(TokenizerSpec spec, ParseTokenizerJson(tokenizer_json, tokenizer_json_name));
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  if (!config_json.empty()) {
    QUARRY_ASSIGN_OR_RETURN(tok->config_, ParseTokenizerConfig(config_json, config_name));
  }
  QUARRY_ASSIGN_OR_RETURN(tok->bpe_, BpeModel::Create(spec));
  QUARRY_ASSIGN_OR_RETURN(tok->pre_, PreTokenizer::Create(spec.pre_tokenizer, spec.source));
  int32_t limit = tok->bpe_->id_limit();
  for (const AddedTokenSpec& a : spec.added_tokens) {
    if (a.id >= (1 << 24)) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.source, ": added token '", a.content, "' has id ", a.id, ", above the supported maximum"));
    }
    limit = std::max(limit, a.id + 1);
  }
  tok->added_tokens_ = spec.added_tokens;
  tok->added_index_.assign(limit, -1);
  tok->special_.assign(limit, false);
  tok->added_.assign(limit, false);
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const AddedTokenSpec& a = spec.added_tokens[i];
    if (tok->added_[a.id]) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": added_tokens: id ", a.id, " appears twice"));
    }
    tok->added_index_[a.id] = static_cast<int32_t>(i);
    tok->added_[a.id] = true;
    tok->special_[a.id] = a.special;
  }
  tok->added_matcher_ = std::make_unique<AddedTokenMatcher>(spec.added_tokens);
  const std::string config_source(config_name);
  auto special = [&](const std::string& name, const std::string& content, int32_t* out) -> absl::Status {
    if (content.empty()) return absl::OkStatus();
    auto id = tok->TokenToId(content);
    if (!id) {
      return absl::InvalidArgumentError(absl::StrCat(config_source, ": ", name, " '", content,
                                                     "' is not a token of ", spec.source));
    }
    *out = *id;
    return absl::OkStatus();
  };
  QUARRY_RETURN_IF_ERROR(special("bos_token", tok->config_.bos_token, &tok->special_ids_.bos));
  QUARRY_RETURN_IF_ERROR(special("eos_token", tok->config_.eos_token, &tok->special_ids_.eos));
  QUARRY_RETURN_IF_ERROR(special("pad_token", tok->config_.pad_token, &tok->special_ids_.pad));
  QUARRY_RETURN_IF_ERROR(special("unk_token", tok->config_.unk_token, &tok->special_ids_.unk));
  return tok;
}

absl::Status Tokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return absl::OkStatus();
  thread_local PreTokenizerScratch scratch;
  thread_local std::vector<std::string_view> pieces;
  // Long texts are pre-tokenized in windows to bound the piece list. Only with the GPT-4 matcher, where a "\n"
  // followed by an ASCII non-whitespace byte always ends a piece, so cutting there changes nothing.
  constexpr size_t kWindow = 1 << 20;
  const bool windowed = text.size() > kWindow && pre_->all_fast();
  while (!text.empty()) {
    size_t cut = text.size();
    if (windowed && text.size() > kWindow) {
      for (size_t p = text.rfind('\n', kWindow); p != std::string_view::npos && p >= kWindow / 2;
           p = p > 0 ? text.rfind('\n', p - 1) : std::string_view::npos) {
        const unsigned char c = static_cast<unsigned char>(text[p + 1]);
        if (c < 0x80 && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\v' && c != '\f') {
          cut = p + 1;
          break;
        }
      }
    }
    pieces.clear();
    QUARRY_RETURN_IF_ERROR(pre_->Split(text.substr(0, cut), &scratch, &pieces));
    for (std::string_view p : pieces) bpe_->EncodePiece(p, out);
    text.remove_prefix(cut);
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodeAppend(std::string_view text, const EncodeOptions& options,
                                     std::vector<int32_t>* out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t b = text.size(), e = text.size();
    int32_t id = -1;
    const bool found = options.parse_special && added_matcher_->FindNext(text, pos, &b, &e, &id);
    QUARRY_RETURN_IF_ERROR(EncodeSegment(text.substr(pos, b - pos), out));
    if (!found) break;
    out->push_back(id);
    pos = e;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  QUARRY_RETURN_IF_ERROR(EncodeAppend(text, options, &ids));
  return ids;
}

absl::Status Tokenizer::AppendTokenBytes(int32_t id, bool skip_special_tokens, std::string* out) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is out of range [0, ", vocab_size(), ")"));
  }
  if (added_[id]) {
    if (!(skip_special_tokens && special_[id])) out->append(added_tokens_[added_index_[id]].content);
    return absl::OkStatus();
  }
  if (!bpe_->has_token(id)) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " has no token"));
  out->append(bpe_->token_bytes(id));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) QUARRY_RETURN_IF_ERROR(AppendTokenBytes(id, skip_special_tokens, &bytes));
  if (IsValidUtf8(bytes)) return bytes;
  std::string text;
  AppendUtf8Lossy(bytes, &text);
  return text;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedTokenSpec& a : added_tokens_) {
    if (a.content == token) return a.id;
  }
  return bpe_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::nullopt;
  if (added_[id]) return added_tokens_[added_index_[id]].content;
  if (!bpe_->has_token(id)) return std::nullopt;
  return bpe_->token_string(id);
}

}  // namespace quarry
