// RunReferenceFile: reads caseN.{prompt,prefill_logits,generated,step_logits,full_logits} and compares.
#include "worker/engine/reference_check.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "worker/engine/generator.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/io/safetensors.h"

namespace quarry {
namespace {

absl::StatusOr<std::vector<int32_t>> ReadIds(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat(f.path(), ": missing tensor ", name));
  if (t->dtype != StDType::kI64 || t->shape.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor ", name, " must be a 1-D I64 tensor"));
  }
  std::vector<int32_t> ids(t->shape[0]);
  const int64_t* src = static_cast<const int64_t*>(t->data);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(src[i]);
  return ids;
}

absl::StatusOr<const float*> ReadLogits(const SafetensorsFile& f, const std::string& name, int64_t rows,
                                        int64_t vocab) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat(f.path(), ": missing tensor ", name));
  if (t->dtype != StDType::kF32 || t->shape != std::vector<int64_t>{rows, vocab}) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor ", name, " must be F32 [", rows, ", ",
                                                   vocab, "] (vocab_size of the model)"));
  }
  return static_cast<const float*>(t->data);
}

absl::StatusOr<std::unique_ptr<SequenceHandle>> NewSequence(const StepModel& model, const ReferenceOptions& o,
                                                            int64_t kv_capacity) {
  if (o.new_sequence) return o.new_sequence(kv_capacity);
  return std::unique_ptr<SequenceHandle>(std::make_unique<SequenceState>(model.config(), kv_capacity));
}

// Runs `ids` through a fresh sequence in chunks and returns logits for every position.
absl::StatusOr<std::vector<float>> AllLogits(StepModel& model, const ReferenceOptions& o,
                                             const std::vector<int32_t>& ids, int64_t chunk) {
  const int64_t V = model.config().vocab_size, n = static_cast<int64_t>(ids.size());
  QUARRY_ASSIGN_OR_RETURN(std::unique_ptr<SequenceHandle> seq, NewSequence(model, o, n));
  std::vector<float> out(n * V);
  if (chunk <= 0) chunk = n;
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t m = std::min(chunk, n - off);
    ForwardSegment seg{seq->view(), ids.data() + off, m, LogitsMode::kAll};
    QUARRY_RETURN_IF_ERROR(model.Forward({&seg, 1}, out.data() + off * V));
  }
  return out;
}

}  // namespace

double MaxAbsDiff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

absl::StatusOr<std::vector<ReferenceCaseResult>> RunReferenceFile(StepModel& model, const std::string& path,
                                                                  const ReferenceOptions& options) {
  QUARRY_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
  const int64_t V = model.config().vocab_size;
  std::vector<ReferenceCaseResult> results;
  for (int i = 0;; ++i) {
    const std::string name = absl::StrCat("case", i);
    if (f->Find(name + ".prompt") == nullptr) break;
    ReferenceCaseResult r;
    r.name = name;
    QUARRY_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, ReadIds(*f, name + ".prompt"));
    QUARRY_ASSIGN_OR_RETURN(std::vector<int32_t> generated, ReadIds(*f, name + ".generated"));
    const int64_t L = static_cast<int64_t>(prompt.size()), G = static_cast<int64_t>(generated.size());
    if (L == 0 || G == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": ", name, " is empty"));
    r.prompt_tokens = L;
    QUARRY_ASSIGN_OR_RETURN(const float* ref_prefill, ReadLogits(*f, name + ".prefill_logits", L, V));
    QUARRY_ASSIGN_OR_RETURN(const float* ref_steps, ReadLogits(*f, name + ".step_logits", G, V));
    QUARRY_ASSIGN_OR_RETURN(const float* ref_full, ReadLogits(*f, name + ".full_logits", L + G - 1, V));

    // 1. Prefill logits of a full (or chunked) pass over the prompt.
    QUARRY_ASSIGN_OR_RETURN(std::vector<float> prefill, AllLogits(model, options, prompt, options.prefill_chunk));
    r.prefill_max_abs = MaxAbsDiff(prefill.data(), ref_prefill, L * V);

    // 2. Generation through the cache: prefill, then one decode step per reference token.
    QUARRY_ASSIGN_OR_RETURN(std::unique_ptr<SequenceHandle> seq_handle, NewSequence(model, options, L + G));
    SequenceView* seq = seq_handle->view();
    std::vector<float> logits(V);
    const int64_t chunk = options.prefill_chunk > 0 ? options.prefill_chunk : L;
    for (int64_t off = 0; off < L; off += chunk) {
      const int64_t m = std::min(chunk, L - off);
      ForwardSegment seg{seq, prompt.data() + off, m, off + m == L ? LogitsMode::kLast : LogitsMode::kNone};
      QUARRY_RETURN_IF_ERROR(model.Forward({&seg, 1}, logits.data()));
    }
    for (int64_t s = 0; s < G; ++s) {
      r.step_max_abs = std::max(r.step_max_abs, MaxAbsDiff(logits.data(), ref_steps + s * V, V));
      const int32_t ours = ArgMax(logits);
      if (ours != generated[s]) {
        if (r.token_mismatches++ == 0) {
          r.first_mismatch = absl::StrCat("step ", s, ": got token ", ours, ", reference ", generated[s]);
        }
      }
      if (s + 1 == G) break;
      ForwardSegment seg{seq, &generated[s], 1, LogitsMode::kLast};  // teacher-forced
      QUARRY_RETURN_IF_ERROR(model.Forward({&seg, 1}, logits.data()));
    }

    // 3. One cache-free pass over prompt + the first G-1 generated tokens.
    std::vector<int32_t> full = prompt;
    full.insert(full.end(), generated.begin(), generated.end() - 1);
    QUARRY_ASSIGN_OR_RETURN(std::vector<float> all, AllLogits(model, options, full, 0));
    r.full_max_abs = MaxAbsDiff(all.data(), ref_full, (L + G - 1) * V);

    r.ok = r.prefill_max_abs <= options.tolerance && r.step_max_abs <= options.tolerance &&
           r.full_max_abs <= options.tolerance && r.token_mismatches == 0;
    results.push_back(std::move(r));
  }
  if (results.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no case0.prompt tensor found"));
  return results;
}

}  // namespace quarry
