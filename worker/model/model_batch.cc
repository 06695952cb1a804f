// BuildBatch: validation and flattening of ForwardSegments.
#include "worker/model/model_batch.h"

#include "absl/strings/str_cat.h"

namespace quarry {

absl::Status BuildBatch(const ModelConfig& c, std::span<const ForwardSegment> segments, Model::Batch* b) {
  const bool has_attention = c.num_attention_layers() > 0;
  for (size_t s = 0; s < segments.size(); ++s) {
    const ForwardSegment& seg = segments[s];
    if (seg.n < 0 || (seg.n > 0 && seg.tokens == nullptr) || seg.seq == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("segment ", s, ": missing tokens or sequence state"));
    }
    if (seg.n == 0) {
      if (seg.logits != LogitsMode::kNone) {
        return absl::InvalidArgumentError(absl::StrCat("segment ", s, ": logits requested for zero tokens"));
      }
      continue;
    }
    SequenceView& v = *seg.seq;
    if (static_cast<int64_t>(v.mamba.size()) != c.num_mamba_layers() ||
        static_cast<int64_t>(v.attention.size()) != c.num_attention_layers()) {
      return absl::InvalidArgumentError(absl::StrCat("segment ", s, ": sequence state has ", v.mamba.size(),
                                                     " Mamba and ", v.attention.size(),
                                                     " attention layers, the model needs ",
                                                     c.num_mamba_layers(), " and ", c.num_attention_layers()));
    }
    if (has_attention && v.length + seg.n > v.kv_capacity) {
      return absl::InvalidArgumentError(absl::StrCat("segment ", s, ": ", v.length, " cached + ", seg.n,
                                                     " new tokens exceed the KV capacity of ", v.kv_capacity));
    }
    for (int64_t i = 0; i < seg.n; ++i) {
      if (seg.tokens[i] < 0 || seg.tokens[i] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("segment ", s, ": token id ", seg.tokens[i],
                                                       " at position ", i, " is outside the vocabulary [0, ",
                                                       c.vocab_size, ")"));
      }
    }
    for (size_t o = 0; o < s; ++o) {
      if (segments[o].seq == seg.seq && segments[o].n > 0) {
        return absl::InvalidArgumentError(absl::StrCat("segments ", o, " and ", s, " use the same sequence"));
      }
    }
    b->spans.push_back({seg.seq, b->tokens, seg.n});
    b->ids.insert(b->ids.end(), seg.tokens, seg.tokens + seg.n);
    if (seg.logits == LogitsMode::kAll) {
      for (int64_t i = 0; i < seg.n; ++i) b->logit_rows.push_back(b->tokens + i);
    } else if (seg.logits == LogitsMode::kLast) {
      b->logit_rows.push_back(b->tokens + seg.n - 1);
    }
    b->tokens += seg.n;
  }
  return absl::OkStatus();
}

}  // namespace quarry
