// quarry-router-bench: the router's own cost. An in-process trivial worker (quarry.worker.v1.Worker that
// answers Generate at once with N scripted tokens, one message per token, no model) sits behind the real
// RouterService on loopback. K client threads send a fixed number of requests, first straight to the trivial
// worker, then through the router (GenerateStream or Generate with a text prompt, so the router validates,
// tokenizes, routes, relays and detokenizes). Prints requests/s and latency percentiles for both, and the
// latency the router adds (router minus direct, per percentile); writes JSON.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "router/server/router_service.h"
#include "worker/model/io/make_model.h"

namespace quarry {
namespace {

using Clock = std::chrono::steady_clock;

// Answers every Generate with the scripted tokens, one message per token; reports no load.
class TrivialWorker final : public worker::v1::Worker::Service {
 public:
  TrivialWorker(std::vector<uint32_t> tokens, uint32_t vocab) : tokens_(std::move(tokens)), vocab_(vocab) {}
  grpc::Status Generate(grpc::ServerContext*, const worker::v1::GenerateRequest* req,
                        grpc::ServerWriter<worker::v1::GenerateResponse>* writer) override {
    const uint32_t n = req->stopping().has_max_tokens()
                           ? std::min<uint32_t>(req->stopping().max_tokens(), tokens_.size())
                           : static_cast<uint32_t>(tokens_.size());
    for (uint32_t i = 0; i < n; ++i) {
      worker::v1::GenerateResponse m;
      m.add_token_ids(tokens_[i]);
      m.mutable_usage()->set_prompt_tokens(req->prompt_token_ids_size());
      m.mutable_usage()->set_completion_tokens(i + 1);
      if (i + 1 == n) {
        m.set_finished(true);
        m.set_finish_reason(worker::v1::FINISH_REASON_LENGTH);
        m.mutable_timing();
      }
      if (!writer->Write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
    return grpc::Status::OK;
  }
  grpc::Status Abort(grpc::ServerContext*, const worker::v1::AbortRequest*, worker::v1::AbortResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status GetLoad(grpc::ServerContext*, const worker::v1::GetLoadRequest*, worker::v1::GetLoadResponse* r) override {
    r->set_state_slots_total(1024);
    return grpc::Status::OK;
  }
  grpc::Status Info(grpc::ServerContext*, const worker::v1::InfoRequest*, worker::v1::InfoResponse* r) override {
    r->set_model_name("trivial");
    r->set_vocab_size(vocab_);
    return grpc::Status::OK;
  }

 private:
  std::vector<uint32_t> tokens_;
  uint32_t vocab_;
};

struct Flags {
  std::string model;  // empty: make a tiny Granite-vocabulary model in a temp dir
  int tokens = 16;
  int requests = 4000;
  int warmup = 200;
  std::vector<int> concurrency = {1, 8, 32};
  std::string mode = "stream";  // stream | unary
  std::string prompt = "Summarize the following support ticket in one sentence: the printer on floor 3 is jammed.";
  std::string json = "router_bench.json";
};

struct Run {
  double seconds = 0;
  int errors = 0;
  std::vector<double> latency_us;  // one per request
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

std::shared_ptr<grpc::Channel> Channel(const std::string& addr, int id) {
  grpc::ChannelArguments args;
  args.SetInt("quarry.bench.channel_id", id);  // one connection per client thread
  return grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
}

// K threads share `requests`; `call(thread)` makes one request and returns whether it succeeded.
template <typename MakeCall>
Run Drive(int threads, int requests, MakeCall make_call) {
  Run run;
  std::vector<std::vector<double>> lat(threads);
  std::atomic<int> next{0}, errors{0};
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto call = make_call(t);
      while (next.fetch_add(1) < requests) {
        const auto s = Clock::now();
        const bool ok = call();
        lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
        if (!ok) ++errors;
      }
    });
  }
  for (auto& th : pool) th.join();
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  run.errors = errors.load();
  for (auto& l : lat) run.latency_us.insert(run.latency_us.end(), l.begin(), l.end());
  return run;
}

int Main(const Flags& f) {
  std::filesystem::path tmp;
  std::string model_dir = f.model;
  if (model_dir.empty()) {
    tmp = std::filesystem::temp_directory_path() / ("quarry_router_bench_" + std::to_string(getpid()));
    MakeModelOptions mm;
    mm.preset = "tiny";
    mm.vocab_size = 100352;
    mm.out_dir = tmp.string();
    mm.tokenizer_dir = QUARRY_SOURCE_DIR "/assets/tokenizer";
    absl::Status st = MakeModel(mm);
    if (!st.ok()) {
      std::fprintf(stderr, "make-model: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    model_dir = tmp.string();
  }
  auto model = LoadModelContext(model_dir, "bench", 4096);
  if (!model.ok()) {
    std::fprintf(stderr, "model: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  // Scripted output: the tokens of an ordinary sentence, repeated to N.
  auto script = (*model)->tokenizer->Encode(" The quick brown fox jumps over the lazy dog, again and again.", {});
  auto prompt_ids = (*model)->tokenizer->Encode(f.prompt, {.parse_special = true});
  if (!script.ok() || !prompt_ids.ok()) return 1;
  std::vector<uint32_t> tokens;
  while (static_cast<int>(tokens.size()) < f.tokens) tokens.push_back(static_cast<uint32_t>((*script)[tokens.size() % script->size()]));

  TrivialWorker trivial(tokens, static_cast<uint32_t>((*model)->config.vocab_size));
  int worker_port = 0;
  grpc::ServerBuilder wb;
  wb.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &worker_port);
  wb.RegisterService(&trivial);
  std::unique_ptr<grpc::Server> worker_server = wb.BuildAndStart();
  const std::string worker_addr = "127.0.0.1:" + std::to_string(worker_port);

  WorkerPool pool({worker_addr});
  pool.Start();
  if (!pool.WaitForHealthy(1, std::chrono::seconds(10))) return 1;
  CancelWatcher watcher;
  RouterMetrics metrics("bench");
  RouterService service(model->get(), &pool, &watcher, &metrics);
  int router_port = 0;
  grpc::ServerBuilder rb;
  rb.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &router_port);
  rb.RegisterService(&service);
  std::unique_ptr<grpc::Server> router_server = rb.BuildAndStart();
  const std::string router_addr = "127.0.0.1:" + std::to_string(router_port);

  worker::v1::GenerateRequest direct_req;
  for (int32_t id : *prompt_ids) direct_req.add_prompt_token_ids(static_cast<uint32_t>(id));
  direct_req.mutable_stopping()->set_max_tokens(f.tokens);
  v1::GenerateRequest router_req;
  router_req.set_text(f.prompt);
  router_req.mutable_stopping()->set_max_tokens(f.tokens);
  const bool stream = f.mode == "stream";

  auto direct = [&](int t) {
    auto stub = worker::v1::Worker::NewStub(Channel(worker_addr, t));
    return [stub = std::shared_ptr<worker::v1::Worker::Stub>(std::move(stub)), &direct_req, &f]() {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      auto reader = stub->Generate(&ctx, direct_req);
      worker::v1::GenerateResponse m;
      int n = 0;
      while (reader->Read(&m)) n += m.token_ids_size();
      return reader->Finish().ok() && n == f.tokens;
    };
  };
  auto routed = [&](int t) {
    auto stub = std::shared_ptr<v1::Quarry::Stub>(v1::Quarry::NewStub(Channel(router_addr, 1000 + t)));
    return [stub, &router_req, stream, &f]() {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      if (stream) {
        auto reader = stub->GenerateStream(&ctx, router_req);
        v1::GenerateStreamResponse m;
        bool last = false;
        while (reader->Read(&m)) last = m.finish_reason() == v1::FINISH_REASON_LENGTH;
        return reader->Finish().ok() && last;
      }
      v1::GenerateResponse resp;
      return stub->Generate(&ctx, router_req, &resp).ok() && resp.usage().completion_tokens() == static_cast<uint32_t>(f.tokens);
    };
  };

  std::printf("quarry-router-bench: %d scripted tokens per request (one message each), prompt %zu tokens, "
              "%d requests per run, mode %s, %u hardware threads\n",
              f.tokens, prompt_ids->size(), f.requests, f.mode.c_str(), std::thread::hardware_concurrency());
  std::printf("%-6s %-7s %9s %8s %10s %10s %10s %12s %12s\n", "conc", "path", "requests", "errors", "req/s",
              "p50 us", "p99 us", "added p50", "added p99");
  nlohmann::json rows = nlohmann::json::array();
  int errors = 0;
  for (int k : f.concurrency) {
    Drive(k, f.warmup, direct);
    Run d = Drive(k, f.requests, direct);
    Drive(k, f.warmup, routed);
    Run r = Drive(k, f.requests, routed);
    errors += d.errors + r.errors;
    const double d50 = Percentile(d.latency_us, 0.5), d99 = Percentile(d.latency_us, 0.99);
    const double r50 = Percentile(r.latency_us, 0.5), r99 = Percentile(r.latency_us, 0.99);
    std::printf("%-6d %-7s %9d %8d %10.0f %10.0f %10.0f %12s %12s\n", k, "direct", f.requests, d.errors,
                f.requests / d.seconds, d50, d99, "", "");
    std::printf("%-6d %-7s %9d %8d %10.0f %10.0f %10.0f %12.0f %12.0f\n", k, "router", f.requests, r.errors,
                f.requests / r.seconds, r50, r99, r50 - d50, r99 - d99);
    rows.push_back({{"concurrency", k},
                    {"direct", {{"requests", f.requests}, {"errors", d.errors}, {"seconds", d.seconds},
                                {"requests_per_s", f.requests / d.seconds}, {"p50_us", d50}, {"p99_us", d99}}},
                    {"router", {{"requests", f.requests}, {"errors", r.errors}, {"seconds", r.seconds},
                                {"requests_per_s", f.requests / r.seconds}, {"p50_us", r50}, {"p99_us", r99}}},
                    {"router_added_p50_us", r50 - d50},
                    {"router_added_p99_us", r99 - d99}});
  }
  nlohmann::json out = {{"benchmark", "quarry-router-bench"},
                        {"tokens_per_request", f.tokens},
                        {"prompt_tokens", prompt_ids->size()},
                        {"requests_per_run", f.requests},
                        {"warmup_requests", f.warmup},
                        {"mode", f.mode},
                        {"hardware_threads", std::thread::hardware_concurrency()},
                        {"runs", rows}};
  std::ofstream(f.json) << out.dump(2) << "\n";
  std::printf("wrote %s\n", f.json.c_str());

  router_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  pool.Stop();
  worker_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace quarry

int main(int argc, char** argv) {
  CLI::App app{"quarry-router-bench: router throughput and added latency in front of a trivial worker",
               "quarry-router-bench"};
  quarry::Flags f;
  app.add_option("--model", f.model, "model dir for the tokenizer (default: a tiny model made in a temp dir)");
  app.add_option("--tokens", f.tokens, "scripted tokens per request")->check(CLI::Range(1, 4000));
  app.add_option("--requests", f.requests, "measured requests per run")->check(CLI::PositiveNumber);
  app.add_option("--warmup", f.warmup, "warm-up requests per run")->check(CLI::NonNegativeNumber);
  app.add_option("--concurrency", f.concurrency, "client threads, one run each (comma-separated)")->delimiter(',');
  app.add_option("--mode", f.mode, "stream (GenerateStream) or unary (Generate)")->check(CLI::IsMember({"stream", "unary"}));
  app.add_option("--prompt", f.prompt, "text prompt (the router tokenizes it; the direct path gets its ids)");
  app.add_option("--json", f.json, "JSON output path");
  CLI11_PARSE(app, argc, argv);
  return quarry::Main(f);
}
