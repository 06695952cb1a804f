// quarry-engine-bench: the device engine (DeviceModel; --device cuda on a GPU, or host for a smoke run)
// without gRPC: prefill 1 x N and 8 x M tokens, decode at several batch sizes over a given context, tokens/s,
// ms per step and the ratio to the bandwidth floor = (weight + state + KV bytes a step must move) / the copy
// bandwidth measured on the same device in the same run. Prints a table and writes JSON. With --op-profile every
// op is timed alone (ProfilingDeviceOps) and each phase's per-op table is printed and written too; the phases'
// own times then include a synchronisation per op and are not representative.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "bench/decode_bytes.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_factory.h"
#include "worker/model/device/device_model.h"
#include "worker/model/device/profiling_device_ops.h"
#include "worker/model/weights.h"
#ifdef QUARRY_HAVE_CUDA
#include "kernels/cuda_ops.h"
#endif

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Copy bandwidth (bytes read + written per second) of the backend's memory.
absl::StatusOr<double> CopyBandwidth(const std::string& device) {
#ifdef QUARRY_HAVE_CUDA
  if (device == "cuda") {
    double gbps = 0;
    if (absl::Status s = MeasureCopyBandwidthCuda(size_t{1} << 30, 20, nullptr, &gbps); !s.ok()) return s;
    return gbps * 1e9;
  }
#endif
  const size_t bytes = size_t{256} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    auto t = Clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    best = std::max(best, 2.0 * bytes / Since(t));
  }
  return best;
}

// Bytes one decode step of `batch` sequences at `context` tokens must move at least: the weights
// (DecodeWeightBytes), each sequence's SSM + conv state read and written, its KV cache read and one row written.
double DecodeFloorBytes(const ModelWeights& w, int batch, int64_t context, bool bf16_state, bool bf16_kv) {
  const ModelConfig& c = w.config;
  const double state = 2.0 * StateSlotPool::SlotBytes(c, bf16_state);  // read + write
  const double kv_token = static_cast<double>(KvBlockPool::BlockBytes(c, 1, bf16_kv));
  return DecodeWeightBytes(w, batch) + batch * (state + kv_token * (context + 1));
}

struct Row {
  std::string phase;
  int batch = 0;
  int64_t tokens_per_seq = 0;
  int64_t tokens = 0;  // processed (prefill) or generated (decode)
  int steps = 0;
  double seconds = 0;
  double floor_seconds = 0;
  double host_seconds = 0;  // decode: DeviceModelStats host / wait time over the timed steps
  double wait_seconds = 0;
};

}  // namespace
}  // namespace quarry

