// `quarry verify --model DIR --reference FILE`: golden reference check with one line per case.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <filesystem>
#include <vector>

#include "worker/cli/child_process.h"
#include "worker/cli/commands.h"
#include "worker/engine/lockstep.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/expert_placement.h"
#ifdef QUARRY_WITH_NCCL
#include "worker/parallel/nccl_communicator.h"
#endif
#include "kernels/status_macros.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_factory.h"
#include "worker/model/device/device_model.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace quarry::cli {
namespace {

struct VerifyFlags {
  std::string model;
  std::string reference;
  double tolerance = 2e-3;
  int64_t prefill_chunk = 0;
  int64_t mamba_chunk = 0;
  int threads = 0;
  int ep = 1;                // expert-parallel ranks (processes over Gloo on loopback)
  int ep_rank = -1;          // internal: this process is rank ep_rank of an --ep run
  std::string rendezvous;    // internal: the group's rendezvous directory
  std::string device = "cpu";  // cpu (the CPU engine), cuda or host (the device engine)
  bool cuda_graphs = true;
  std::string kv_cache_dtype = "f32";  // device engines: f32 or bf16 KV pages
};

int ReportResults(const std::vector<ReferenceCaseResult>& results, double tolerance, int ep);

// The device engine's pieces for a reference run (GPU, or the host-reference backend): the model and pools
// for two sequences of up to 1024 tokens. With expert parallelism the model holds this rank's experts only.
struct DeviceSetup {
  std::unique_ptr<DeviceOps> ops;
  std::unique_ptr<DeviceModel> model;
  std::unique_ptr<StateSlotPool> slots;
  std::unique_ptr<KvBlockPool> kv;

