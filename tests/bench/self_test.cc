// quarry-bench end to end against a scripted fake quarry.v1.Quarry server with known token timings: the
// measured TTFT / TPOT / ITL / latency / throughput match the script within bounds that allow for scheduling
// jitter on a loaded machine (medians; the server can never be early, so lower bounds are tight), while counts,
// structure (sum of ITL = latency - TTFT), goodput at deterministic SLOs, concurrency limits, rates, errors
// by code, the duration cap and cancellation are exact.
#include <algorithm>
#include <thread>

#include "bench/quarry_bench/client.h"
#include "bench/quarry_bench/metrics.h"
#include "gtest/gtest.h"
#include "tests/bench/fake_server.h"

namespace quarry::bench {
namespace {

using testing::FakeServer;
using testing::Script;

std::vector<SampleRequest> Prompts(int n, int output_len, const std::string& text = "hello granite") {
  std::vector<SampleRequest> v(n);
  for (SampleRequest& s : v) {
    s.prompt = text;
    s.expected_output_len = output_len;  // prompt_len 0: the server's usage (17) counts
  }
  return v;
}

double Median(std::vector<double> v) { return Percentile(std::move(v), 50); }

RunOptions Options(const FakeServer& server) {
  RunOptions o;
  o.target = server.address();
  o.request_timeout_s = 30;
  o.request_id_prefix = "selftest";
  return o;
}

// First token 50 ms after arrival, then one every 10 ms; 11 tokens per request -> TTFT 50, TPOT 10, ITL 10,
// E2EL 150 ms; 8 requests two at a time -> 4 rounds -> at least 600 ms.
TEST(SelfTest, ClosedLoopMatchesTheScript) {
  FakeServer server({.first_ms = 50, .gap_ms = 10});
  RunOptions o = Options(server);
  o.max_concurrency = 2;
  o.num_warmups = 1;
  auto run = RunBenchmark(o, Prompts(8, 11));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(server.service().calls(), 1 + 1 + 8);  // initial test + warm-up + run
  EXPECT_LE(server.service().max_in_flight(), 2);
  ASSERT_EQ(run->outputs.size(), 8u);
  EXPECT_EQ(run->not_sent, 0);

  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestResult& r : run->outputs) {
    ASSERT_TRUE(r.success) << r.status_code << " " << r.error;
    EXPECT_EQ(r.output_tokens, 11);
    EXPECT_EQ(r.received_tokens, 11);
    EXPECT_EQ(r.server_prompt_tokens, 17);
    ASSERT_EQ(r.itl.size(), 10u);  // one gap per chunk after the first
    EXPECT_GE(r.ttft, 0.050);      // the server is never early
    EXPECT_GE(r.latency, 0.150);
    double sum = 0;
    for (double g : r.itl) sum += g;
    EXPECT_NEAR(r.ttft + sum, r.latency, 1e-9);  // the last message is the last chunk
    std::string text;
    for (int i = 0; i < 11; ++i) text += " tok";
    EXPECT_EQ(r.generated_text, text);
    ttft.push_back(r.ttft);
    tpot.push_back((r.latency - r.ttft) / 10);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
    e2el.push_back(r.latency);
  }
  EXPECT_GE(Median(ttft), 0.050);
  EXPECT_LE(Median(ttft), 0.050 + 0.040);
  EXPECT_GE(Median(tpot), 0.008);
  EXPECT_LE(Median(tpot), 0.015);
  EXPECT_GE(Median(itl), 0.006);
  EXPECT_LE(Median(itl), 0.020);
  EXPECT_LE(Median(e2el), 0.150 + 0.060);
  EXPECT_GE(run->duration_s, 0.600);
  EXPECT_LE(run->duration_s, 1.5);

