// The worker's gRPC server: the Worker service, standard grpc.health.v1 health ("" and "readiness" follow
// readiness, "liveness" stays SERVING while the process serves), server reflection, and graceful drain.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "worker/engine/engine.h"
#include "worker/service/metrics.h"
#include "worker/service/worker_service.h"

namespace quarry::service {

struct WorkerServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                          // 0 = any free port (see WorkerServer::port())
  int max_message_bytes = 64 << 20;      // receive and send limit (long prompts)
};

class WorkerServer {
 public:
  // Builds and starts the server; readiness is SERVING when this returns. `engine` and `metrics` (may be
  // null) must outlive the server.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(Engine* engine, WorkerMetrics* metrics,
                                                             WorkerServiceOptions service_options,
                                                             const WorkerServerOptions& options);
  // Shuts down now if Drain was not called (live requests are aborted).
  ~WorkerServer();

  int port() const { return port_; }
  std::string address() const;  // host:port
  WorkerServiceImpl& service() { return *service_; }
  grpc::Server& server() { return *server_; }

  // Graceful drain: readiness (and "") go NOT_SERVING, new Generate calls end with UNAVAILABLE, open calls get
  // until `grace` to finish, the rest are aborted (CANCELLED), then the server shuts down. Idempotent.
  void Drain(std::chrono::milliseconds grace);
  // Blocks until the server has shut down (after Drain from another thread).
  void Wait();

 private:
  WorkerServer() = default;
  void SetReady(bool ready);

  Engine* engine_ = nullptr;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string host_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace quarry::service
