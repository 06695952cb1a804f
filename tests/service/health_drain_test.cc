// Worker server around the service: grpc.health.v1 (liveness, readiness), graceful drain, server reflection,
// and the Prometheus metrics (registry text and the HTTP exposer).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <map>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "tests/service/service_fixture.h"

namespace quarry::testing {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using std::chrono::milliseconds;

class HealthTest : public ServiceTest {
 protected:
  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(std::chrono::seconds(5)));
    HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    grpc::Status st = stub->Check(&ctx, req, &resp);
    if (!st.ok()) return HealthCheckResponse::UNKNOWN;
    return resp.status();
  }
};

TEST_F(HealthTest, LivenessAndReadinessServeWhileRunning) {
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("readiness"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
}

TEST_F(HealthTest, DrainRefusesNewCallsAndLetsOpenOnesFinish) {
  engine_->set_paused(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  auto reader = stub_->Generate(&ctx, Request({1}, 3, "in-flight"));
  ASSERT_TRUE(engine_->WaitFor([&] { return engine_->live() == 1; }, milliseconds(5000)));

  auto drained = std::async(std::launch::async, [&] { server_->Drain(std::chrono::seconds(10)); });
  ASSERT_TRUE(engine_->WaitFor([&] { return server_->service().draining(); }, milliseconds(5000)));
  EXPECT_EQ(Health("readiness"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  auto refused = Generate(Request({1}, 3));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.status.error_message(), "worker is draining");
  EXPECT_EQ(drained.wait_for(milliseconds(0)), std::future_status::timeout) << "drain must wait for the open call";

  engine_->set_paused(false);
  std::vector<uint32_t> tokens;
  wpb::GenerateResponse msg;
  while (reader->Read(&msg)) tokens.insert(tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(tokens, (std::vector<uint32_t>{2, 3, 4}));
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(engine_->aborted().empty());
}

TEST_F(HealthTest, DrainAbortsCallsStillOpenAfterTheGrace) {
  engine_->set_paused(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  auto reader = stub_->Generate(&ctx, Request({1}, 3, "stuck"));
  ASSERT_TRUE(engine_->WaitFor([&] { return engine_->live() == 1; }, milliseconds(5000)));
  const auto start = std::chrono::steady_clock::now();
  server_->Drain(milliseconds(100));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  wpb::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  auto aborted = engine_->aborted();
  EXPECT_NE(std::find(aborted.begin(), aborted.end(), "stuck"), aborted.end());
}

// grpc.reflection.v1alpha over a generic stub (the reflection protos are not installed): a list_services
// request (field 7, empty string) must answer with our service names.
TEST_F(HealthTest, ServerReflectionListsTheWorkerService) {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(std::chrono::seconds(10)));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  auto wait = [&](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    auto st = cq.AsyncNext(&tag, &ok, Deadline(std::chrono::seconds(10)));
    return st == grpc::CompletionQueue::GOT_EVENT && reinterpret_cast<intptr_t>(tag) == want && ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(wait(1));
  const char request[] = {0x3a, 0x00};
  grpc::Slice slice(request, sizeof(request));
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(wait(2));
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(wait(3));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_NE(bytes.find("quarry.worker.v1.Worker"), std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  ASSERT_TRUE(wait(4));
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(5));
  ASSERT_TRUE(wait(5));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

// Value of the first sample line that starts with `prefix` (name + labels); -1 when absent.
double Sample(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t end = text.find('\n', pos);
      return std::stod(text.substr(pos + prefix.size(), end - pos - prefix.size()));
    }
    pos += prefix.size();
  }
  return -1;
}

TEST_F(HealthTest, MetricsCountTokensOutcomesAndLatencies) {
  ASSERT_TRUE(Generate(Request({1, 2}, 5)).status.ok());
  ASSERT_TRUE(Generate(Request({1}, 3)).status.ok());
  engine_->set_reject(absl::ResourceExhaustedError("full"));
  EXPECT_EQ(Generate(Request({1}, 3)).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const std::string text = metrics_->Serialize();
  const std::string m = "{model_name=\"tiny\"} ";
  EXPECT_EQ(Sample(text, "quarry_generation_tokens_total" + m), 8) << text;
  EXPECT_EQ(Sample(text, "quarry_prompt_tokens_total" + m), 3);
  EXPECT_EQ(Sample(text, "quarry_time_to_first_token_seconds_count" + m), 2);
  EXPECT_EQ(Sample(text, "quarry_inter_token_latency_seconds_count" + m), 6);  // 4 + 2 gaps
  EXPECT_EQ(Sample(text, "quarry_e2e_request_latency_seconds_count" + m), 2);
  EXPECT_DOUBLE_EQ(Sample(text, "quarry_request_queue_time_seconds_sum" + m), 10e-6);
  EXPECT_EQ(Sample(text, "quarry_request_generation_tokens_sum" + m), 8);
  EXPECT_EQ(Sample(text, "quarry_requests_total{model_name=\"tiny\",code=\"OK\",rpc=\"Generate\"} "), 2);
  EXPECT_EQ(Sample(text, "quarry_requests_total{model_name=\"tiny\",code=\"RESOURCE_EXHAUSTED\",rpc=\"Generate\"} "), 1);
  EXPECT_EQ(Sample(text, "quarry_request_success_total{model_name=\"tiny\",finished_reason=\"length\"} "), 2);
  EXPECT_EQ(Sample(text, "quarry_rejected_total{model_name=\"tiny\",reason=\"queue_full\"} "), 1);
  EXPECT_EQ(Sample(text, "quarry_num_requests_running" + m), 0);
  EXPECT_EQ(Sample(text, "quarry_state_slots_total" + m), 8);
}

TEST_F(HealthTest, MetricsExposerServesTheTextFormat) {
  auto port = metrics_->StartExposer(0);
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_TRUE(Generate(Request({1}, 2)).status.ok());
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(*port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string get = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  std::string body;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_NE(body.find("200 OK"), std::string::npos) << body.substr(0, 200);
  EXPECT_NE(body.find("\nquarry_generation_tokens_total{model_name=\"tiny\"} 2\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nquarry_kv_cache_usage_perc{model_name=\"tiny\"} 0\n"), std::string::npos) << body;
}

}  // namespace
}  // namespace quarry::testing