  Slo slo;
  slo.ttft_ms = 1000;
  slo.tpot_ms = 100;
  const BenchmarkMetrics m = ComputeMetrics(run->outputs, run->duration_s, slo, {50, 99});
  EXPECT_EQ(m.completed, 8);
  EXPECT_EQ(m.failed, 0);
  EXPECT_EQ(m.total_output, 88);
  EXPECT_EQ(m.total_input, 8 * 17);
  EXPECT_DOUBLE_EQ(m.request_throughput, 8 / run->duration_s);
  EXPECT_DOUBLE_EQ(m.output_throughput, 88 / run->duration_s);
  EXPECT_DOUBLE_EQ(m.request_goodput, m.request_throughput);  // every request meets generous SLOs
  EXPECT_NEAR(m.ttft.median_ms, Median(ttft) * 1000, 1e-9);
  EXPECT_NEAR(m.tpot.median_ms, Median(tpot) * 1000, 1e-9);
  EXPECT_EQ(m.peak_concurrent_requests, 2);
  slo.ttft_ms = 49;  // below the scripted 50 ms: nobody can meet it
  EXPECT_EQ(ComputeMetrics(run->outputs, run->duration_s, slo, {}).request_goodput, 0);
}

// Four tokens per message, one message every 20 ms: ITL counts chunks (vLLM), TPOT divides by tokens, output
// tokens come from usage. Fewer gaps than above, so the bounds are wider (a late message shortens the next gap).
TEST(SelfTest, MultiTokenChunks) {
  FakeServer server({.first_ms = 30, .gap_ms = 20, .tokens_per_chunk = 4});
  RunOptions o = Options(server);
  auto run = RunBenchmark(o, Prompts(5, 10));
  ASSERT_TRUE(run.ok()) << run.status();
  std::vector<double> itl, tpot;
  for (const RequestResult& r : run->outputs) {
    ASSERT_TRUE(r.success);
    EXPECT_EQ(r.output_tokens, 10);
    EXPECT_EQ(r.received_tokens, 10);
    ASSERT_EQ(r.itl.size(), 2u);  // chunks of 4, 4, 2 tokens
    EXPECT_GE(r.ttft, 0.030);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
    tpot.push_back((r.latency - r.ttft) / 9);  // 40 ms over 9 tokens
  }
  const BenchmarkMetrics m = ComputeMetrics(run->outputs, run->duration_s, {}, {99});
  EXPECT_EQ(m.total_output, 50);
  EXPECT_GE(Median(itl), 0.010);
  EXPECT_LE(Median(itl), 0.040);
  EXPECT_GE(Median(tpot), 0.020 / 9);
  EXPECT_LE(Median(tpot), 0.080 / 9);
  EXPECT_NEAR(m.tpot.median_ms, Median(tpot) * 1000, 1e-9);
}

// A Poisson schedule at 20 req/s: every request is sent at (not before) its scheduled time.
TEST(SelfTest, RequestRateFollowsTheSchedule) {
  FakeServer server({.first_ms = 20, .gap_ms = 5});
  RunOptions o = Options(server);
  o.arrivals.request_rate = 20;
  o.arrivals.seed = 1;
  auto run = RunBenchmark(o, Prompts(10, 3));
  ASSERT_TRUE(run.ok()) << run.status();
  auto schedule = MakeSchedule(o.arrivals, 10);
  ASSERT_TRUE(schedule.ok());
  EXPECT_NEAR(schedule->send_s.back(), 0.5, 1e-9);
  std::vector<double> lag;
  for (size_t i = 0; i < run->outputs.size(); ++i) {
    EXPECT_GE(run->outputs[i].start_time, schedule->send_s[i] - 1e-6) << i;
    lag.push_back(run->outputs[i].start_time - schedule->send_s[i]);
  }
  EXPECT_LE(Median(lag), 0.020);
  EXPECT_GE(run->duration_s, 0.5 + 0.030);
}

TEST(SelfTest, ErrorsByStatusCode) {
  FakeServer server({.first_ms = 5, .gap_ms = 1});
  std::vector<SampleRequest> s = Prompts(4, 2);
  s[1].prompt = "please FAIL";
  s[3].prompt = "FAIL again";
  auto run = RunBenchmark(Options(server), s);
  ASSERT_TRUE(run.ok()) << run.status();
  const BenchmarkMetrics m = ComputeMetrics(run->outputs, run->duration_s, {}, {99});
  EXPECT_EQ(m.completed, 2);
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.errors_by_code, (std::map<std::string, int>{{"UNAVAILABLE", 2}}));
  EXPECT_EQ(run->outputs[1].error, "scripted failure");
  EXPECT_EQ(m.output_lens, (std::vector<int>{2, 0, 2, 0}));

  // The initial test request uses the first prompt: a failing one stops the run before it starts.
  std::swap(s[0], s[1]);
  auto refused = RunBenchmark(Options(server), s);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SelfTest, UnreachableServerIsRefused) {
  std::string address;
  {
    FakeServer gone({});
    address = gone.address();
  }
  RunOptions o;
  o.target = address;
  o.request_timeout_s = 3;
  auto run = RunBenchmark(o, Prompts(2, 2));
  EXPECT_EQ(run.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(run.status().message().find("UNAVAILABLE"), std::string::npos) << run.status();
}

// --max-duration: nothing is sent after the cap and the stream in flight ends with DEADLINE_EXCEEDED.
TEST(SelfTest, DurationCap) {
  FakeServer server({.first_ms = 50, .gap_ms = 10});
  RunOptions o = Options(server);
  o.max_concurrency = 1;
  o.max_duration_s = 0.3;
  o.initial_test = false;
  auto run = RunBenchmark(o, Prompts(20, 50));  // 540 ms each
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->outputs.size(), 1u);
  EXPECT_EQ(run->not_sent, 19);
  EXPECT_EQ(run->outputs[0].status_code, "DEADLINE_EXCEEDED");
  EXPECT_TRUE(run->duration_cap_hit);
  EXPECT_LT(run->duration_s, 1.5);
}

// The stop flag (SIGINT in quarry-bench) cancels what is in flight and sends nothing more.
TEST(SelfTest, StopCancelsInFlight) {
  FakeServer server({.first_ms = 50, .gap_ms = 10});
  RunOptions o = Options(server);
  o.max_concurrency = 2;
  o.initial_test = false;
  std::atomic<bool> stop{false};
  o.stop = &stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  auto run = RunBenchmark(o, Prompts(10, 100));  // 1 s each
  stopper.join();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->outputs.size(), 2u);
  for (const RequestResult& r : run->outputs) EXPECT_EQ(r.status_code, "CANCELLED");
  EXPECT_EQ(run->not_sent, 8);
  EXPECT_LT(run->duration_s, 1.0);
}

// Tool-calling chats go through ChatStream.
TEST(SelfTest, ToolChatsOnChatStream) {
  FakeServer server({.first_ms = 10, .gap_ms = 2});
  FileOptions fo;
  fo.output_len = 5;
  auto ds = ToolChatDataset("", fo, 3);
  ASSERT_TRUE(ds.ok());
  RunOptions o = Options(server);
  o.endpoint = "chat";
  auto run = RunBenchmark(o, *ds);
  ASSERT_TRUE(run.ok()) << run.status();
  const BenchmarkMetrics m = ComputeMetrics(run->outputs, run->duration_s, {}, {99});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.total_output, 15);
  EXPECT_EQ(m.total_input, 3 * 17);  // rendered prompts: the server's count
  EXPECT_EQ(server.service().last_request_id().rfind("selftest-", 0), 0u);
}

}  // namespace
}  // namespace quarry::bench
