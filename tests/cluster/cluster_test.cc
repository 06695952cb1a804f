// The cluster as real processes on loopback (quarry-router in front of two quarry-worker processes on a tiny
// random model): 32 concurrent streams, cancellation and deadlines freeing worker slots, the router's drain on
// SIGTERM, and a worker killed with SIGKILL mid-run. Every wait is bounded.
#include <signal.h>

#include <atomic>
#include <thread>

#include "tests/cluster/cluster.h"
#include "tests/cluster/stream_util.h"

namespace quarry::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << cluster_->Logs();
  }
  void Start(ClusterOptions o = {}) {
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_TRUE(cluster_->Start());
  }
  // Sum over the workers still running of running + waiting requests.
  int64_t Busy(int worker) {
    worker::v1::GetLoadResponse l;
    if (!cluster_->Load(worker, &l).ok()) return -1;
    return static_cast<int64_t>(l.running() + l.waiting());
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterTest, ThirtyTwoConcurrentStreamsEachGetExactlyMaxTokens) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kStreams = 32;
  constexpr uint32_t kTokens = 24;
  StreamGroup group(cluster_->router(), kStreams, [&](int i) {
    return FixedLength("Stream " + std::to_string(i) + ": once upon", kTokens);
  }, seconds(60));
  // Both workers take part (least-load routing spreads 32 streams over 2 x 8 slots).
  int64_t peak[2] = {0, 0};
  while (group.done() < kStreams) {
    for (int w = 0; w < 2; ++w) peak[w] = std::max(peak[w], Busy(w));
    std::this_thread::sleep_for(milliseconds(5));
  }
  group.Join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    const StreamResult& r = group.result(i);
    EXPECT_TRUE(r.status.ok()) << r.status.error_code() << " " << r.status.error_message();
    EXPECT_EQ(r.tokens, static_cast<int>(kTokens));
    EXPECT_EQ(r.completion_tokens, kTokens);
    EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
  }
  EXPECT_GT(peak[0], 0);
  EXPECT_GT(peak[1], 0);
  EXPECT_TRUE(cluster_->WaitIdle(seconds(5)));
}

TEST_F(ClusterTest, CancelMidStreamFreesTheWorkerSlot) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto ctx = Deadline(seconds(30));
  worker::v1::GetLoadResponse during[2];
  bool cancelled = false;
  StreamResult r = ReadStream(cluster_->router(), ctx.get(), FixedLength("Cancel me: the story goes", 480), [&](int tokens) {
    if (cancelled || tokens == 0) return;
    for (int w = 0; w < 2; ++w) ASSERT_TRUE(cluster_->Load(w, &during[w]).ok());
    ctx->TryCancel();
    cancelled = true;
  });
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
  EXPECT_GT(r.tokens, 0);
  EXPECT_LT(r.tokens, 480);
  // While streaming, exactly one worker held one state slot for it.
  EXPECT_EQ(during[0].state_slots_used() + during[1].state_slots_used(), 1u);
  EXPECT_EQ(during[0].running() + during[1].running(), 1u);
  // After the cancel the router cancels its worker call and the engine frees the slot and the KV pages.
  EXPECT_TRUE(cluster_->WaitIdle(seconds(5)));
}

TEST_F(ClusterTest, ClientDeadlineEndsTheStreamAndFreesTheWorkerSlot) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto ctx = Deadline(milliseconds(400));
  StreamResult r = ReadStream(cluster_->router(), ctx.get(), FixedLength("Deadline: the story goes", 480));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << r.status.error_message();
  EXPECT_LT(r.tokens, 480);
  EXPECT_TRUE(cluster_->WaitIdle(seconds(5)));
  // The cluster still serves.
  auto ctx2 = Deadline(seconds(20));
  StreamResult ok = ReadStream(cluster_->router(), ctx2.get(), FixedLength("after the deadline", 4));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens, 4);
}

