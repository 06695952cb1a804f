// Streaming detokenization for one generated sequence: turns token ids into text pieces that never split a UTF-8
// character and never need revising (incomplete sequences are held back until they complete or the stream ends).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "router/text/tokenizer/tokenizer.h"

namespace quarry {

// The concatenation of everything Add and Finish return equals tokenizer.Decode(all ids, skip_special_tokens).
// Not thread-safe (one per stream); the tokenizer must outlive it.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Appends to *out the text that `ids` make final. INVALID_ARGUMENT for an unknown id; the ids before it are
  // applied, nothing after it.
  absl::Status Add(absl::Span<const int32_t> ids, std::string* out);
  absl::StatusOr<std::string> Add(int32_t id);

  // Appends the held-back bytes (an unfinished sequence becomes U+FFFD) and resets the decoder.
  void Finish(std::string* out);
  std::string Finish();

  // Bytes held back (0..3): an incomplete UTF-8 sequence at the end of the stream so far.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  void Drain(std::string* out);

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace quarry
