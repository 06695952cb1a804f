// quarry-worker: one worker rank serving quarry.worker.v1.Worker over gRPC on top of the engine, with
// health, reflection, optional Prometheus metrics, and a graceful drain on SIGTERM / SIGINT.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include <omp.h>

#include "CLI/CLI.hpp"
#include "worker/engine/engine.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/expert_placement.h"
#include "worker/parallel/group_env.h"
#ifdef QUARRY_WITH_NCCL
#include "worker/parallel/nccl_communicator.h"
#endif
#include "worker/model/weights.h"
#include "worker/service/convert.h"
#include "worker/service/metrics.h"
#include "worker/service/server.h"

namespace {

struct Flags {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 50061;
  int metrics_port = 0;
  std::string served_model_name;
  int64_t state_slots = 8;
  int64_t kv_blocks = 0;
  int64_t max_waiting = 64;
  int64_t max_model_len = 0;
  int64_t max_tokens_per_step = 256;
  int threads = 0;
  double drain_grace_s = 30;
  bool no_prefault = false;
  bool bf16_state = false;
  bool expert_metrics = false;
  std::string device = "cpu";
  int cuda_device = 0;
  double gpu_memory_utilization = 0.9;
  bool no_cuda_graphs = false;
  std::string kv_cache_dtype = "auto";
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "quarry-worker: %s\n", what.c_str());
  return 1;
}

