// The weight bytes one decode step must read (the numerator of the benchmarks' bandwidth floor).
#pragma once

#include "worker/model/weights.h"

namespace quarry {

// Every dense matrix once (projections, router, shared expert, LM head) plus the routed experts touched:
// exactly k per layer at batch 1, the expected number of distinct experts under uniform routing above.
double DecodeWeightBytes(const ModelWeights& w, int batch);

}  // namespace quarry
