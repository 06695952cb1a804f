#include "worker/service/server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace quarry::service {

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(Engine* engine, WorkerMetrics* metrics,
                                                                  WorkerServiceOptions service_options,
                                                                  const WorkerServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port must be in [0, 65535], got ", options.port));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::unique_ptr<WorkerServer> s(new WorkerServer());
  s->engine_ = engine;
  s->host_ = options.host;
  s->service_ = std::make_unique<WorkerServiceImpl>(engine, metrics, std::move(service_options));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port), grpc::InsecureServerCredentials(),
                           &s->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":", options.port));
  }
  s->server_->GetHealthCheckService()->SetServingStatus("liveness", true);
  s->SetReady(true);
  return s;
}

WorkerServer::~WorkerServer() {
  if (!shut_down_ && server_ != nullptr) Drain(std::chrono::milliseconds(0));
}

std::string WorkerServer::address() const { return absl::StrCat(host_, ":", port_); }

void WorkerServer::SetReady(bool ready) {
  auto* health = server_->GetHealthCheckService();
  health->SetServingStatus("readiness", ready);
  health->SetServingStatus("", ready);
}

void WorkerServer::Drain(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  SetReady(false);
  service_->StartDraining();
  const auto now = std::chrono::steady_clock::now();
  if (!service_->WaitIdle(now + grace)) {
    service_->AbortAll();  // the engine ends them at its next step; their calls end with CANCELLED
    service_->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }
  // Anything still open (a client that stopped reading) is cancelled by gRPC at this deadline.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

void WorkerServer::Wait() { server_->Wait(); }

}  // namespace quarry::service