int Run(const Flags& f) {
  // SIGTERM/SIGINT are taken by sigwait below; block them before any thread starts so none receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (f.threads > 0) omp_set_num_threads(f.threads);
  quarry::WeightLoadOptions load;
  load.prefault = !f.no_prefault;
  auto weights = quarry::LoadModelDir(f.model, load);
  if (!weights.ok()) return Fail(std::string(weights.status().message()));
  quarry::EngineOptions eo;
  eo.state_slots = f.state_slots;
  eo.kv_blocks = f.kv_blocks;
  eo.max_waiting = f.max_waiting;
  eo.max_model_len = f.max_model_len;
  eo.max_tokens_per_step = f.max_tokens_per_step;
  eo.bf16_state = f.bf16_state;
  eo.num_threads = f.threads;
  eo.device = f.device;
  eo.cuda_device = f.cuda_device;
  eo.gpu_memory_utilization = f.gpu_memory_utilization;
  eo.cuda_graphs = !f.no_cuda_graphs;
  eo.kv_cache_dtype = f.kv_cache_dtype;
  // Expert parallelism: the group comes from the environment (QUARRY_RANK / QUARRY_WORLD_SIZE / rendezvous).
  auto group = quarry::GroupConfigFromEnv(::getenv);
  if (!group.ok()) return Fail(std::string(group.status().message()));
  std::unique_ptr<quarry::Communicator> comm, payload_comm;
  std::optional<quarry::ExpertPlacement> placement;
  if (group->world_size > 1) {
    auto p = quarry::ExpertPlacement::Contiguous(static_cast<int>((*weights)->config.num_local_experts),
                                                 group->world_size);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    placement = std::move(*p);
    std::printf("quarry-worker: rank %d of an expert-parallel group of %d, joining...\n", group->rank,
                group->world_size);
    std::fflush(stdout);
    auto c = quarry::CreateGlooCommunicator(*group);
    if (!c.ok()) return Fail(std::string(c.status().message()));
    comm = std::move(*c);
    const auto& mine = placement->experts_of(group->rank);
    const int64_t per_expert = (*weights)->layers.empty() ? 0
        : ((*weights)->layers[0].moe.input_linear.bytes() + (*weights)->layers[0].moe.output_linear.bytes()) /
              std::max<int64_t>(1, (*weights)->config.num_local_experts);
    std::printf("quarry-worker: rank %d holds experts %d..%d (%zu of %lld): %.2f GB of expert weights\n",
                group->rank, mine.front(), mine.back(), mine.size(),
                static_cast<long long>((*weights)->config.num_local_experts),
                per_expert * static_cast<double>(mine.size()) * (*weights)->config.num_hidden_layers / 1e9);
    eo.comm = comm.get();
    eo.placement = &*placement;
    if (f.device == "cuda") {
      // The hidden rows travel between GPUs over NCCL; Gloo keeps the lockstep and the per-layer row counts.
#ifdef QUARRY_WITH_NCCL
      auto n = quarry::CreateNcclCommunicator(*group, f.cuda_device);
      if (!n.ok()) return Fail(std::string(n.status().message()));
      payload_comm = std::move(*n);
      eo.payload_comm = payload_comm.get();
#else
      return Fail("expert parallelism with --device cuda needs NCCL: this build has no CUDA (QUARRY_CUDA=ON)");
#endif
    }
  }
  auto engine = quarry::Engine::Create(**weights, eo);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  std::printf("quarry-worker: %s\n", (*engine)->backend_summary().c_str());

  std::string name = f.served_model_name;
  if (name.empty()) name = std::filesystem::path(f.model).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(f.model).lexically_normal().parent_path().filename().string();
  quarry::service::WorkerServiceOptions so;
  so.info = quarry::service::MakeInfo((*weights)->config, (*engine)->options(), name);

  std::unique_ptr<quarry::WorkerMetrics> metrics;
  if (f.metrics_port > 0) {
    quarry::Engine* e = engine->get();
    metrics = std::make_unique<quarry::WorkerMetrics>(name, so.info.max_model_len(), [e] { return e->GetLoad(); },
                                                      f.expert_metrics);
    auto port = metrics->StartExposer(f.metrics_port);
    if (!port.ok()) return Fail(std::string(port.status().message()));
    std::printf("quarry-worker metrics on 0.0.0.0:%d/metrics\n", *port);
  }

  quarry::service::WorkerServerOptions opts;
  opts.host = f.host;
  opts.port = f.port;
  auto server = quarry::service::WorkerServer::Start(engine->get(), metrics.get(), std::move(so), opts);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("quarry-worker listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);

  // Wait for SIGTERM / SIGINT, or for the expert-parallel group to fail (then exit non-zero so the
  // supervisor restarts the group).
  int sig = 0;
  const timespec poll{0, 200 * 1000 * 1000};
  while ((sig = sigtimedwait(&signals, nullptr, &poll)) < 0) {
    if ((*engine)->failed()) {
      std::printf("quarry-worker: the expert-parallel group failed; exiting so that it is restarted\n");
      std::fflush(stdout);
      (*server)->Drain(std::chrono::milliseconds(1000));
      (*engine)->Shutdown();
      server->reset();
      return 3;
    }
  }
  std::printf("quarry-worker: %s, draining (grace %.1f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", f.drain_grace_s);
  std::fflush(stdout);
  (*server)->Drain(std::chrono::milliseconds(static_cast<int64_t>(f.drain_grace_s * 1000)));
  (*engine)->Shutdown();
  server->reset();
  std::printf("quarry-worker: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quarry-worker: one Quarry worker rank (quarry.worker.v1.Worker over gRPC)", "quarry-worker"};
  Flags f;
  app.add_option("--model", f.model, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--host", f.host, "address to listen on (0.0.0.0 for all interfaces)");
  app.add_option("--port", f.port, "gRPC port (0 = any free port; the bound one is printed)")->check(CLI::Range(0, 65535));
  app.add_option("--metrics-port", f.metrics_port, "Prometheus /metrics port (0 = off)")->check(CLI::Range(0, 65535));
  app.add_option("--served-model-name", f.served_model_name, "model name in Info and metrics (default: dir name)");
  CLI::Option* slots_opt = app.add_option("--state-slots", f.state_slots,
                                          "concurrent sequences (Mamba state slots; default 8 on the CPU, 64 on a GPU)")
                               ->check(CLI::Range(1, 1 << 16));
  app.add_option("--kv-blocks", f.kv_blocks, "KV pages (0 = CPU: enough for every slot at max length; GPU: what the memory left after the state slots holds)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-waiting", f.max_waiting, "queued requests before RESOURCE_EXHAUSTED")->check(CLI::NonNegativeNumber);
  app.add_option("--max-model-len", f.max_model_len, "context window (0 = model config, capped on CPU)")->check(CLI::NonNegativeNumber);
  CLI::Option* budget_opt =
      app.add_option("--max-tokens-per-step", f.max_tokens_per_step,
                     "token budget per engine step (default 256 on the CPU, 2048 on a GPU)")
          ->check(CLI::PositiveNumber);
  app.add_option("--threads", f.threads, "CPU threads (0 = OpenMP default)")->check(CLI::NonNegativeNumber);
  app.add_option("--drain-grace-s", f.drain_grace_s, "seconds open calls get to finish on SIGTERM")->check(CLI::NonNegativeNumber);
  app.add_flag("--no-prefault", f.no_prefault, "do not read the weights into memory before serving");
  app.add_flag("--bf16-state", f.bf16_state, "store the Mamba SSM state in bf16 (half the memory per sequence)");
  app.add_option("--device", f.device, "where the model runs: cpu, cuda (a GPU) or host (the GPU engine on CPU reference kernels, for tests)")
      ->check(CLI::IsMember({"cpu", "cuda", "host"}));
  app.add_option("--cuda-device", f.cuda_device, "CUDA device ordinal (--device cuda)")->check(CLI::NonNegativeNumber);
  app.add_option("--gpu-memory-utilization", f.gpu_memory_utilization,
                 "share of the device memory left after weights and workspace for state slots + KV pages")
      ->check(CLI::Range(0.01, 1.0));
  app.add_flag("--no-cuda-graphs", f.no_cuda_graphs, "run decode steps eagerly (no CUDA graphs)");
  app.add_option("--kv-cache-dtype", f.kv_cache_dtype,
                 "KV cache element type: auto (GPU engine: bf16 for a bf16 checkpoint; CPU engine: f32), bf16 "
                 "(GPU engine only) or f32")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}));
  app.add_flag("--expert-metrics", f.expert_metrics, "export tokens per expert (quarry_ep_expert_tokens_total)");
  CLI11_PARSE(app, argc, argv);
  if (f.device == "cuda") {  // GPU defaults: more sequences and longer prefill chunks per step
    if (slots_opt->count() == 0) f.state_slots = 64;
    if (budget_opt->count() == 0) f.max_tokens_per_step = 2048;
  }
  return Run(f);
}