  // Reference options whose sequences live in this setup's pools.
  void Bind(ReferenceOptions* opts) {
    opts->new_sequence = [this](int64_t cap) -> absl::StatusOr<std::unique_ptr<SequenceHandle>> {
      auto s = PooledSequence::Create(slots.get(), kv.get(), cap);
      if (!s.ok()) return s.status();
      return std::unique_ptr<SequenceHandle>(std::move(*s));
    };
  }
};

absl::StatusOr<DeviceSetup> MakeDeviceSetup(const VerifyFlags& f, const ModelWeights& w, int cuda_device,
                                            Communicator* comm, Communicator* payload_comm,
                                            const ExpertPlacement* placement) {
  DeviceSetup d;
  DeviceModelOptions mo;
  mo.max_tokens = 1024;
  mo.max_batch = 2;
  mo.max_blocks_per_seq = 1024 / 16;
  mo.mamba_chunk_size = f.mamba_chunk;
  mo.cuda_graphs = f.cuda_graphs;
  mo.comm = comm;
  mo.payload_comm = payload_comm;
  mo.placement = placement;
  DeviceOpsRequest req;
  req.kind = f.device;
  req.device = cuda_device;
  req.max_gemm_input_elems = DeviceModelGemmInputElems(w.config, mo);
  QUARRY_ASSIGN_OR_RETURN(d.ops, CreateDeviceOps(req));
  QUARRY_ASSIGN_OR_RETURN(d.model, DeviceModel::Create(w, d.ops.get(), mo));
  QUARRY_ASSIGN_OR_RETURN(d.slots, StateSlotPool::Create(w.config, 2, false, d.ops.get()));
  QUARRY_ASSIGN_OR_RETURN(d.kv, KvBlockPool::Create(w.config, 2 * mo.max_blocks_per_seq, 16, d.ops.get(),
                                                    f.kv_cache_dtype == "bf16"));
  return d;
}

// Expert parallelism: rank 0 (this process) spawns ranks 1..ep-1 as child processes; all join a Gloo group
// through a rendezvous directory; rank 0 runs the reference while the others follow its forward passes.
int RunVerifyEp(const VerifyFlags& f) {
  const bool leader = f.ep_rank < 0;
  std::string dir = f.rendezvous;
  std::vector<std::unique_ptr<ChildProcess>> children;
  if (leader) {
    char tmpl[] = "/tmp/quarry-verify-ep-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "quarry verify: cannot create a rendezvous directory\n");
      return kExitError;
    }
    dir = tmpl;
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    for (int r = 1; r < f.ep; ++r) {
      std::vector<std::string> argv = {self, "verify", "--model", f.model, "--reference", f.reference, "--ep",
                                       std::to_string(f.ep), "--ep-rank", std::to_string(r), "--rendezvous", dir,
                                       "--threads", "1", "--device", f.device, "--kv-cache-dtype",
                                       f.kv_cache_dtype};
      if (!f.cuda_graphs) argv.push_back("--no-cuda-graphs");
      children.push_back(std::make_unique<ChildProcess>("rank " + std::to_string(r), argv));
      if (!children.back()->Start()) return kExitError;
    }
  }
  const int rank = leader ? 0 : f.ep_rank;
  auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "quarry verify (rank %d): %s\n", rank, what.c_str());
    for (auto& c : children) c->Stop(std::chrono::seconds(2));
    return kExitError;
  };
  auto weights = LoadModelDir(f.model, {});
  if (!weights.ok()) return fail(std::string(weights.status().message()));
  auto placement = ExpertPlacement::Contiguous(static_cast<int>((*weights)->config.num_local_experts), f.ep);
  if (!placement.ok()) return fail(std::string(placement.status().message()));
  GroupConfig gc;
  gc.rank = rank;
  gc.world_size = f.ep;
  gc.rendezvous_dir = dir;
  gc.timeout = std::chrono::milliseconds(60000);
  auto comm = CreateGlooCommunicator(gc);
  if (!comm.ok()) return fail(std::string(comm.status().message()));
  ReferenceOptions opts;
  opts.tolerance = f.tolerance;
  opts.prefill_chunk = f.prefill_chunk;
  // The CPU engine's model, or the device model (rows over NCCL between GPUs, rank r on GPU r; over Gloo in
  // host memory on the host backend).
  std::unique_ptr<Model> cpu_model;
  std::unique_ptr<Communicator> payload;
  DeviceSetup device;
  StepModel* model = nullptr;
  if (f.device == "cpu") {
    cpu_model = std::make_unique<Model>(**weights, ModelOptions{f.mamba_chunk, comm->get(), &*placement});
    model = cpu_model.get();
  } else {
    if (f.device == "cuda") {
#ifdef QUARRY_WITH_NCCL
      auto n = CreateNcclCommunicator(gc, rank);
      if (!n.ok()) return fail(std::string(n.status().message()));
      payload = std::move(*n);
#else
      return fail("--ep with --device cuda needs NCCL: this build has no CUDA (QUARRY_CUDA=ON)");
#endif
    }
    auto d = MakeDeviceSetup(f, **weights, rank, comm->get(), payload.get(), &*placement);
    if (!d.ok()) return fail(std::string(d.status().message()));
    device = std::move(*d);
    device.Bind(&opts);
    model = device.model.get();
  }
  if (!leader) {
    absl::Status st = FollowLockstep(comm->get(), model);
    return st.ok() ? kExitOk : fail(std::string(st.message()));
  }
  BecomeLockstepLeader(comm->get(), model);
  auto results = RunReferenceFile(*model, f.reference, opts);
  absl::Status done = FinishLockstep(comm->get());
  int code = kExitOk;
  for (auto& c : children) {
    if (c->Wait(std::chrono::seconds(30)) != 0) code = kExitError;
  }
  std::filesystem::remove_all(dir);
  if (!results.ok()) return fail(std::string(results.status().message()));
  if (!done.ok()) return fail(std::string(done.message()));
  const int report = ReportResults(*results, f.tolerance, f.ep);
  return code != kExitOk ? code : report;
}

int ReportResults(const std::vector<ReferenceCaseResult>& results, double tolerance, int ep);
int RunVerifyEp(const VerifyFlags& f);

// The device engine (GPU, or its host-reference backend): sequences in pools on the device, paged KV.
int RunVerifyDevice(const VerifyFlags& f, const ModelWeights& w, ReferenceOptions opts) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "quarry verify: %s\n", std::string(s.message()).c_str());
    return kExitError;
  };
  auto d = MakeDeviceSetup(f, w, 0, nullptr, nullptr, nullptr);
  if (!d.ok()) return fail(d.status());
  d->Bind(&opts);
  std::printf("device: %s\n", d->ops->name().c_str());
  auto results = RunReferenceFile(*d->model, f.reference, opts);
  if (!results.ok()) return fail(results.status());
  const DeviceModelStats& st = d->model->stats();
  std::printf("device steps: %lld eager, %lld graph (%lld captures)\n", static_cast<long long>(st.eager_steps),
              static_cast<long long>(st.graph_steps), static_cast<long long>(st.graph_captures));
  return ReportResults(*results, f.tolerance, 1);
}

