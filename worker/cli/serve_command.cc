// `quarry serve`: the local cluster on this machine: N quarry-worker processes and one quarry-router on
// loopback. Waits until all are ready, prints the endpoint, restarts a worker that dies, and on Ctrl-C or
// SIGTERM drains the router, then stops the workers.
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "worker/cli/child_process.h"
#include "worker/cli/commands.h"
#include "worker/cli/progress.h"
#include "worker/model/io/make_model.h"

#ifndef QUARRY_ASSETS_DIR
#define QUARRY_ASSETS_DIR "assets"
#endif

namespace quarry::cli {
namespace {

namespace fs = std::filesystem;

struct ServeFlags {
  std::string model;
  int workers = 1;
  std::string host = "127.0.0.1";
  int port = 50051;
  int metrics_port = 0;
  int threads_per_worker = 0;
  int64_t state_slots = 0;  // 0 = the worker's default (8 on the CPU, 64 on a GPU)
  int64_t max_model_len = 4096;
  int ready_timeout_s = 900;
  int ep = 1;  // ranks per expert-parallel group
  std::string device = "cpu";  // cpu | cuda (worker i uses GPU i) | host
};

std::string BinDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("build/bin") : self.parent_path().string();
}

// A free loopback TCP port (bound then released; the worker binds it right after).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// The default model: preset "small" with random weights and the real Granite tokenizer, made once.
bool EnsureDefaultModel(const std::string& dir) {
  if (fs::exists(dir + "/config.json")) return true;
  std::printf("quarry serve: no --model given; making the default model in %s (preset \"small\": the "
              "Granite-4.0-H layer pattern at ~120M parameters, RANDOM weights, the real Granite tokenizer and chat "
              "template)\n", dir.c_str());
  std::fflush(stdout);
  MakeModelOptions o;
  o.preset = "small";
  o.seed = 1;
  o.out_dir = dir;
  o.tokenizer_dir = QUARRY_ASSETS_DIR "/tokenizer";
  ProgressBar bar("writing " + dir);
  o.progress = [&bar](uint64_t d, uint64_t t) { bar.Update(d, t); };
  absl::Status st = MakeModel(o);
  bar.Finish();
  if (!st.ok()) {
    std::fprintf(stderr, "quarry serve: cannot make the default model: %s\n", std::string(st.message()).c_str());
    return false;
  }
  return true;
}

int RunServe(const ServeFlags& f) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const bool default_model = f.model.empty();
  const std::string model = default_model ? "models/small" : f.model;
  if (default_model && !EnsureDefaultModel(model)) return kExitError;
  if (!fs::exists(model + "/config.json")) {
    std::fprintf(stderr, "quarry serve: %s/config.json not found (--model must be a checkpoint directory)\n",
                 model.c_str());
    return kExitError;
  }
  if (f.workers < 1) {
    std::fprintf(stderr, "quarry serve: --workers must be >= 1, got %d\n", f.workers);
    return kExitError;
  }
  if (f.ep < 1 || f.workers % f.ep != 0) {
    std::fprintf(stderr, "quarry serve: --ep %d must be >= 1 and divide --workers %d\n", f.ep, f.workers);
    return kExitError;
  }
  // Expert-parallel groups rendezvous through a directory per group and incarnation.
  const std::string rendezvous_base = (fs::temp_directory_path() / ("quarry-serve-" + std::to_string(getpid()))).string();
  std::vector<int> epoch(f.workers / f.ep, 0);
  auto worker_env = [&](int i) -> std::vector<std::string> {
    if (f.ep == 1) return {};
    const int g = i / f.ep;
    const std::string dir = rendezvous_base + "/group" + std::to_string(g) + "-" + std::to_string(epoch[g]);
    fs::create_directories(dir);
    return {"QUARRY_RANK=" + std::to_string(i % f.ep), "QUARRY_WORLD_SIZE=" + std::to_string(f.ep),
            "QUARRY_RENDEZVOUS_DIR=" + dir, "QUARRY_GROUP_TIMEOUT_MS=10000"};
  };
  const std::string bin = BinDir();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = f.threads_per_worker > 0 ? f.threads_per_worker : std::max(1, cores / f.workers);
  auto worker_argv = [&](int port, int index) {
    std::vector<std::string> argv{bin + "/quarry-worker", "--model", model, "--port", std::to_string(port),
                                    "--threads", std::to_string(threads), "--max-model-len",
                                    std::to_string(f.max_model_len), "--device", f.device};
    if (f.state_slots > 0) argv.insert(argv.end(), {"--state-slots", std::to_string(f.state_slots)});
    if (f.device == "cuda") argv.insert(argv.end(), {"--cuda-device", std::to_string(index)});  // one GPU each
    return argv;
  };
  std::vector<int> ports;
  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (int i = 0; i < f.workers; ++i) {
    ports.push_back(FreePort());
    workers.push_back(
        std::make_unique<ChildProcess>("worker " + std::to_string(i), worker_argv(ports.back(), i), worker_env(i)));
    if (!workers.back()->Start()) return kExitError;
  }
  std::vector<std::string> addresses;
  for (auto& w : workers) {
    const std::string addr = w->WaitReady(std::chrono::seconds(f.ready_timeout_s));
    if (addr.empty()) {
      std::fprintf(stderr, "quarry serve: %s did not become ready; stopping\n", w->name().c_str());
      for (auto& x : workers) x->Stop(std::chrono::seconds(5));
      return kExitError;
    }
    addresses.push_back(addr);
  }
  std::vector<std::string> router_argv = {bin + "/quarry-router", "--model", model, "--workers",
                                          absl::StrJoin(addresses, ","), "--host", f.host, "--port",
                                          std::to_string(f.port), "--max-model-len", std::to_string(f.max_model_len)};
  if (f.metrics_port > 0) {
    router_argv.push_back("--metrics-port");
    router_argv.push_back(std::to_string(f.metrics_port));
  }
  auto router = std::make_unique<ChildProcess>("router", router_argv);
  if (!router->Start()) return kExitError;
  const std::string endpoint = router->WaitReady(std::chrono::seconds(120));
  if (endpoint.empty()) {
    std::fprintf(stderr, "quarry serve: the router did not become ready; stopping\n");
    router->Stop(std::chrono::seconds(5));
    for (auto& w : workers) w->Stop(std::chrono::seconds(5));
    return kExitError;
  }
  if (f.device == "cuda") {
    std::printf("\nQuarry is serving %s on %s (quarry.v1.Quarry over gRPC; %d worker%s, one GPU each", model.c_str(),
                endpoint.c_str(), f.workers, f.workers == 1 ? "" : "s");
  } else {
    std::printf("\nQuarry is serving %s on %s (quarry.v1.Quarry over gRPC; %d worker%s on the CPU%s, %d threads each",
                model.c_str(), endpoint.c_str(), f.workers, f.workers == 1 ? "" : "s",
                f.device == "host" ? " (device engine on reference kernels)" : "", threads);
  }
  if (f.ep > 1) std::printf("; %d expert-parallel groups of %d ranks", f.workers / f.ep, f.ep);
  std::printf(").\n");
  if (default_model) {
    std::printf("The default model has RANDOM weights: its answers are noise. Serve a real checkpoint with "
                "--model DIR.\n");
  }
  std::printf("Try:  %s/quarry chat --endpoint %s \"Hello!\"\nStop: Ctrl-C\n\n", bin.c_str(), endpoint.c_str());
  std::fflush(stdout);

