// quarry-bench arrival schedule, as vLLM's get_request: per-request rates (fixed, or ramped linearly /
// exponentially), Gamma inter-arrival gaps (shape = burstiness; 1 = Poisson), cumulative send times rescaled so
// that the last send lands at N / rate when the rate is fixed. Seeded mt19937_64 (statistically, not
// bit-for-bit, equal to numpy's generator).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry::bench {

struct ArrivalOptions {
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf = all at once
  double burstiness = 1.0;          // Gamma shape; inf = constant gaps of 1 / rate
  std::string ramp_up_strategy;     // "", "linear" or "exponential"
  double ramp_up_start_rps = 0;
  double ramp_up_end_rps = 0;
  uint64_t seed = 0;
};

struct Schedule {
  std::vector<double> send_s;  // per request: seconds after the benchmark start
  std::vector<double> rate;    // per request: the request rate in force when it was scheduled
};

// INVALID_ARGUMENT for burstiness <= 0, rate <= 0, ramp-up without both rates > 0 or with a finite
// --request-rate, an unknown strategy, or n < 1.
absl::StatusOr<Schedule> MakeSchedule(const ArrivalOptions& options, int n);

}  // namespace quarry::bench
