// quarry-cpu-bench: CPU engine throughput (decode at several batch sizes, prefill) against the
// memory-bandwidth floor measured in the same run. Prints a table and writes JSON.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "bench/decode_bytes.h"
#include "worker/engine/generator.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Streaming read bandwidth (bytes read / s) with all threads: best of several passes over `bytes`.
double MeasureReadBandwidth(size_t bytes) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> buf(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    auto t = Clock::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i += 16) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(&buf[i]));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(&buf[i + 8]));
      }
      float tmp[8];
      _mm256_storeu_ps(tmp, _mm256_add_ps(acc0, acc1));
      for (float v : tmp) total += v;
    }
    sink = sink + total;
    best = std::max(best, bytes / Since(t));
  }
  return best;
}

struct Row {
  std::string name;
  int batch = 0;
  int64_t tokens = 0;
  double seconds = 0;
  double floor_seconds = 0;  // weight bytes / bandwidth (decode only)
};

}  // namespace
}  // namespace quarry

int main(int argc, char** argv) {
  using namespace quarry;
  CLI::App app{"quarry-cpu-bench: CPU engine decode/prefill throughput vs the memory-bandwidth floor"};
  std::string model_dir, json_path = "cpu-bench.json";
  std::vector<int> batches = {1, 4, 16};
  int steps = 8, context = 64, prefill = 512, threads = 0;
  app.add_option("--model", model_dir, "Checkpoint directory")->required();
  app.add_option("--batches", batches, "Decode batch sizes")->delimiter(',')->capture_default_str();
  app.add_option("--steps", steps, "Timed decode steps per batch size")->capture_default_str();
  app.add_option("--context", context, "Prompt tokens per sequence before decode")->capture_default_str();
  app.add_option("--prefill", prefill, "Prefill length (0 = skip)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all)")->capture_default_str();
  app.add_option("--json", json_path, "Where to write the JSON results")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) omp_set_num_threads(threads);

  std::fprintf(stderr, "measuring read bandwidth...\n");
  const double bw = MeasureReadBandwidth(size_t{1} << 30);
  std::fprintf(stderr, "loading %s...\n", model_dir.c_str());
  WeightLoadOptions load;
  load.prefault = true;
  auto weights = LoadModelDir(model_dir, load);
  if (!weights.ok()) {
    std::fprintf(stderr, "quarry-cpu-bench: %s\n", std::string(weights.status().message()).c_str());
    return 2;
  }
  const ModelConfig& c = (*weights)->config;
  Model model(**weights);
  const int64_t V = c.vocab_size;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(std::min<int64_t>(V, 100000) - 1));
  std::vector<Row> rows;

  for (int b : batches) {
    std::vector<std::unique_ptr<SequenceState>> seqs;
    std::vector<int32_t> next(b);
    std::vector<float> logits(static_cast<size_t>(b) * V);
    for (int i = 0; i < b; ++i) {
      seqs.push_back(std::make_unique<SequenceState>(c, context + steps + 2));
      std::vector<int32_t> prompt(context);
      for (int32_t& t : prompt) t = tok(rng);
      ForwardSegment seg{seqs.back()->view(), prompt.data(), context, LogitsMode::kLast};
      if (!model.Forward({&seg, 1}, logits.data()).ok()) return 2;
      next[i] = ArgMax({logits.data(), static_cast<size_t>(V)});
    }
    auto run_step = [&]() {
      std::vector<ForwardSegment> segs;
      for (int i = 0; i < b; ++i) segs.push_back({seqs[i]->view(), &next[i], 1, LogitsMode::kLast});
      absl::Status st = model.Forward(segs, logits.data());
      for (int i = 0; i < b; ++i) next[i] = ArgMax({logits.data() + static_cast<size_t>(i) * V, static_cast<size_t>(V)});
      return st;
    };
    if (!run_step().ok()) return 2;  // warm-up
    auto t = Clock::now();
    for (int s = 0; s < steps; ++s) {
      if (!run_step().ok()) return 2;
    }
    Row r;
    r.name = "decode";
    r.batch = b;
    r.tokens = static_cast<int64_t>(b) * steps;
    r.seconds = Since(t);
    r.floor_seconds = steps * DecodeWeightBytes(**weights, b) / bw;
    rows.push_back(r);
    std::fprintf(stderr, "decode batch %d: %.2f tok/s\n", b, r.tokens / r.seconds);
  }
  if (prefill > 0) {
    SequenceState seq(c, prefill);
    std::vector<int32_t> prompt(prefill);
    for (int32_t& t : prompt) t = tok(rng);
    std::vector<float> logits(V);
    ForwardSegment seg{seq.view(), prompt.data(), prefill, LogitsMode::kLast};
    auto t = Clock::now();
    if (!model.Forward({&seg, 1}, logits.data()).ok()) return 2;
    Row r;
    r.name = "prefill";
    r.batch = 1;
    r.tokens = prefill;
    r.seconds = Since(t);
    rows.push_back(r);
  }

  std::printf("\nQuarry CPU engine: %s, %d threads, read bandwidth %.1f GB/s, weights %.2f GB mapped\n",
              model_dir.c_str(), omp_get_max_threads(), bw / 1e9, (*weights)->mapped_bytes / 1e9);
  std::printf("%-8s %6s %8s %10s %10s %12s %14s %10s\n", "phase", "batch", "tokens", "seconds", "tok/s", "ms/step",
              "floor tok/s", "of floor");
  nlohmann::json out;
  out["model"] = model_dir;
  out["threads"] = omp_get_max_threads();
  out["read_bandwidth_gbps"] = bw / 1e9;
  out["mapped_weight_bytes"] = (*weights)->mapped_bytes;
  for (const Row& r : rows) {
    const double tps = r.tokens / r.seconds;
    const double steps_run = r.name == "decode" ? static_cast<double>(r.tokens) / r.batch : 1.0;
    const double floor_tps = r.floor_seconds > 0 ? r.tokens / r.floor_seconds : 0;
    std::printf("%-8s %6d %8lld %10.3f %10.2f %12.1f %14.2f %9.0f%%\n", r.name.c_str(), r.batch,
                static_cast<long long>(r.tokens), r.seconds, tps, 1e3 * r.seconds / steps_run, floor_tps,
                floor_tps > 0 ? 100.0 * tps / floor_tps : 0.0);
    out["results"].push_back({{"phase", r.name},
                              {"batch", r.batch},
                              {"tokens", r.tokens},
                              {"seconds", r.seconds},
                              {"tokens_per_second", tps},
                              {"ms_per_step", 1e3 * r.seconds / steps_run},
                              {"floor_tokens_per_second", floor_tps},
                              {"fraction_of_floor", floor_tps > 0 ? tps / floor_tps : 0.0}});
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