TEST_F(ClusterTest, SigtermDrainsTheRouter) {
  ClusterOptions o;
  o.router_drain_grace_s = 60;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  constexpr int kStreams = 4;
  constexpr uint32_t kTokens = 64;
  StreamGroup group(cluster_->router(), kStreams, [&](int i) {
    return FixedLength("Drain " + std::to_string(i), kTokens);
  }, seconds(90));
  ASSERT_TRUE(group.WaitAllStarted(seconds(20)));
  ASSERT_EQ(group.done(), 0) << "streams finished before the drain began; make them longer";
  const auto sigterm = Clock::now();
  cluster_->router_process().Signal(SIGTERM);

  // New calls are refused with UNAVAILABLE while the in-flight streams still run.
  grpc::Status refused;
  const auto refuse_by = Clock::now() + seconds(5);
  while (Clock::now() < refuse_by) {
    v1::GenerateResponse resp;
    auto ctx = Deadline(seconds(5));
    refused = cluster_->router().Generate(ctx.get(), FixedLength("new call", 1), &resp);
    if (!refused.ok()) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_NE(refused.error_message().find("draining"), std::string::npos) << refused.error_message();
  EXPECT_LT(group.done(), kStreams) << "the refusal should come while streams are in flight";

  // The in-flight streams finish whole.
  group.Join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    const StreamResult& r = group.result(i);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, static_cast<int>(kTokens));
    EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
  }
  // Then the router exits 0 within the grace.
  const auto grace = seconds(static_cast<int>(o.router_drain_grace_s));
  std::optional<int> code = cluster_->router_process().WaitExit(grace + seconds(5));
  ASSERT_TRUE(code.has_value()) << "router still running after the grace";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(Clock::now() - sigterm, grace);
  EXPECT_NE(cluster_->router_process().Output().find("draining"), std::string::npos);
}

TEST_F(ClusterTest, KilledWorkerEndsItsStreamsAndNewRequestsGoToTheOther) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kStreams = 4;
  constexpr uint32_t kTokens = 64;
  StreamGroup group(cluster_->router(), kStreams, [&](int i) {
    return FixedLength("Kill " + std::to_string(i), kTokens);
  }, seconds(90));
  ASSERT_TRUE(group.WaitAllStarted(seconds(20)));
  worker::v1::GetLoadResponse load0;
  ASSERT_TRUE(cluster_->Load(0, &load0).ok());
  ASSERT_EQ(group.done(), 0) << "streams finished before the kill; make them longer";
  const int on_killed = static_cast<int>(load0.open_calls());
  ASSERT_GT(on_killed, 0);
  ASSERT_LT(on_killed, kStreams);
  const auto killed_at = Clock::now();
  cluster_->worker_process(0).Kill();
  ASSERT_FALSE(cluster_->worker_process(0).Running()) << "SIGKILL did not end worker0 within 10 s";

  group.Join();
  int failed = 0;
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    const StreamResult& r = group.result(i);
    if (r.status.ok()) {
      EXPECT_EQ(r.tokens, static_cast<int>(kTokens));
      EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
      continue;
    }
    ++failed;
    std::cerr << "stream " << i << " ended " << std::chrono::duration<double>(r.ended - killed_at).count()
              << " s after the kill: " << r.status.error_code() << " " << r.status.error_message() << "\n";
    EXPECT_TRUE(r.status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                r.status.error_code() == grpc::StatusCode::INTERNAL)
        << r.status.error_code() << " " << r.status.error_message();
    EXPECT_LT(r.ended - killed_at, seconds(5));
    EXPECT_LT(r.tokens, static_cast<int>(kTokens));
  }
  EXPECT_EQ(failed, on_killed) << "exactly the streams on the killed worker fail";

  // New requests succeed through the surviving worker (the first may fail over from the dead one).
  for (int i = 0; i < 6; ++i) {
    v1::GenerateResponse resp;
    auto ctx = Deadline(seconds(20));
    grpc::Status st = cluster_->router().Generate(ctx.get(), FixedLength("after the kill", 4), &resp);
    EXPECT_TRUE(st.ok()) << i << ": " << st.error_code() << " " << st.error_message();
    EXPECT_EQ(resp.usage().completion_tokens(), 4u);
  }
  EXPECT_TRUE(cluster_->router_process().Running());
  EXPECT_TRUE(cluster_->WaitIdle(seconds(5)));
}

}  // namespace
}  // namespace quarry::testing
