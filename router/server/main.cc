// quarry-router: the public gRPC front door (quarry.v1.Quarry) over a set of workers, with health
// (liveness, readiness), reflection, optional Prometheus metrics and a graceful drain on SIGTERM / SIGINT.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "router/server/router_service.h"

namespace {

struct Flags {
  std::string model;
  std::string served_model_name;
  std::vector<std::string> workers;
  std::string host = "127.0.0.1";
  int port = 50051;
  int metrics_port = 0;
  int64_t max_model_len = 0;
  double drain_grace_s = 30;
  double wait_workers_s = 120;
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "quarry-router: %s\n", what.c_str());
  return 1;
}

int Run(const Flags& f) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto model = quarry::LoadModelContext(f.model, f.served_model_name, f.max_model_len);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  quarry::WorkerPool pool(f.workers);
  pool.Start();
  quarry::CancelWatcher watcher;
  quarry::RouterMetrics metrics((*model)->name);
  if (f.metrics_port > 0) {
    auto port = metrics.StartExposer(f.metrics_port);
    if (!port.ok()) return Fail(std::string(port.status().message()));
    std::printf("quarry-router metrics on 0.0.0.0:%d/metrics\n", *port);
  }
  quarry::RouterService service(model->get(), &pool, &watcher, &metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(f.host + ":" + std::to_string(f.port), grpc::InsecureServerCredentials(), &bound);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) return Fail("cannot listen on " + f.host + ":" + std::to_string(f.port));
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("liveness", true);
  health->SetServingStatus("readiness", false);
  health->SetServingStatus("", false);
  if (!pool.WaitForHealthy(1, std::chrono::milliseconds(static_cast<int64_t>(f.wait_workers_s * 1000)))) {
    std::fprintf(stderr, "quarry-router: no worker became healthy within %.0f s; serving anyway (calls fail "
                         "with UNAVAILABLE until one does)\n", f.wait_workers_s);
  }
  health->SetServingStatus("readiness", true);
  health->SetServingStatus("", true);
  std::printf("quarry-router listening on %s:%d (model %s, %zu/%zu workers healthy)\n", f.host.c_str(), bound,
              (*model)->name.c_str(), pool.healthy_count(), pool.size());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("quarry-router: %s, draining (grace %.1f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", f.drain_grace_s);
  std::fflush(stdout);
  health->SetServingStatus("readiness", false);
  health->SetServingStatus("", false);
  service.Drain(std::chrono::milliseconds(static_cast<int64_t>(f.drain_grace_s * 1000)));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  pool.Stop();
  std::printf("quarry-router: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quarry-router: the Quarry public gRPC API (quarry.v1.Quarry) in front of quarry-worker processes",
               "quarry-router"};
  Flags f;
  app.add_option("--model", f.model, "model directory: config.json, tokenizer.json, tokenizer_config.json")->required();
  app.add_option("--workers", f.workers, "worker addresses host:port (comma-separated)")->required()->delimiter(',');
  app.add_option("--served-model-name", f.served_model_name, "model name clients use (default: dir name)");
  app.add_option("--host", f.host, "address to listen on (0.0.0.0 for all interfaces)");
  app.add_option("--port", f.port, "gRPC port (0 = any free port; the bound one is printed)")->check(CLI::Range(0, 65535));
  app.add_option("--metrics-port", f.metrics_port, "Prometheus /metrics port (0 = off)")->check(CLI::Range(0, 65535));
  app.add_option("--max-model-len", f.max_model_len, "context window (0 = model config, capped at 8192)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--drain-grace-s", f.drain_grace_s, "seconds in-flight calls get to finish on SIGTERM")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--wait-workers-s", f.wait_workers_s, "seconds to wait for a healthy worker at start")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return Run(f);
}
