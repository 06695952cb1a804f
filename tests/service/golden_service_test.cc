// The real engine behind the worker gRPC service on the golden checkpoint tests/data/golden/tiny-b: greedy
// generation streamed through gRPC equals GreedyGenerate (worker/engine/generator.h) and the transformers
// reference tokens, alone and with all cases in flight at once.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "quarry/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/engine/generator.h"
#include "worker/model/io/safetensors.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"
#include "worker/service/convert.h"
#include "worker/service/server.h"

namespace quarry {
namespace {

namespace wpb = ::quarry::worker::v1;
constexpr char kDir[] = "tests/data/golden/tiny-b";
constexpr int kCases = 4;
constexpr int kNewTokens = 12;

std::vector<int32_t> ReadI64(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr || t->dtype != StDType::kI64) return {};
  const auto* p = static_cast<const int64_t*>(t->data);
  return std::vector<int32_t>(p, p + t->numel());
}

class GoldenServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto w = LoadModelDir(kDir, {});
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w).release();
    auto ref = SafetensorsFile::Open(std::string(kDir) + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    reference_ = std::move(*ref).release();
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete weights_;
  }

  void SetUp() override {
    EngineOptions eo;
    eo.state_slots = 4;
    eo.max_model_len = 256;
    auto engine = Engine::Create(*weights_, eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    service::WorkerServiceOptions so;
    so.info = service::MakeInfo(weights_->config, engine_->options(), "tiny-b");
    auto server = service::WorkerServer::Start(engine_.get(), nullptr, so, {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = wpb::Worker::NewStub(channel);
  }
  void TearDown() override {
    server_.reset();
    if (engine_) engine_->Shutdown();
  }

  // Greedy, ignore_eos, kNewTokens through gRPC; returns the streamed tokens (empty + failure on error).
  std::vector<int32_t> GenerateGrpc(const std::vector<int32_t>& prompt, const std::string& id) {
    wpb::GenerateRequest req;
    req.set_request_id(id);
    for (int32_t t : prompt) req.add_prompt_token_ids(static_cast<uint32_t>(t));
    req.mutable_sampling()->set_temperature(0.0f);
    req.mutable_stopping()->set_max_tokens(kNewTokens);
    req.mutable_stopping()->set_ignore_eos(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto reader = stub_->Generate(&ctx, req);
    std::vector<int32_t> tokens;
    wpb::GenerateResponse msg, last;
    while (reader->Read(&msg)) {
      for (uint32_t t : msg.token_ids()) tokens.push_back(static_cast<int32_t>(t));
      last = msg;
    }
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << id << ": " << st.error_message();
    EXPECT_TRUE(last.finished()) << id;
    EXPECT_EQ(last.finish_reason(), wpb::FINISH_REASON_LENGTH) << id;
    EXPECT_EQ(last.usage().prompt_tokens(), prompt.size()) << id;
    EXPECT_EQ(last.usage().completion_tokens(), static_cast<uint32_t>(kNewTokens)) << id;
    return tokens;
  }

  static inline ModelWeights* weights_ = nullptr;
  static inline SafetensorsFile* reference_ = nullptr;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<service::WorkerServer> server_;
  std::unique_ptr<wpb::Worker::Stub> stub_;
};

TEST_F(GoldenServiceTest, GreedyThroughGrpcEqualsGreedyGenerateAndReference) {
  Model model(*weights_);
  for (int c = 0; c < kCases; ++c) {
    const auto prompt = ReadI64(*reference_, absl::StrCat("case", c, ".prompt"));
    const auto golden = ReadI64(*reference_, absl::StrCat("case", c, ".generated"));
    ASSERT_EQ(golden.size(), static_cast<size_t>(kNewTokens));
    GenerateOptions opts;
    opts.max_new_tokens = kNewTokens;
    opts.ignore_eos = true;
    auto direct = GreedyGenerate(model, prompt, opts);
    ASSERT_TRUE(direct.ok()) << direct.status();
    EXPECT_EQ(direct->tokens, golden) << "case " << c;
    EXPECT_EQ(GenerateGrpc(prompt, absl::StrCat("case-", c)), direct->tokens) << "case " << c;
  }
}

TEST_F(GoldenServiceTest, AllCasesInFlightAtOnceStillMatchTheReference) {
  std::vector<std::vector<int32_t>> got(kCases);
  std::vector<std::thread> threads;
  for (int c = 0; c < kCases; ++c) {
    threads.emplace_back([&, c] {
      got[c] = GenerateGrpc(ReadI64(*reference_, absl::StrCat("case", c, ".prompt")), absl::StrCat("batch-", c));
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kCases; ++c) {
    EXPECT_EQ(got[c], ReadI64(*reference_, absl::StrCat("case", c, ".generated"))) << "case " << c;
  }
}

}  // namespace
}  // namespace quarry
