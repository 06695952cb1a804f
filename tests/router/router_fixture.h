// In-process cluster for router tests: a Granite-vocabulary tiny model (make-model preset "tiny", vocab
// 100352, Granite tokenizer files) served by real engines behind WorkerServers, a RouterService in front,
// and a quarry.v1.Quarry client stub, all on 127.0.0.1.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gtest/gtest.h"
#include "quarry/v1/quarry.grpc.pb.h"
#include "router/server/router_service.h"
#include "worker/engine/engine.h"
#include "worker/model/io/make_model.h"
#include "worker/model/weights.h"
#include "worker/service/convert.h"
#include "worker/service/server.h"

namespace quarry::testing {

class RouterCluster {
 public:
  // `dead_first`: the first worker address points at a port nobody listens on (failover tests).
  explicit RouterCluster(int workers, bool dead_first = false, EngineOptions engine_options = {}) {
    dir_ = std::filesystem::temp_directory_path() / ("quarry_router_" + std::to_string(getpid()) + "_" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(this)));
    MakeModelOptions mm;
    mm.preset = "tiny";
    mm.vocab_size = 100352;
    mm.seed = 7;
    mm.out_dir = dir_.string();
    mm.tokenizer_dir = "assets/tokenizer";
    absl::Status st = MakeModel(mm);
    EXPECT_TRUE(st.ok()) << st;
    auto w = LoadModelDir(dir_.string(), {});
    EXPECT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    std::vector<std::string> addresses;
    if (dead_first) addresses.push_back("127.0.0.1:1");  // nothing listens on port 1
    for (int i = 0; i < workers; ++i) {
      auto e = Engine::Create(*weights_, engine_options);
      EXPECT_TRUE(e.ok()) << e.status();
      engines_.push_back(std::move(*e));
      service::WorkerServiceOptions so;
      so.info = service::MakeInfo(weights_->config, engines_.back()->options(), "tiny");
      auto s = service::WorkerServer::Start(engines_.back().get(), nullptr, std::move(so), {});
      EXPECT_TRUE(s.ok()) << s.status();
      addresses.push_back((*s)->address());
      workers_.push_back(std::move(*s));
    }
    auto m = LoadModelContext(dir_.string(), "tiny", 512);
    EXPECT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    pool_ = std::make_unique<WorkerPool>(addresses, std::chrono::milliseconds(100));
    pool_->Start();
    EXPECT_TRUE(pool_->WaitForHealthy(static_cast<size_t>(workers), std::chrono::seconds(10)));
    metrics_ = std::make_unique<RouterMetrics>("tiny");
    service_ = std::make_unique<RouterService>(model_.get(), pool_.get(), &watcher_, metrics_.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    stub_ = v1::Quarry::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                    grpc::InsecureChannelCredentials()));
  }
  ~RouterCluster() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    pool_->Stop();
    workers_.clear();
    for (auto& e : engines_) e->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  v1::Quarry::Stub& stub() { return *stub_; }
  RouterService& service() { return *service_; }
  RouterMetrics& metrics() { return *metrics_; }
  const ModelContext& model() const { return *model_; }
  const ModelWeights& weights() const { return *weights_; }
  Engine& engine(int i) { return *engines_[i]; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<ModelWeights> weights_;
  std::vector<std::unique_ptr<Engine>> engines_;
  std::vector<std::unique_ptr<service::WorkerServer>> workers_;
  std::unique_ptr<ModelContext> model_;
  std::unique_ptr<WorkerPool> pool_;
  CancelWatcher watcher_;
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<RouterService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<v1::Quarry::Stub> stub_;
};

inline std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 60) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

}  // namespace quarry::testing