  // Supervise: restart a worker that exits (at most 5 restarts per worker), until a signal arrives.
  std::atomic<bool> stop{false};
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    stop = true;
  });
  // A dead worker is restarted with the rest of its expert-parallel group (a group re-forms as a whole).
  std::vector<int> restarts(epoch.size(), 0);
  while (!stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (size_t g = 0; g < epoch.size() && !stop; ++g) {
      bool dead = false;
      for (int r = 0; r < f.ep; ++r) dead |= workers[g * f.ep + r]->exited();
      if (!dead || restarts[g] >= 5) continue;
      ++restarts[g];
      ++epoch[g];
      std::fprintf(stderr, "quarry serve: a worker of group %zu exited; restarting the group (%d rank%s)\n", g,
                   f.ep, f.ep == 1 ? "" : "s");
      for (int r = 0; r < f.ep; ++r) workers[g * f.ep + r]->Stop(std::chrono::seconds(5));
      for (int r = 0; r < f.ep; ++r) {
        const int i = static_cast<int>(g) * f.ep + r;
        workers[i] = std::make_unique<ChildProcess>(workers[i]->name(), worker_argv(ports[i], i), worker_env(i));
        workers[i]->Start();
      }
    }
    if (router->exited()) {
      std::fprintf(stderr, "quarry serve: the router exited; stopping\n");
      stop = true;
      pthread_kill(signal_waiter.native_handle(), SIGTERM);
    }
  }
  signal_waiter.join();
  std::printf("quarry serve: stopping (draining the router, then the workers)\n");
  std::fflush(stdout);
  router->Stop(std::chrono::seconds(35));
  for (auto& w : workers) w->Stop(std::chrono::seconds(35));
  std::error_code ec;
  fs::remove_all(rendezvous_base, ec);
  std::printf("quarry serve: stopped\n");
  return kExitOk;
}

}  // namespace

void RegisterServe(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Run the local cluster: N worker processes and a router on this machine (CPU), until Ctrl-C.");
  cmd->add_option("--model", flags->model,
                  "Checkpoint directory; without it a default random-weight model is made in models/small");
  cmd->add_option("--workers", flags->workers, "Worker processes")->capture_default_str();
  cmd->add_option("--ep", flags->ep, "Ranks per expert-parallel group (divides --workers; experts split across them)")
      ->capture_default_str();
  cmd->add_option("--device", flags->device,
                  "Where workers run the model: cpu, cuda (worker i on GPU i) or host (GPU engine on CPU references)")
      ->check(CLI::IsMember({"cpu", "cuda", "host"}))
      ->capture_default_str();
  cmd->add_option("--host", flags->host, "Router listen address (0.0.0.0 for all interfaces)")->capture_default_str();
  cmd->add_option("--port", flags->port, "Router gRPC port")->capture_default_str();
  cmd->add_option("--metrics-port", flags->metrics_port, "Router Prometheus port (0 = off)")->capture_default_str();
  cmd->add_option("--threads-per-worker", flags->threads_per_worker, "CPU threads per worker (0 = cores / workers)")
      ->capture_default_str();
  cmd->add_option("--state-slots", flags->state_slots,
                  "Concurrent sequences per worker (0 = the worker's default: 8 on the CPU, 64 on a GPU)")
      ->capture_default_str();
  cmd->add_option("--max-model-len", flags->max_model_len, "Context window in tokens")->capture_default_str();
  cmd->add_option("--ready-timeout-s", flags->ready_timeout_s, "Seconds to wait for workers to load")
      ->capture_default_str();
  cmd->callback([flags, exit_code] { *exit_code = RunServe(*flags); });
}

}  // namespace quarry::cli
