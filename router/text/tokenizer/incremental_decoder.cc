// Streaming detokenization (see incremental_decoder.h).
#include "router/text/tokenizer/incremental_decoder.h"

#include "router/text/tokenizer/utf8.h"

namespace quarry {

void IncrementalDecoder::Drain(std::string* out) {
  // Emit everything up to a trailing sequence that is invalid only because it is not finished yet. Invalid
  // subparts that can no longer complete are final: they become U+FFFD exactly as in a one-shot Decode.
  size_t i = 0;
  while (i < pending_.size()) {
    const size_t valid = ValidUtf8PrefixLength(std::string_view(pending_).substr(i));
    out->append(pending_, i, valid);
    i += valid;
    if (i >= pending_.size()) break;
    const Utf8Step st = ScanUtf8(pending_, i);
    if (st.truncated) break;  // may still complete: hold back
    out->append("\xEF\xBF\xBD");
    i += st.length;
  }
  pending_.erase(0, i);
}

absl::Status IncrementalDecoder::Add(absl::Span<const int32_t> ids, std::string* out) {
  absl::Status status;
  for (int32_t id : ids) {
    status = tokenizer_->AppendTokenBytes(id, skip_special_tokens_, &pending_);
    if (!status.ok()) break;
  }
  Drain(out);
  return status;
}

absl::StatusOr<std::string> IncrementalDecoder::Add(int32_t id) {
  std::string out;
  absl::Status status = Add(absl::MakeConstSpan(&id, 1), &out);
  if (!status.ok()) return status;
  return out;
}

void IncrementalDecoder::Finish(std::string* out) {
  AppendUtf8Lossy(pending_, out);
  pending_.clear();
}

std::string IncrementalDecoder::Finish() {
  std::string out;
  Finish(&out);
  return out;
}

}  // namespace quarry
