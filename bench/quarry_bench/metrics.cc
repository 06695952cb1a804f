// vLLM's benchmark metric definitions, reproduced number for number (see metrics.h).
#include "bench/quarry_bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace quarry::bench {

absl::StatusOr<Slo> ParseGoodput(const std::vector<std::string>& pairs) {
  Slo slo;
  for (const std::string& pair : pairs) {
    const size_t colon = pair.find(':');
    double ms = 0;
    if (colon == std::string::npos || !absl::SimpleAtod(pair.substr(colon + 1), &ms) || !(ms >= 0) ||
        !std::isfinite(ms)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput: expected KEY:MILLISECONDS with KEY in ttft, tpot, e2el, got \"", pair, "\""));
    }
    const std::string key = pair.substr(0, colon);
    if (key == "ttft") {
      slo.ttft_ms = ms;
    } else if (key == "tpot") {
      slo.tpot_ms = ms;
    } else if (key == "e2el") {
      slo.e2el_ms = ms;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput: unknown metric \"", key, "\" (valid: ttft, tpot, e2el)"));
    }
  }
  return slo;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double q = p / 100.0;
  const double virtual_index = static_cast<double>(v.size() - 1) * q;  // numpy 'linear'
  double prev = std::floor(virtual_index);
  prev = std::clamp(prev, 0.0, static_cast<double>(v.size() - 1));
  const size_t lo = static_cast<size_t>(prev);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double t = virtual_index - prev;
  const double a = v[lo], b = v[hi];
  const double diff = b - a;
  // numpy's _lerp: a + diff * t, computed from b for t >= 0.5 (monotonic and exact at t = 1).
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double StdDev(const std::vector<double>& v) {
  if (v.empty()) return 0;
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

Distribution Distribute(const std::vector<double>& seconds, const std::vector<double>& percentiles) {
  Distribution d;
  d.mean_ms = Mean(seconds) * 1000;
  d.std_ms = StdDev(seconds) * 1000;
  d.median_ms = Percentile(seconds, 50) * 1000;
  for (double p : percentiles) d.percentiles_ms.emplace_back(p, Percentile(seconds, p) * 1000);
  return d;
}

int OutputLength(const RequestResult& r) { return r.output_tokens > 0 ? r.output_tokens : r.received_tokens; }

BenchmarkMetrics ComputeMetrics(const std::vector<RequestResult>& outputs, double duration_s, const Slo& slo,
                                const std::vector<double>& percentiles) {
  BenchmarkMetrics m;
  std::vector<double> ttfts, tpots, all_tpots, itls, e2els;
  for (const RequestResult& r : outputs) {
    if (!r.success) {
      m.output_lens.push_back(0);
      ++m.failed;
      ++m.errors_by_code[r.status_code];
      continue;
    }
    const int out = OutputLength(r);
    m.output_lens.push_back(out);
    m.total_input += r.prompt_len > 0 ? r.prompt_len : r.server_prompt_tokens;
    double tpot = 0;
    if (out > 1) {
      tpot = (r.latency - r.ttft) / (out - 1);
      tpots.push_back(tpot);
    }
    all_tpots.push_back(tpot);  // <= 1 output token counts as TPOT 0 for goodput
    itls.insert(itls.end(), r.itl.begin(), r.itl.end());
    ttfts.push_back(r.ttft);
    e2els.push_back(r.latency);
    ++m.completed;
  }
  for (int n : m.output_lens) m.total_output += n;
  m.tpots = all_tpots;

  int good = 0;
  if (!slo.empty()) {
    for (size_t i = 0; i < ttfts.size(); ++i) {
      bool ok = true;
      if (slo.ttft_ms && ttfts[i] > *slo.ttft_ms / 1000) ok = false;
      if (slo.tpot_ms && all_tpots[i] > *slo.tpot_ms / 1000) ok = false;
      if (slo.e2el_ms && e2els[i] > *slo.e2el_ms / 1000) ok = false;
      good += ok;
    }
  }
  const double dur = duration_s > 0 ? duration_s : 1e-12;
  m.request_throughput = m.completed / dur;
  m.request_goodput = good / dur;
  m.output_throughput = static_cast<double>(m.total_output) / dur;
  m.total_token_throughput = static_cast<double>(m.total_input + m.total_output) / dur;
  m.ttft = Distribute(ttfts, percentiles);
  m.tpot = Distribute(tpots, percentiles);
  m.itl = Distribute(itls, percentiles);
  m.e2el = Distribute(e2els, percentiles);

  // Peak output rate and concurrency in 1-second buckets from the first successful start (vLLM).
  double min_start = 0, max_end = 0;
  bool any = false;
  for (const RequestResult& r : outputs) {
    if (!r.success) continue;
    min_start = any ? std::min(min_start, r.start_time) : r.start_time;
    max_end = any ? std::max(max_end, r.start_time + r.latency) : r.start_time + r.latency;
    any = true;
  }
  if (any) {
    const size_t buckets = static_cast<size_t>(std::ceil(max_end - min_start)) + 1;
    std::vector<double> tokens(buckets, 0), active(buckets, 0);
    auto bucket = [&](double t) { return std::min(buckets - 1, static_cast<size_t>(std::max(0.0, t - min_start))); };
    std::vector<std::pair<double, int>> events;
    for (const RequestResult& r : outputs) {
      if (!r.success) continue;
      double t = r.start_time + r.ttft;
      tokens[bucket(t)] += 1;
      for (double gap : r.itl) {
        t += gap;
        tokens[bucket(t)] += 1;
      }
      for (size_t s = bucket(r.start_time); s <= bucket(r.start_time + r.latency); ++s) active[s] += 1;
      events.emplace_back(r.start_time, +1);
      events.emplace_back(r.start_time + r.latency, -1);
    }
    m.max_output_tokens_per_s = *std::max_element(tokens.begin(), tokens.end());
    m.max_concurrent_requests = static_cast<int>(*std::max_element(active.begin(), active.end()));
    std::sort(events.begin(), events.end());  // ends (-1) sort before starts (+1) at the same instant
    int cur = 0;
    for (const auto& e : events) {
      cur += e.second;
      m.peak_concurrent_requests = std::max(m.peak_concurrent_requests, cur);
    }
  }
  return m;
}

}  // namespace quarry::bench
