// A real local cluster for tests: a tiny random Granite-vocabulary model written to a temp dir, N
// quarry-worker processes and one quarry-router process on 127.0.0.1 (ports picked by the OS, read from
// their "listening on" lines), client stubs for the public API and for each worker. Everything is stopped
// (SIGKILL as the last resort) and the model dir removed when the cluster is destroyed.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gtest/gtest.h"
#include "quarry/v1/quarry.grpc.pb.h"
#include "quarry/v1/worker.grpc.pb.h"
#include "tests/cluster/process.h"

namespace quarry::testing {

struct ClusterOptions {
  int workers = 2;
  int max_model_len = 512;
  int state_slots = 8;
  double router_drain_grace_s = 10;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {}) : options_(options) {}
  ~Cluster();

  // Makes the model, starts the workers and the router, waits until they listen (bounded).
  ::testing::AssertionResult Start();

  v1::Quarry::Stub& router() { return *router_stub_; }
  worker::v1::Worker::Stub& worker(int i) { return *worker_stubs_[i]; }
  Process& router_process() { return *router_; }
  Process& worker_process(int i) { return *workers_[i]; }
  const std::string& router_address() const { return router_address_; }
  const ClusterOptions& options() const { return options_; }
  // Output of every process, for failure messages.
  std::string Logs();

  // GetLoad of worker i (2 s deadline); a default response with running = -1 semantics is not possible, so
  // the status tells whether it answered.
  grpc::Status Load(int i, worker::v1::GetLoadResponse* out);
  // Polls every worker that still runs until none has running, waiting, used slots, used KV pages or open
  // calls, up to `timeout`.
  ::testing::AssertionResult WaitIdle(std::chrono::milliseconds timeout);

 private:
  ClusterOptions options_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::unique_ptr<Process> router_;
  std::vector<std::string> worker_addresses_;
  std::string router_address_;
  std::unique_ptr<v1::Quarry::Stub> router_stub_;
  std::vector<std::unique_ptr<worker::v1::Worker::Stub>> worker_stubs_;
};

// A client context with a deadline `ms` from now.
std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds ms);

// Router channel arguments: 64 MiB send and receive limits (10 MB prompts must reach the router's checks).
grpc::ChannelArguments BigMessageArgs();

}  // namespace quarry::testing
