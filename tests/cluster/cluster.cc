// Cluster: model, worker and router processes, stubs, teardown.
#include "tests/cluster/cluster.h"

#include <stdlib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/model/io/make_model.h"

namespace quarry::testing {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(60);

}  // namespace

std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds ms) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + ms);
  return c;
}

grpc::ChannelArguments BigMessageArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return args;
}

::testing::AssertionResult Cluster::Start() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "quarry_cluster_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return ::testing::AssertionFailure() << "mkdtemp failed";
  dir_ = tmpl;
  MakeModelOptions mm;
  mm.preset = "tiny";
  mm.vocab_size = 100352;
  mm.seed = 11;
  mm.out_dir = (dir_ / "tiny").string();
  mm.tokenizer_dir = QUARRY_SOURCE_DIR "/assets/tokenizer";
  absl::Status made = MakeModel(mm);
  if (!made.ok()) return ::testing::AssertionFailure() << "make-model: " << made;

  const std::string bin = QUARRY_BIN_DIR;
  const std::string len = std::to_string(options_.max_model_len);
  for (int i = 0; i < options_.workers; ++i) {
    std::string error;
    auto p = Process::Spawn(absl::StrCat("worker", i),
                            {bin + "/quarry-worker", "--model", mm.out_dir, "--port", "0", "--threads", "1",
                             "--no-prefault", "--max-model-len", len, "--state-slots",
                             std::to_string(options_.state_slots), "--drain-grace-s", "2"},
                            &error);
    if (!p) return ::testing::AssertionFailure() << "cannot start quarry-worker: " << error;
    workers_.push_back(std::move(p));
  }
  for (auto& w : workers_) {
    auto addr = w->WaitForLine("quarry-worker listening on ", kStartTimeout);
    if (!addr) return ::testing::AssertionFailure() << w->name() << " did not listen:\n" << w->Output();
    worker_addresses_.push_back(*addr);
    worker_stubs_.push_back(worker::v1::Worker::NewStub(grpc::CreateChannel(*addr, grpc::InsecureChannelCredentials())));
  }
  std::string error;
  router_ = Process::Spawn("router",
                           {bin + "/quarry-router", "--model", mm.out_dir, "--workers",
                            absl::StrJoin(worker_addresses_, ","), "--port", "0", "--max-model-len", len,
                            "--drain-grace-s", std::to_string(options_.router_drain_grace_s), "--wait-workers-s", "30"},
                           &error);
  if (!router_) return ::testing::AssertionFailure() << "cannot start quarry-router: " << error;
  auto addr = router_->WaitForLine("quarry-router listening on ", kStartTimeout);
  if (!addr) return ::testing::AssertionFailure() << "router did not listen:\n" << Logs();
  router_address_ = *addr;
  router_stub_ = v1::Quarry::NewStub(
      grpc::CreateCustomChannel(router_address_, grpc::InsecureChannelCredentials(), BigMessageArgs()));
  // The router prints its line once one worker answered; wait for all of them (ModelInfo counts them).
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    v1::GetModelInfoResponse info;
    auto ctx = Deadline(std::chrono::seconds(2));
    grpc::Status st = router_stub_->GetModelInfo(ctx.get(), {}, &info);
    if (st.ok() && info.model_info().ready_worker_groups() == static_cast<uint32_t>(options_.workers)) break;
    if (std::chrono::steady_clock::now() > end) {
      return ::testing::AssertionFailure() << "router sees " << info.model_info().ready_worker_groups() << " of "
                                           << options_.workers << " workers (" << st.error_message() << ")\n" << Logs();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ::testing::AssertionSuccess();
}

Cluster::~Cluster() {
  router_stub_.reset();
  worker_stubs_.clear();
  router_.reset();  // SIGKILL when still running
  workers_.clear();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string Cluster::Logs() {
  std::string out;
  for (auto& w : workers_) absl::StrAppend(&out, "---- ", w->name(), " ----\n", w->Output());
  if (router_) absl::StrAppend(&out, "---- router ----\n", router_->Output());
  return out;
}

grpc::Status Cluster::Load(int i, worker::v1::GetLoadResponse* out) {
  auto ctx = Deadline(std::chrono::seconds(2));
  return worker_stubs_[i]->GetLoad(ctx.get(), {}, out);
}

::testing::AssertionResult Cluster::WaitIdle(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    bool idle = true;
    last.clear();
    for (int i = 0; i < static_cast<int>(worker_stubs_.size()); ++i) {
      if (!workers_[i]->Running()) continue;
      worker::v1::GetLoadResponse l;
      grpc::Status st = Load(i, &l);
      if (!st.ok()) return ::testing::AssertionFailure() << "GetLoad(worker" << i << "): " << st.error_message();
      absl::StrAppend(&last, " worker", i, ": running ", l.running(), " waiting ", l.waiting(), " slots ",
                      l.state_slots_used(), " kv ", l.kv_blocks_used(), " open ", l.open_calls(), ";");
      idle = idle && l.running() == 0 && l.waiting() == 0 && l.state_slots_used() == 0 && l.kv_blocks_used() == 0 &&
             l.open_calls() == 0;
    }
    if (idle) return ::testing::AssertionSuccess();
    if (std::chrono::steady_clock::now() > end) return ::testing::AssertionFailure() << "not idle:" << last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace quarry::testing
