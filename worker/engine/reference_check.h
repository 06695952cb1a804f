// Runs a golden reference file (the format of tests/data/golden/*/reference.safetensors) against the model:
// prefill logits, greedy tokens with their step logits (prefill + decode through the cache), full logits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/step_model.h"

namespace quarry {

struct ReferenceOptions {
  double tolerance = 2e-3;    // max |Δlogit| allowed
  int64_t prefill_chunk = 0;  // 0 = the whole prompt in one step
  // Where sequences live (e.g. a device model's pools); nullptr = host SequenceState.
  std::function<absl::StatusOr<std::unique_ptr<SequenceHandle>>(int64_t kv_capacity)> new_sequence;
};

struct ReferenceCaseResult {
  std::string name;              // "case0"
  int64_t prompt_tokens = 0;
  double prefill_max_abs = 0;    // vs caseN.prefill_logits
  double step_max_abs = 0;       // vs caseN.step_logits (teacher-forced with the reference tokens)
  double full_max_abs = 0;       // vs caseN.full_logits
  int64_t token_mismatches = 0;  // greedy tokens that differ from caseN.generated
  bool ok = false;
  std::string first_mismatch;    // description when a token differs
};

// max |a - b|; +inf when any value is NaN/inf on either side or sizes differ.
double MaxAbsDiff(const float* a, const float* b, int64_t n);

// One result per case found (case0, case1, ...). Errors: unreadable file, no cases, malformed tensors.
absl::StatusOr<std::vector<ReferenceCaseResult>> RunReferenceFile(StepModel& model, const std::string& path,
                                                                  const ReferenceOptions& options);

}  // namespace quarry
