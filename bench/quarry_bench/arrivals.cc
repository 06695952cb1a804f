// vLLM's request arrival process (vllm/benchmarks/serve.py get_request / _get_current_request_rate).
#include "bench/quarry_bench/arrivals.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace quarry::bench {

absl::StatusOr<Schedule> MakeSchedule(const ArrivalOptions& o, int n) {
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("number of requests must be >= 1, got ", n));
  if (!(o.burstiness > 0)) return absl::InvalidArgumentError(absl::StrCat("--burstiness must be > 0, got ", o.burstiness));
  if (!(o.request_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--request-rate must be > 0 (inf = all at once), got ", o.request_rate));
  }
  const bool ramp = !o.ramp_up_strategy.empty();
  if (ramp) {
    if (o.ramp_up_strategy != "linear" && o.ramp_up_strategy != "exponential") {
      return absl::InvalidArgumentError(
          absl::StrCat("--ramp-up-strategy must be linear or exponential, got \"", o.ramp_up_strategy, "\""));
    }
    if (!(o.ramp_up_start_rps > 0) || !(o.ramp_up_end_rps > 0) || std::isinf(o.ramp_up_start_rps) ||
        std::isinf(o.ramp_up_end_rps)) {
      return absl::InvalidArgumentError(absl::StrCat("--ramp-up-start-rps and --ramp-up-end-rps must be finite and > 0, got ",
                                                     o.ramp_up_start_rps, " and ", o.ramp_up_end_rps));
    }
    if (std::isfinite(o.request_rate)) {
      return absl::InvalidArgumentError("with --ramp-up-strategy the rate comes from the ramp; do not set --request-rate");
    }
  }
  std::mt19937_64 rng(o.seed);
  Schedule s;
  s.send_s.resize(n);
  s.rate.resize(n);
  for (int i = 0; i < n; ++i) {
    double rate = o.request_rate;
    if (ramp) {
      const double progress = static_cast<double>(i) / std::max(n - 1, 1);
      rate = o.ramp_up_strategy == "linear"
                 ? o.ramp_up_start_rps + (o.ramp_up_end_rps - o.ramp_up_start_rps) * progress
                 : o.ramp_up_start_rps * std::pow(o.ramp_up_end_rps / o.ramp_up_start_rps, progress);
    }
    s.rate[i] = rate;
    double delay = 0;
    if (std::isinf(rate)) {
      delay = 0;
    } else if (std::isinf(o.burstiness)) {
      delay = 1.0 / rate;
    } else {
      std::gamma_distribution<double> gamma(o.burstiness, 1.0 / (rate * o.burstiness));
      delay = gamma(rng);
    }
    s.send_s[i] = delay + (i > 0 ? s.send_s[i - 1] : 0.0);
  }
  if (!ramp && s.send_s.back() != 0) {
    // Rescale so the last send is exactly at N / rate (vLLM: stabilises throughput across seeds).
    const double factor = (n / o.request_rate) / s.send_s.back();
    for (double& t : s.send_s) t *= factor;
  }
  return s;
}

}  // namespace quarry::bench