int RunVerify(const VerifyFlags& f) {
  ConfigureThreads(f.threads);
  if (f.ep > 1) return RunVerifyEp(f);
  auto weights = LoadModelDir(f.model, {});
  if (!weights.ok()) {
    std::fprintf(stderr, "quarry verify: %s\n", std::string(weights.status().message()).c_str());
    return kExitError;
  }
  ReferenceOptions opts;
  opts.tolerance = f.tolerance;
  opts.prefill_chunk = f.prefill_chunk;
  if (f.device != "cpu") return RunVerifyDevice(f, **weights, opts);
  Model model(**weights, {f.mamba_chunk});
  auto results = RunReferenceFile(model, f.reference, opts);
  if (!results.ok()) {
    std::fprintf(stderr, "quarry verify: %s\n", std::string(results.status().message()).c_str());
    return kExitError;
  }
  return ReportResults(*results, f.tolerance, 1);
}

int ReportResults(const std::vector<ReferenceCaseResult>& results, double tolerance, int ep) {
  int passed = 0;
  double worst = 0;
  for (const ReferenceCaseResult& r : results) {
    std::printf("%-6s prompt %4lld  prefill %.2e  steps %.2e  full %.2e  token mismatches %lld  %s%s%s\n",
                r.name.c_str(), static_cast<long long>(r.prompt_tokens), r.prefill_max_abs, r.step_max_abs,
                r.full_max_abs, static_cast<long long>(r.token_mismatches), r.ok ? "OK" : "FAIL",
                r.first_mismatch.empty() ? "" : "  ", r.first_mismatch.c_str());
    passed += r.ok;
    worst = std::max({worst, r.prefill_max_abs, r.step_max_abs, r.full_max_abs});
  }
  const bool ok = passed == static_cast<int>(results.size());
  std::printf("verify%s: %d/%zu cases passed, max |dlogit| %.2e (tolerance %.1e): %s\n",
              ep > 1 ? (" (expert parallel, " + std::to_string(ep) + " ranks)").c_str() : "", passed, results.size(),
              worst, tolerance, ok ? "PASS" : "FAIL");
  return ok ? kExitOk : kExitFailed;
}

}  // namespace

void RegisterVerify(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Check the engine against a golden reference file (prefill logits, greedy tokens with step logits, full "
      "logits). Exits 0 only if every case is within tolerance and every greedy token matches.");
  cmd->add_option("--model", flags->model, "Checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--reference", flags->reference, "reference.safetensors with case{i}.* tensors")->required();
  cmd->add_option("--tolerance", flags->tolerance, "Max |logit difference| allowed")->capture_default_str();
  cmd->add_option("--prefill-chunk", flags->prefill_chunk, "Prefill in chunks of N tokens (0 = whole prompt)")
      ->capture_default_str();
  cmd->add_option("--mamba-chunk", flags->mamba_chunk, "SSD scan chunk size (0 = config mamba_chunk_size)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--ep", flags->ep, "Expert-parallel ranks: run the reference with N processes over Gloo")
      ->capture_default_str();
  cmd->add_option("--device", flags->device,
                  "cpu (the CPU engine), cuda (the GPU engine) or host (the GPU engine's orchestration on CPU "
                  "reference kernels)")
      ->check(CLI::IsMember({"cpu", "cuda", "host"}))
      ->capture_default_str();
  cmd->add_flag("!--no-cuda-graphs", flags->cuda_graphs, "Device engines: run decode steps eagerly");
  cmd->add_option("--kv-cache-dtype", flags->kv_cache_dtype, "Device engines: KV cache element type (bf16 or f32)")
      ->check(CLI::IsMember({"bf16", "f32"}))
      ->capture_default_str();
  cmd->add_option("--ep-rank", flags->ep_rank, "(internal) rank of a child process of an --ep run")->group("");
  cmd->add_option("--rendezvous", flags->rendezvous, "(internal) rendezvous directory of an --ep run")->group("");
  cmd->callback([flags, exit_code] { *exit_code = RunVerify(*flags); });
}

}  // namespace quarry::cli
