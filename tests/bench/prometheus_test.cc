// quarry-bench server metrics: Prometheus text parsing, before/after deltas, and the HTTP GET against a tiny
// in-test HTTP server (200, 404, connection refused, bad URLs).
#include "bench/quarry_bench/prometheus.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <thread>

#include "gtest/gtest.h"

namespace quarry::bench {
namespace {

constexpr char kBefore[] = R"(# HELP quarry_router_requests_total Outcome of every generation call
# TYPE quarry_router_requests_total counter
quarry_router_requests_total{model_name="m",rpc="GenerateStream",code="OK"} 3
quarry_router_generation_tokens_total{model_name="m"} 100 1700000000000
quarry_router_time_to_first_token_seconds_bucket{model_name="m",le="0.05"} 1
quarry_router_time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 3
quarry_router_time_to_first_token_seconds_sum{model_name="m"} 0.3
quarry_router_time_to_first_token_seconds_count{model_name="m"} 3
weird{label="a b} c",other="x\"y"} 2.5
quarry_router_requests_running{model_name="m"} 0

not a sample line
)";

TEST(Prometheus, ParsesSamples) {
  Samples s = ParsePrometheusText(kBefore);
  EXPECT_EQ(s.at("quarry_router_requests_total{model_name=\"m\",rpc=\"GenerateStream\",code=\"OK\"}"), 3);
  EXPECT_EQ(s.at("quarry_router_generation_tokens_total{model_name=\"m\"}"), 100);  // timestamp ignored
  EXPECT_EQ(s.at("quarry_router_time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"}"), 3);
  EXPECT_EQ(s.at("weird{label=\"a b} c\",other=\"x\\\"y\"}"), 2.5);
  EXPECT_EQ(s.size(), 8u);
  EXPECT_EQ(SeriesName("a_total{x=\"1\"}"), "a_total");
  EXPECT_EQ(SeriesName("plain"), "plain");
  Samples inf = ParsePrometheusText("g +Inf\nh NaN\n");
  EXPECT_TRUE(std::isinf(inf.at("g")));
  EXPECT_TRUE(std::isnan(inf.at("h")));
}

TEST(Prometheus, DeltasOfChangedSeries) {
  Samples before = ParsePrometheusText(kBefore);
  Samples after = before;
  after["quarry_router_requests_total{model_name=\"m\",rpc=\"GenerateStream\",code=\"OK\"}"] = 35;
  after["quarry_router_requests_total{model_name=\"m\",rpc=\"GenerateStream\",code=\"UNAVAILABLE\"}"] = 2;  // new
  after["quarry_router_time_to_first_token_seconds_sum{model_name=\"m\"}"] = 1.9;
  Samples d = Deltas(before, after);
  EXPECT_EQ(d.size(), 3u);
  EXPECT_EQ(d.at("quarry_router_requests_total{model_name=\"m\",rpc=\"GenerateStream\",code=\"OK\"}"), 32);
  EXPECT_EQ(d.at("quarry_router_requests_total{model_name=\"m\",rpc=\"GenerateStream\",code=\"UNAVAILABLE\"}"), 2);
  EXPECT_NEAR(d.at("quarry_router_time_to_first_token_seconds_sum{model_name=\"m\"}"), 1.6, 1e-12);
}

// Serves `response` to each of `connections` clients on 127.0.0.1:port, recording the request.
class TinyHttpServer {
 public:
  TinyHttpServer(std::string response, int connections) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 4);
    thread_ = std::thread([this, response, connections] {
      for (int i = 0; i < connections; ++i) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[4096];
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n > 0) request_.assign(buf, n);
        send(c, response.data(), response.size(), MSG_NOSIGNAL);
        close(c);
      }
    });
  }
  ~TinyHttpServer() {
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  const std::string& request() const { return request_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(HttpGet, FetchesBodyAndReportsErrors) {
  {
    TinyHttpServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nm_total 7\n", 1);
    auto body = HttpGet("http://127.0.0.1:" + std::to_string(server.port()) + "/metrics", std::chrono::seconds(5));
    ASSERT_TRUE(body.ok()) << body.status();
    EXPECT_EQ(*body, "m_total 7\n");
    EXPECT_EQ(server.request().rfind("GET /metrics HTTP/1.0\r\n", 0), 0u) << server.request();
  }
  {
    TinyHttpServer server("HTTP/1.1 404 Not Found\r\n\r\nnope", 1);
    auto body = HttpGet("http://localhost:" + std::to_string(server.port()) + "/x", std::chrono::seconds(5));
    EXPECT_EQ(body.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(body.status().message().find("404"), std::string::npos);
  }
  int port = 0;
  {
    TinyHttpServer server("", 0);  // closed again at once: nothing listens on the port afterwards
    port = server.port();
  }
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(port) + "/metrics", std::chrono::seconds(2)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(HttpGet("https://127.0.0.1/metrics", std::chrono::seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpGet("http:///metrics", std::chrono::seconds(1)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry::bench