int main(int argc, char** argv) {
  using namespace quarry;
  CLI::App app{"quarry-engine-bench: device engine prefill/decode throughput vs the bandwidth floor (no gRPC)"};
  std::string model_dir, device = "cuda", json_path = "engine-bench.json";
  std::vector<int> batches = {1, 8, 32, 128, 256};
  int steps = 32, prefill = 1024, prefill8 = 2048;
  int64_t context = 1024;
  bool no_graphs = false, bf16_state = false, op_profile = false;
  std::string kv_dtype = "bf16";
  app.add_option("--model", model_dir, "Checkpoint directory")->required();
  app.add_option("--device", device, "cuda or host")->check(CLI::IsMember({"cuda", "host"}))->capture_default_str();
  app.add_option("--batches", batches, "Decode batch sizes")->delimiter(',')->capture_default_str();
  app.add_option("--steps", steps, "Timed decode steps per batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--context", context, "Tokens already in each sequence's cache when decode starts")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--prefill", prefill, "Prefill of one sequence of N tokens (0 = skip)")->capture_default_str();
  app.add_option("--prefill8", prefill8, "Prefill of 8 sequences of N tokens in one step (0 = skip)")
      ->capture_default_str();
  app.add_flag("--no-graphs", no_graphs, "Decode eagerly (no CUDA graphs)");
  app.add_flag("--bf16-state", bf16_state, "SSM state in bf16");
  app.add_flag("--op-profile", op_profile,
               "Time every op alone (synchronised) and print where each phase's time goes; decode op by op needs "
               "--no-graphs (a graph step is one entry)");
  app.add_option("--kv-cache-dtype", kv_dtype, "KV cache element type (the engine's default for a bf16 checkpoint: bf16)")
      ->check(CLI::IsMember({"bf16", "f32"}))
      ->capture_default_str();
  app.add_option("--json", json_path, "Where to write the JSON results")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "quarry-engine-bench: %s\n", std::string(s.message()).c_str());
    return 2;
  };

  std::fprintf(stderr, "loading %s...\n", model_dir.c_str());
  auto weights = LoadModelDir(model_dir, {});
  if (!weights.ok()) return fail(weights.status());
  const ModelConfig& c = (*weights)->config;
  const int max_batch = batches.empty() ? 1 : *std::max_element(batches.begin(), batches.end());
  DeviceModelOptions mo;
  mo.max_batch = std::max(max_batch, 8);
  mo.max_tokens = std::max<int64_t>({int64_t{prefill}, int64_t{8} * prefill8, int64_t{max_batch}, 1});
  mo.max_logit_rows = mo.max_batch;
  const int64_t block = 16;
  const int64_t longest = std::max<int64_t>({context + steps + 2, int64_t{prefill}, int64_t{prefill8}, 1});
  mo.max_blocks_per_seq = (longest + block - 1) / block;
  mo.cuda_graphs = !no_graphs;
  mo.bf16_state = bf16_state;
  DeviceOpsRequest req;
  req.kind = device;
  req.max_gemm_input_elems = DeviceModelGemmInputElems(c, mo);
  auto ops = CreateDeviceOps(req);
  if (!ops.ok()) return fail(ops.status());
  std::unique_ptr<ProfilingDeviceOps> profiler;
  DeviceOps* dev = ops->get();
  if (op_profile) {
    profiler = std::make_unique<ProfilingDeviceOps>(dev);
    dev = profiler.get();
  }
  nlohmann::json profiles = nlohmann::json::array();
  // Prints and keeps the per-op table of the phase just timed (with --op-profile).
  auto report_ops = [&](const std::string& phase) {
    if (profiler == nullptr) return;
    const auto floor = profiler->SyncFloor();
    const double floor_us = floor.ok() ? 1e6 * *floor : 0.0;
    double total = 0;
    for (const auto& e : profiler->Report()) total += e.seconds;
    std::printf("\nops of %s (each timed alone; synchronisation floor %.1f us per op):\n", phase.c_str(), floor_us);
    std::printf("%-34s %8s %11s %10s %7s\n", "op", "calls", "total ms", "us/call", "share");
    nlohmann::json ops_json = nlohmann::json::array();
    for (const auto& e : profiler->Report()) {
      std::printf("%-34s %8lld %11.3f %10.1f %6.1f%%\n", e.op.c_str(), static_cast<long long>(e.calls), 1e3 * e.seconds,
                  1e6 * e.seconds / e.calls, total > 0 ? 100.0 * e.seconds / total : 0.0);
      ops_json.push_back({{"op", e.op}, {"calls", e.calls}, {"ms", 1e3 * e.seconds}});
    }
    profiles.push_back({{"phase", phase}, {"sync_floor_us", floor_us}, {"ops", ops_json}});
    profiler->Reset();
  };
  std::fprintf(stderr, "measuring copy bandwidth on %s...\n", (*ops)->name().c_str());
  auto bw = CopyBandwidth(device);
  if (!bw.ok()) return fail(bw.status());
  std::fprintf(stderr, "uploading weights...\n");
  auto model = DeviceModel::Create(**weights, dev, mo);
  if (!model.ok()) return fail(model.status());
  const int64_t seqs = std::max(max_batch, 8);
  auto slots = StateSlotPool::Create(c, seqs, bf16_state, dev);
  if (!slots.ok()) return fail(slots.status());
  const bool bf16_kv = kv_dtype == "bf16";
  auto kv = KvBlockPool::Create(c, seqs * mo.max_blocks_per_seq, block, dev, bf16_kv);
  if (!kv.ok()) return fail(kv.status());
  std::fprintf(stderr, "weights %.2f GB, workspace %.2f GB, state slots %.2f GB, KV %.2f GB\n",
               (*model)->weight_bytes() / 1e9, (*model)->workspace_bytes() / 1e9, (*slots)->bytes() / 1e9,
               (*kv)->bytes() / 1e9);

  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(std::min<int64_t>(c.vocab_size, 100000) - 1));
  std::vector<Row> rows;
  auto prefill_run = [&](int n_seqs, int len) -> absl::Status {
    std::vector<std::unique_ptr<PooledSequence>> ps;
    std::vector<std::vector<int32_t>> prompts(n_seqs, std::vector<int32_t>(len));
    std::vector<ForwardSegment> segs;
    for (int i = 0; i < n_seqs; ++i) {
      auto s = PooledSequence::Create(slots->get(), kv->get(), len);
      if (!s.ok()) return s.status();
      ps.push_back(std::move(*s));
      for (int32_t& t : prompts[i]) t = tok(rng);
      segs.push_back({ps.back()->view(), prompts[i].data(), len, LogitsMode::kLast});
    }
    std::vector<int32_t> next(n_seqs);
    // Run twice on the same sequences and time the second (a warm-up on other sequences would double the
    // memory); the second run starts from the first one's Mamba state, which changes values, not the work.
    if (absl::Status s = (*model)->ForwardGreedy(segs, next.data()); !s.ok()) return s;
    for (auto& p : ps) p->view()->length = 0;
    if (profiler != nullptr) profiler->Reset();
    auto t = Clock::now();
    if (absl::Status s = (*model)->ForwardGreedy(segs, next.data()); !s.ok()) return s;
    Row r{"prefill", n_seqs, len, int64_t{n_seqs} * len, 1, Since(t), 0};
    rows.push_back(r);
    std::fprintf(stderr, "prefill %d x %d: %.1f ms\n", n_seqs, len, 1e3 * r.seconds);
    report_ops("prefill " + std::to_string(n_seqs) + " x " + std::to_string(len));
    return absl::OkStatus();
  };
  if (prefill > 0) {
    if (absl::Status s = prefill_run(1, prefill); !s.ok()) return fail(s);
  }
  if (prefill8 > 0) {
    if (absl::Status s = prefill_run(8, prefill8); !s.ok()) return fail(s);
  }

  for (int b : batches) {
    // Each sequence starts with `context` cached positions: the KV pages are allocated and read by attention
    // exactly as after a real prefill (their content is zeros), the Mamba state is a fresh zero state. The
    // bytes a decode step moves do not depend on the values.
    std::vector<std::unique_ptr<PooledSequence>> ps;
    for (int i = 0; i < b; ++i) {
      auto s = PooledSequence::Create(slots->get(), kv->get(), context + steps + 2);
      if (!s.ok()) return fail(s.status());
      ps.push_back(std::move(*s));
      ps.back()->view()->length = context;
    }
    std::vector<int32_t> next(b);
    for (int32_t& t : next) t = tok(rng);
    auto step = [&]() {
      std::vector<ForwardSegment> segs;
      for (int i = 0; i < b; ++i) segs.push_back({ps[i]->view(), &next[i], 1, LogitsMode::kLast});
      return (*model)->ForwardGreedy(segs, next.data());
    };
    if (absl::Status s = step(); !s.ok()) return fail(s);  // warm-up (captures the graph)
    const DeviceModelStats before = (*model)->stats();
    if (profiler != nullptr) profiler->Reset();
    auto t = Clock::now();
    for (int i = 0; i < steps; ++i) {
      if (absl::Status s = step(); !s.ok()) return fail(s);
    }
    Row r{"decode", b, context, int64_t{b} * steps, steps, Since(t), 0};
    r.host_seconds = (*model)->stats().host_seconds - before.host_seconds;
    r.wait_seconds = (*model)->stats().wait_seconds - before.wait_seconds;
    r.floor_seconds = steps * DecodeFloorBytes(**weights, b, context + steps / 2, bf16_state, bf16_kv) / *bw;
    rows.push_back(r);
    std::fprintf(stderr, "decode batch %d: %.1f tok/s\n", b, r.tokens / r.seconds);
    report_ops("decode batch " + std::to_string(b) + " (" + std::to_string(steps) + " steps)");
  }

  const DeviceModelStats& st = (*model)->stats();
  std::printf("\nQuarry device engine: %s on %s, copy bandwidth %.1f GB/s, weights %.2f GB, KV %s, graphs %s "
              "(%lld graph steps, %lld eager, %lld captures)\n",
              model_dir.c_str(), (*ops)->name().c_str(), *bw / 1e9, (*model)->weight_bytes() / 1e9, kv_dtype.c_str(),
              mo.cuda_graphs && (*ops)->graphs() ? "on" : "off", static_cast<long long>(st.graph_steps),
              static_cast<long long>(st.eager_steps), static_cast<long long>(st.graph_captures));
  std::printf("%-8s %6s %8s %9s %10s %12s %10s %14s %9s %9s %9s\n", "phase", "batch", "len", "tokens", "seconds",
              "tok/s", "ms/step", "floor tok/s", "of floor", "host ms", "wait ms");
  nlohmann::json out;
  out["model"] = model_dir;
  out["device"] = (*ops)->name();
  out["copy_bandwidth_gbps"] = *bw / 1e9;
  out["weight_bytes"] = (*model)->weight_bytes();
  out["cuda_graphs"] = mo.cuda_graphs && (*ops)->graphs();
  out["bf16_state"] = bf16_state;
  out["kv_cache_dtype"] = kv_dtype;
  for (const Row& r : rows) {
    const double tps = r.tokens / r.seconds;
    const double floor_tps = r.floor_seconds > 0 ? r.tokens / r.floor_seconds : 0;
    std::printf("%-8s %6d %8lld %9lld %10.4f %12.1f %10.3f %14.1f %8.0f%% %9.3f %9.3f\n", r.phase.c_str(), r.batch,
                static_cast<long long>(r.tokens_per_seq), static_cast<long long>(r.tokens), r.seconds, tps,
                1e3 * r.seconds / r.steps, floor_tps, floor_tps > 0 ? 100.0 * tps / floor_tps : 0.0,
                1e3 * r.host_seconds / r.steps, 1e3 * r.wait_seconds / r.steps);
    out["results"].push_back({{"phase", r.phase},
                              {"batch", r.batch},
                              {"tokens_per_sequence", r.tokens_per_seq},
                              {"tokens", r.tokens},
                              {"seconds", r.seconds},
                              {"tokens_per_second", tps},
                              {"ms_per_step", 1e3 * r.seconds / r.steps},
                              {"floor_tokens_per_second", floor_tps},
                              {"fraction_of_floor", floor_tps > 0 ? tps / floor_tps : 0.0},
                              {"host_ms_per_step", 1e3 * r.host_seconds / r.steps},
                              {"wait_ms_per_step", 1e3 * r.wait_seconds / r.steps}});
  }
  if (op_profile) out["op_profile"] = profiles;
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
