// The gRPC load driver of quarry-bench (see client.h).
#include "bench/quarry_bench/client.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "quarry/v1/quarry.grpc.pb.h"

namespace quarry::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {"OK",           "CANCELLED",          "UNKNOWN",   "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS", "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                                 "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE", "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

// Contexts of the streams in flight, so a stop can cancel them.
class Inflight {
 public:
  void Add(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    if (cancelled_) c->TryCancel();
    set_.insert(c);
  }
  void Remove(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    set_.erase(c);
  }
  void CancelAll() {
    std::lock_guard<std::mutex> l(mu_);
    cancelled_ = true;
    for (grpc::ClientContext* c : set_) c->TryCancel();
  }

 private:
  std::mutex mu_;
  std::set<grpc::ClientContext*> set_;
  bool cancelled_ = false;
};

class Semaphore {
 public:
  explicit Semaphore(int n) : n_(n) {}
  // False when `give_up()` turned true or `until` passed first.
  template <typename GiveUp>
  bool Acquire(Clock::time_point until, GiveUp give_up) {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      if (give_up() || Clock::now() >= until) return false;
      if (n_ > 0) break;
      cv_.wait_for(l, std::chrono::milliseconds(50));
    }
    --n_;
    return true;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++n_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

v1::Role RoleOf(const std::string& r) {
  if (r == "system") return v1::ROLE_SYSTEM;
  if (r == "user") return v1::ROLE_USER;
  if (r == "assistant") return v1::ROLE_ASSISTANT;
  if (r == "tool") return v1::ROLE_TOOL;
  if (r == "developer") return v1::ROLE_DEVELOPER;
  return v1::ROLE_UNSPECIFIED;  // the server answers INVALID_ARGUMENT, counted as an error
}

void FillChat(const SampleRequest& s, v1::ChatRequest* req) {
  if (!s.messages.is_array()) {
    auto* m = req->add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content(s.prompt);
  } else {
    for (const nlohmann::json& j : s.messages) {
      auto* m = req->add_messages();
      m->set_role(RoleOf(j.value("role", "")));
      if (j.contains("content") && j["content"].is_string()) m->set_content(j["content"].get<std::string>());
      if (j.contains("tool_call_id") && j["tool_call_id"].is_string()) m->set_tool_call_id(j["tool_call_id"].get<std::string>());
      if (j.contains("name") && j["name"].is_string()) m->set_name(j["name"].get<std::string>());
      if (j.contains("tool_calls") && j["tool_calls"].is_array()) {
        for (const nlohmann::json& tc : j["tool_calls"]) {
          const nlohmann::json& f = tc.contains("function") ? tc["function"] : tc;
          auto* c = m->add_tool_calls();
          if (tc.contains("id") && tc["id"].is_string()) c->set_id(tc["id"].get<std::string>());
          if (f.contains("name") && f["name"].is_string()) c->set_name(f["name"].get<std::string>());
          if (f.contains("arguments")) {
            c->set_arguments_json(f["arguments"].is_string() ? f["arguments"].get<std::string>() : f["arguments"].dump());
          }
        }
      }
    }
  }
  if (s.tools.is_array()) {
    for (const nlohmann::json& t : s.tools) {
      auto* tool = req->add_tools();
      tool->set_name(t.value("name", ""));
      tool->set_description(t.value("description", ""));
      if (t.contains("parameters")) tool->set_parameters_json(t["parameters"].dump());
    }
  }
}

template <typename Req>
void FillCommon(const SampleRequest& s, const RunOptions& o, const std::string& id, Req* req) {
  req->set_model(o.model);
  req->set_request_id(id);
  req->mutable_sampling()->set_temperature(static_cast<float>(o.temperature));
  req->mutable_stopping()->set_max_tokens(static_cast<uint32_t>(std::max(1, s.expected_output_len)));
  req->mutable_stopping()->set_ignore_eos(o.ignore_eos);
  req->mutable_output()->set_include_usage(true);
  req->mutable_output()->set_return_token_ids(true);
}

// Reads a stream to the end, timing chunks as vLLM does: TTFT at the first message with tokens or text, an
// ITL gap for every later such message (since the previous message of any kind), latency at the last message.
template <typename Reader, typename Msg, typename TextOf>
void Consume(Reader* reader, Clock::time_point st, RequestResult* r, TextOf text_of) {
  Msg m;
  bool first = true;
  Clock::time_point last = st;
  while (reader->Read(&m)) {
    const Clock::time_point t = Clock::now();
    const std::string& text = text_of(m);
    const bool chunk = m.token_ids_size() > 0 || !text.empty();
    if (chunk) {
      if (first) {
        r->ttft = Seconds(t - st);
        first = false;
      } else {
        r->itl.push_back(Seconds(t - last));
      }
    }
    last = t;
    r->received_tokens += m.token_ids_size();
    r->generated_text += text;
    if (m.has_usage()) {
      r->output_tokens = static_cast<int>(m.usage().completion_tokens());
      r->server_prompt_tokens = static_cast<int>(m.usage().prompt_tokens());
    }
  }
  r->latency = Seconds(last - st);
}

RequestResult RunOne(v1::Quarry::Stub* stub, Inflight* inflight, const SampleRequest& s, const RunOptions& o,
                     const std::string& id, Clock::time_point bench_start, Clock::time_point hard_deadline) {
  RequestResult r;
  r.prompt_len = s.prompt_len;
  grpc::ClientContext ctx;
  const auto timeout = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(o.request_timeout_s));
  const auto deadline = std::min(timeout, hard_deadline);
  ctx.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
  inflight->Add(&ctx);
  const Clock::time_point st = Clock::now();
  r.start_time = Seconds(st - bench_start);
  grpc::Status status;
  if (o.endpoint == "chat" || s.messages.is_array()) {
    v1::ChatRequest req;
    FillCommon(s, o, id, &req);
    FillChat(s, &req);
    auto reader = stub->ChatStream(&ctx, req);
    Consume<decltype(reader)::element_type, v1::ChatStreamResponse>(
        reader.get(), st, &r, [](const v1::ChatStreamResponse& m) -> const std::string& { return m.content(); });
    status = reader->Finish();
  } else {
    v1::GenerateRequest req;
    FillCommon(s, o, id, &req);
    if (o.send_token_ids && !s.prompt_ids.empty()) {
      for (int32_t t : s.prompt_ids) req.mutable_token_ids()->add_ids(static_cast<uint32_t>(t));
    } else {
      req.set_text(s.prompt);
    }
    auto reader = stub->GenerateStream(&ctx, req);
    Consume<decltype(reader)::element_type, v1::GenerateStreamResponse>(
        reader.get(), st, &r, [](const v1::GenerateStreamResponse& m) -> const std::string& { return m.text(); });
    status = reader->Finish();
  }
  inflight->Remove(&ctx);
  r.success = status.ok();
  r.status_code = CodeName(status.error_code());
  if (!status.ok()) r.error = status.error_message();
  return r;
}

std::vector<std::unique_ptr<v1::Quarry::Stub>> MakeStubs(const std::string& target, int n) {
  std::vector<std::unique_ptr<v1::Quarry::Stub>> stubs;
  for (int i = 0; i < std::max(1, n); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("quarry.bench.channel", i);  // distinct args: one connection per channel
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    stubs.push_back(v1::Quarry::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

}  // namespace

absl::StatusOr<RunResult> RunBenchmark(const RunOptions& o, const std::vector<SampleRequest>& samples) {
  if (samples.empty()) return absl::InvalidArgumentError("no requests to send");
  auto schedule = MakeSchedule(o.arrivals, static_cast<int>(samples.size()));
  if (!schedule.ok()) return schedule.status();
  auto stubs = MakeStubs(o.target, o.num_channels);
  Inflight inflight;
  auto stopped = [&] { return o.stop != nullptr && o.stop->load(); };
  const auto far = Clock::now() + std::chrono::hours(24 * 365);

  if (o.initial_test) {
    RequestResult t = RunOne(stubs[0].get(), &inflight, samples[0], o, o.request_id_prefix + "-test", Clock::now(), far);
    if (!t.success) {
      return absl::FailedPreconditionError(absl::StrCat("initial test request to ", o.target, " failed: ", t.status_code,
                                                        ": ", t.error));
    }
  }
  if (o.num_warmups > 0) {
    Semaphore sem(o.max_concurrency > 0 ? o.max_concurrency : o.num_warmups);
    std::vector<std::thread> threads;
    for (int i = 0; i < o.num_warmups; ++i) {
      threads.emplace_back([&, i] {
        if (!sem.Acquire(far, stopped)) return;
        RunOne(stubs[i % stubs.size()].get(), &inflight, samples[0], o, absl::StrCat(o.request_id_prefix, "-warmup-", i),
               Clock::now(), far);
        sem.Release();
      });
    }
    for (std::thread& t : threads) t.join();
  }

  if (o.before_measured) o.before_measured();
  const int n = static_cast<int>(samples.size());
  RunResult result;
  std::vector<RequestResult> outputs(n);
  std::vector<char> sent(n, 0);
  Semaphore sem(o.max_concurrency > 0 ? o.max_concurrency : n);
  std::mutex progress_mu;
  int done = 0, finished = 0;  // requests answered; threads ended (answered or given up)
  const Clock::time_point start = Clock::now();
  const Clock::time_point hard_deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.max_duration_s));
  auto give_up = [&] { return stopped() || Clock::now() >= hard_deadline; };
  std::vector<std::thread> threads;
  threads.reserve(n);
  int launched = 0;
  for (int i = 0; i < n; ++i) {
    const Clock::time_point at =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(schedule->send_s[i]));
    while (Clock::now() < at && !give_up()) {
      std::this_thread::sleep_for(std::min<Clock::duration>(at - Clock::now(), std::chrono::milliseconds(50)));
    }
    if (give_up()) break;
    ++launched;
    threads.emplace_back([&, i, at] {
      if (!sem.Acquire(hard_deadline, stopped)) {
        std::lock_guard<std::mutex> l(progress_mu);
        ++finished;  // not sent
        return;
      }
      const double queue = Seconds(Clock::now() - at);
      outputs[i] = RunOne(stubs[i % stubs.size()].get(), &inflight, samples[i], o,
                          absl::StrCat(o.request_id_prefix, "-", i), start, hard_deadline);
      outputs[i].queue_time = queue;
      sent[i] = 1;
      sem.Release();
      std::lock_guard<std::mutex> l(progress_mu);
      ++done;
      ++finished;
      if (o.progress) o.progress(done, n, Seconds(Clock::now() - start));
    });
  }
  // Wait for the streams; a stop cancels what is in flight. The duration cap is each call's gRPC deadline
  // (DEADLINE_EXCEEDED), and threads still waiting for a concurrency slot give up at it.
  for (;;) {
    {
      std::lock_guard<std::mutex> l(progress_mu);
      if (finished >= launched) break;
    }
    if (stopped()) inflight.CancelAll();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (std::thread& t : threads) t.join();
  result.duration_s = Seconds(Clock::now() - start);
  result.duration_cap_hit = Clock::now() >= hard_deadline;
  for (int i = 0; i < n; ++i) {
    if (sent[i]) {
      result.outputs.push_back(std::move(outputs[i]));
    } else {
      ++result.not_sent;
    }
  }
  return result;
}

absl::StatusOr<std::string> ServerModelInfo(const std::string& target, const std::string& model, std::string* info_json) {
  auto stubs = MakeStubs(target, 1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetModelInfoRequest req;
  req.set_model(model);
  v1::GetModelInfoResponse resp;
  grpc::Status st = stubs[0]->GetModelInfo(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("GetModelInfo on ", target, ": ", CodeName(st.error_code()), ": ",
                                               st.error_message()));
  }
  const v1::ModelInfo& m = resp.model_info();
  if (info_json) {
    nlohmann::json j = {{"id", m.id()},
                        {"architecture", m.architecture()},
                        {"max_model_len", m.max_model_len()},
                        {"vocab_size", m.vocab_size()},
                        {"dtype", m.dtype()},
                        {"ready_worker_groups", m.ready_worker_groups()}};
    *info_json = j.dump();
  }
  return m.id();
}

}  // namespace quarry::bench
