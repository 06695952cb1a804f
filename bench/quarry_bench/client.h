// quarry-bench load driver: sends the dataset to quarry.v1.Quarry (GenerateStream or ChatStream) on the
// arrival schedule, at most --max-concurrency at a time, and records what the client sees of each stream
// (send time, first chunk, every chunk gap, last message, usage, status). One thread per in-flight request
// (sync gRPC streams spread over a few channels); a duration cap and a stop flag cancel what is in flight.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/quarry_bench/arrivals.h"
#include "bench/quarry_bench/dataset.h"
#include "bench/quarry_bench/metrics.h"

namespace quarry::bench {

struct RunOptions {
  std::string target = "127.0.0.1:50051";
  std::string endpoint = "generate";  // generate (GenerateStream) | chat (ChatStream)
  std::string model;                  // served model id; empty = the default model
  bool send_token_ids = false;        // generate: send prompt_ids instead of the text when the dataset has them
  int max_concurrency = 0;            // 0 = unlimited
  ArrivalOptions arrivals;
  int num_warmups = 0;
  bool initial_test = true;           // one request first; the run is refused if it fails
  bool ignore_eos = false;
  double temperature = 0;
  double request_timeout_s = 600;
  double max_duration_s = 3600;       // hard cap: nothing is sent after it, what is in flight is cancelled
  std::string request_id_prefix = "quarry-bench";
  int num_channels = 4;
  std::function<void(int done, int total, double elapsed_s)> progress;  // called after each request
  std::function<void()> before_measured;  // called after the warm-ups, just before the measured run
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT) to stop sending and cancel in flight
};

struct RunResult {
  double duration_s = 0;
  std::vector<RequestResult> outputs;  // the requests that were sent, in dataset order
  int not_sent = 0;                    // stopped by --max-duration or the stop flag before sending
  bool duration_cap_hit = false;
};

// Initial test (when enabled), warm-ups (not recorded), then the measured run. FAILED_PRECONDITION when the
// initial test request fails (its status in the message).
absl::StatusOr<RunResult> RunBenchmark(const RunOptions& o, const std::vector<SampleRequest>& samples);

// The served model's id and facts from GetModelInfo (JSON object: id, architecture, max_model_len,
// vocab_size, dtype, ready_worker_groups).
absl::StatusOr<std::string> ServerModelInfo(const std::string& target, const std::string& model, std::string* info_json);

}  // namespace quarry::bench
