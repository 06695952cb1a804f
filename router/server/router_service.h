// quarry.v1.Quarry on the router (gRPC sync API): validation and preparation (request_builder), generation on
// the workers (generation), response assembly for unary and streaming calls, tokenization and model info,
// and draining (new calls UNAVAILABLE, in-flight calls finish).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "quarry/v1/quarry.grpc.pb.h"
#include "router/server/generation.h"
#include "router/server/router_metrics.h"

namespace quarry {

class RouterService final : public v1::Quarry::Service {
 public:
  RouterService(const ModelContext* model, WorkerPool* pool, CancelWatcher* watcher, RouterMetrics* metrics);

  grpc::Status Chat(grpc::ServerContext* ctx, const v1::ChatRequest* req, v1::ChatResponse* resp) override;
  grpc::Status ChatStream(grpc::ServerContext* ctx, const v1::ChatRequest* req,
                          grpc::ServerWriter<v1::ChatStreamResponse>* writer) override;
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req, v1::GenerateResponse* resp) override;
  grpc::Status GenerateStream(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                              grpc::ServerWriter<v1::GenerateStreamResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* ctx, const v1::TokenizeRequest* req, v1::TokenizeResponse* resp) override;
  grpc::Status Detokenize(grpc::ServerContext* ctx, const v1::DetokenizeRequest* req,
                          v1::DetokenizeResponse* resp) override;
  grpc::Status GetModelInfo(grpc::ServerContext* ctx, const v1::GetModelInfoRequest* req,
                            v1::GetModelInfoResponse* resp) override;
  grpc::Status ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                          v1::ListModelsResponse* resp) override;

  // Refuse new calls from now on; returns once in-flight generation calls ended or `grace` passed.
  bool Drain(std::chrono::milliseconds grace);
  int64_t inflight() const { return inflight_.load(); }

 private:
  // RAII count of in-flight calls; refuses while draining.
  class CallGuard;
  grpc::Status Finish(const char* rpc, RouterMetrics::Tracker& tracker, const grpc::Status& st, int64_t prompt);
  v1::ModelInfo Info() const;

  GenerationServices svc_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> inflight_{0};
};

}  // namespace quarry
