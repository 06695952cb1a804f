// The device model (the GPU engine's orchestration) on the host backend: golden references through pooled,
// paged sequences; mixed prefill + decode batches equal the CPU engine; the padded graph layout of decode
// steps gives the same logits as eager; bf16 SSM state; clear errors for misuse.
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_model.h"
#include "worker/model/device/host_device_ops.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"
#include "tests/model/counting_device_ops.h"
#include "worker/model/device/profiling_device_ops.h"
#include "tests/model/device_rig.h"

namespace quarry {
namespace {

using Rig = testing::DeviceRig;

Rig MakeRig(const std::string& name, DeviceModelOptions mo, int64_t block_size = 4, int64_t blocks = 400) {
  return Rig::Make(name, "host", mo, block_size, blocks);
}

class DeviceModelGolden : public ::testing::TestWithParam<std::tuple<std::string, int64_t, bool>> {};

TEST_P(DeviceModelGolden, MatchesTransformers) {
  const auto& [name, chunk, padded] = GetParam();
  DeviceModelOptions mo;
  mo.max_tokens = 96;
  mo.max_batch = 4;
  mo.pad_decode_steps = padded;
  Rig r = MakeRig(name, mo);
  auto results = RunReferenceFile(*r.model, "tests/data/golden/" + name + "/reference.safetensors", r.Pooled(chunk));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 4u);
  for (const ReferenceCaseResult& c : *results) {
    SCOPED_TRACE(c.name);
    EXPECT_LT(c.prefill_max_abs, 1e-4);
    EXPECT_LT(c.step_max_abs, 1e-4);
    EXPECT_LT(c.full_max_abs, 1e-4);
    EXPECT_EQ(c.token_mismatches, 0) << c.first_mismatch;
  }
  EXPECT_GT(r.model->stats().eager_steps, 0);
  EXPECT_EQ(r.slots->used(), 0);  // every pooled sequence gave its slot back
}

INSTANTIATE_TEST_SUITE_P(Host, DeviceModelGolden,
                         ::testing::Values(std::make_tuple("tiny-a", 0, false), std::make_tuple("tiny-b", 0, false),
                                           std::make_tuple("tiny-a", 5, true), std::make_tuple("tiny-b", 3, true)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_chunk" + std::to_string(std::get<1>(info.param)) +
                                           (std::get<2>(info.param) ? "_padded" : "_eager");
                           for (char& ch : n) ch = ch == '-' ? '_' : ch;
                           return n;
                         });

// Four sequences at different stages in one step (two decoding, two prefilling, segments interleaved), then
// decode-only steps: logits equal the CPU engine running the same schedule on its own state.
TEST(DeviceModel, MixedBatchesEqualCpuEngine) {
  for (bool padded : {false, true}) {
    SCOPED_TRACE(padded ? "padded decode layout" : "eager");
    DeviceModelOptions mo;
    mo.max_tokens = 64;
    mo.max_batch = 6;
    mo.pad_decode_steps = padded;
    Rig r = MakeRig("tiny-b", mo, 5, 100);
    Model cpu(*r.w);
    StateSlotPool cpu_slots(r.w->config, 4);
    KvBlockPool cpu_kv(r.w->config, 100, 5);
    const int64_t V = r.w->config.vocab_size;
    std::vector<std::unique_ptr<PooledSequence>> dev, host;
    for (int i = 0; i < 4; ++i) {
      dev.push_back(std::move(*PooledSequence::Create(r.slots.get(), r.kv.get(), 60)));
      host.push_back(std::move(*PooledSequence::Create(&cpu_slots, &cpu_kv, 60)));
    }
    std::vector<int32_t> prompt(40);
    for (int i = 0; i < 40; ++i) prompt[i] = (i * 37 + 11) % static_cast<int32_t>(V);
    auto run = [&](const std::vector<std::tuple<int, int64_t, int64_t, LogitsMode>>& plan) {
      std::vector<ForwardSegment> ds, hs;
      for (const auto& [seq, off, n, mode] : plan) {
        ds.push_back({dev[seq]->view(), prompt.data() + off, n, mode});
        hs.push_back({host[seq]->view(), prompt.data() + off, n, mode});
      }
      std::vector<float> a(StepModel::LogitRows(ds) * V), b(a.size());
      ASSERT_TRUE(r.model->Forward(ds, a.data()).ok());
      ASSERT_TRUE(cpu.Forward(hs, b.data()).ok());
      ASSERT_FALSE(a.empty());
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
      EXPECT_LT(worst, 2e-5);
    };
    run({{0, 0, 7, LogitsMode::kLast}, {1, 0, 1, LogitsMode::kLast}, {2, 0, 12, LogitsMode::kNone}});
    run({{2, 12, 9, LogitsMode::kAll}, {0, 7, 1, LogitsMode::kLast}, {1, 1, 1, LogitsMode::kLast},
         {3, 0, 3, LogitsMode::kLast}});
    for (int step = 0; step < 5; ++step) {  // decode-only: the padded (graph) layout when enabled
      run({{3, 3 + step, 1, LogitsMode::kLast}, {0, 8 + step, 1, LogitsMode::kLast}, {2, 21 + step, 1, LogitsMode::kLast}});
    }
    if (padded) EXPECT_GT(r.model->stats().graph_steps + r.model->stats().eager_steps, 0);
  }
}

TEST(DeviceModel, Bf16StateRunsCloseToF32) {
  DeviceModelOptions mo;
  mo.max_tokens = 96;
  mo.max_batch = 2;
  mo.bf16_state = true;
  Rig r = MakeRig("tiny-a", mo);
  ReferenceOptions o = r.Pooled(0);
  o.tolerance = 0.05;
  auto results = RunReferenceFile(*r.model, "tests/data/golden/tiny-a/reference.safetensors", o);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const ReferenceCaseResult& c : *results) {
    EXPECT_LT(c.step_max_abs, 0.05) << c.name;
    EXPECT_GT(c.step_max_abs + c.prefill_max_abs, 0.0) << c.name;  // bf16 rounding is visible, not skipped
  }
}

// The decode step's op structure, counted on the host backend (each op is one CUDA launch, split-K decode
// attention two): per Mamba layer in_proj (whose epilogue runs the conv step, LinearParams::conv), SSD update
// (writing the gated g = y * silu(z)) and out_proj (normalising its input rows: the gated norm's RMS part);
// per attention layer the stacked q|k|v projection (appending k and v to the cache itself: LinearParams::kv),
// decode attention, o_proj. The mixer's output projection adds its scaled result to the residual stream itself
// (no post-mixer AddRmsNorm), and per MoE block
// the shared expert's gate|up + router projection normalises the residual rows itself, the experts' gate|up
// GEMV too while computing the top-k + permutation in its prologue (GroupedLinearParams::route), the down GEMV
// reads SwiGLU and computes the shared expert's down projection in the same call (::dense) and then the
// AddRmsNorm after the block (::after: combine, residual add, the next layer's norm; after the last layer the
// model's final norm). Then the logit rows' gather and the LM head (applying 1 / logits_scaling itself). No
// separate conv, gated norm, SwiGLU, routing, combine, norm after the first, final norm or scaling at decode.
TEST(DeviceModel, DecodeStepRunsTheFusedOpSequence) {
  auto w = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config;
  ASSERT_GT(c.shared_intermediate_size, 0);
  auto counting = std::make_unique<testing::CountingDeviceOps>(CreateHostDeviceOps());
  testing::CountingDeviceOps* ops = counting.get();
  DeviceModelOptions mo;
  mo.max_tokens = 16;
  mo.max_batch = 2;
  mo.max_blocks_per_seq = 16;
  auto model = DeviceModel::Create(**w, ops, mo);
  ASSERT_TRUE(model.ok()) << model.status();
  auto slots = StateSlotPool::Create(c, 2, false, ops);
  ASSERT_TRUE(slots.ok()) << slots.status();
  auto kv = KvBlockPool::Create(c, 16, 4, ops, false);
  ASSERT_TRUE(kv.ok()) << kv.status();
  auto seq = PooledSequence::Create(slots->get(), kv->get(), 20);
  ASSERT_TRUE(seq.ok()) << seq.status();
  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 7, 8};
  std::vector<float> logits(c.vocab_size);
  std::vector<ForwardSegment> pre = {{(*seq)->view(), prompt.data(), 7, LogitsMode::kLast}};
  ASSERT_TRUE((*model)->Forward(pre, logits.data()).ok());
  ops->Reset();
  const int32_t next = 11;
  std::vector<ForwardSegment> dec = {{(*seq)->view(), &next, 1, LogitsMode::kLast}};
  ASSERT_TRUE((*model)->Forward(dec, logits.data()).ok());
  const int64_t L = c.num_hidden_layers, Lm = c.num_mamba_layers(), La = c.num_attention_layers();
  const std::map<std::string, int64_t> expected = {
      {"Embedding", 1},  // with layer 0's input norm (EmbeddingParams::norm_weight)
      {"Linear", 3 * L + 1},  // mixer in / out (q|k|v stacked), shared gate|up + router, LM head
      {"SsdUpdateBatch", Lm},
      {"AttentionDecode", La},
      {"GroupedLinear", 2 * L},
      {"GatherRows", 1},
  };
  EXPECT_EQ(ops->counts(), expected);
  // Granite-4.0-H-Tiny's 36 + 4 layers by the same rule: 5 L + Lm + La + 3 = 243 ops (650 before the fusions
  // listed in docs/gpu-results.md).
  EXPECT_EQ(ops->total(), 5 * L + Lm + La + 3);
}

// Prefill chunks above kCopy16Rows rows: the norms write 16-bit copies of their outputs and the dense products
// after them get those copies (cuBLAS reads them instead of casting): every mixer input but layer 0's (an RmsNorm,
// which writes none), every MoE block's first product and every Mamba out_proj; at 70 rows the experts'
// tensor-core GEMMs too. Each copy is checked to be exactly its f32 input rounded (CountingDeviceOps).
TEST(DeviceModel, PrefillProductsReadTheSixteenBitCopiesOfTheirInputs) {
  auto w = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config;
  const int64_t L = c.num_hidden_layers, Lm = c.num_mamba_layers();
  for (int64_t t : {20, 70}) {
    SCOPED_TRACE("prefill of " + std::to_string(t) + " tokens");
    auto counting = std::make_unique<testing::CountingDeviceOps>(CreateHostDeviceOps());
    testing::CountingDeviceOps* ops = counting.get();
    DeviceModelOptions mo;
    mo.max_tokens = 80;
    mo.max_batch = 1;
    mo.max_blocks_per_seq = 32;
    auto model = DeviceModel::Create(**w, ops, mo);
    ASSERT_TRUE(model.ok()) << model.status();
    auto slots = StateSlotPool::Create(c, 1, false, ops);
    ASSERT_TRUE(slots.ok()) << slots.status();
    auto kv = KvBlockPool::Create(c, 32, 4, ops, false);
    ASSERT_TRUE(kv.ok()) << kv.status();
    auto seq = PooledSequence::Create(slots->get(), kv->get(), 100);
    ASSERT_TRUE(seq.ok()) << seq.status();
    std::vector<int32_t> prompt(t);
    for (int64_t i = 0; i < t; ++i) prompt[i] = static_cast<int32_t>((i * 37 + 5) % c.vocab_size);
    std::vector<float> logits(c.vocab_size);
    std::vector<ForwardSegment> pre = {{(*seq)->view(), prompt.data(), t, LogitsMode::kLast}};
    ASSERT_TRUE((*model)->Forward(pre, logits.data()).ok());
    const bool many = t * c.num_experts_per_tok >= kManyRowsPerExpert * c.num_local_experts;
    EXPECT_EQ(ops->x16_checked(), (L - 1) + L + Lm + (many ? 2 * L : 0));
    EXPECT_EQ(ops->x16_mismatches(), 0);
  }
}

// ProfilingDeviceOps (quarry-engine-bench --op-profile) forwards every call unchanged (the logits are bit for bit
// those of the plain backend) and times every op: the calls it reports per op add up to the ops the model ran
// (counted by CountingDeviceOps around it), the products are told apart by their weight shapes, and a Reset
// clears the totals.
TEST(DeviceModel, ProfilingOpsForwardEveryCallAndTimeEveryOp) {
  auto w = LoadModelDir("tests/data/golden/tiny-b", {});
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config;
  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  auto run = [&](DeviceOps* ops, std::vector<float>* logits) {
    DeviceModelOptions mo;
    mo.max_tokens = 32;
    mo.max_batch = 1;
    mo.max_blocks_per_seq = 16;
    auto model = DeviceModel::Create(**w, ops, mo);
    ASSERT_TRUE(model.ok()) << model.status();
    auto slots = StateSlotPool::Create(c, 1, false, ops);
    ASSERT_TRUE(slots.ok()) << slots.status();
    auto kv = KvBlockPool::Create(c, 16, 4, ops, false);
    ASSERT_TRUE(kv.ok()) << kv.status();
    auto seq = PooledSequence::Create(slots->get(), kv->get(), 30);
    ASSERT_TRUE(seq.ok()) << seq.status();
    logits->assign(c.vocab_size, 0.0f);
    std::vector<ForwardSegment> pre = {
        {(*seq)->view(), prompt.data(), static_cast<int64_t>(prompt.size()), LogitsMode::kLast}};
    ASSERT_TRUE((*model)->Forward(pre, logits->data()).ok());
    const int32_t next = 11;
    std::vector<ForwardSegment> dec = {{(*seq)->view(), &next, 1, LogitsMode::kLast}};
    ASSERT_TRUE((*model)->Forward(dec, logits->data()).ok());
  };
  std::vector<float> plain_logits, profiled_logits;
  auto plain = CreateHostDeviceOps();
  run(plain.get(), &plain_logits);
  auto host = CreateHostDeviceOps();
  auto profiler = std::make_unique<ProfilingDeviceOps>(host.get());
  ProfilingDeviceOps* prof = profiler.get();
  testing::CountingDeviceOps counting(std::move(profiler));
  run(&counting, &profiled_logits);
  EXPECT_EQ(profiled_logits, plain_logits);

  std::string in_proj;  // the first Mamba layer's in_proj, as the report names it
  for (const LayerWeights& l : (*w)->layers) {
    if (l.type == LayerType::kMamba) {
      in_proj = absl::StrCat("Linear ", l.mamba.in_proj.rows, "x", l.mamba.in_proj.cols);
      break;
    }
  }
  ASSERT_FALSE(in_proj.empty());
  std::map<std::string, int64_t> reported;
  double previous = 1e30;
  bool in_proj_seen = false;
  for (const ProfilingDeviceOps::Entry& e : prof->Report()) {
    EXPECT_GT(e.calls, 0) << e.op;
    EXPECT_GE(e.seconds, 0.0) << e.op;
    EXPECT_LE(e.seconds, previous) << "longest first";
    previous = e.seconds;
    reported[e.op.substr(0, e.op.find(' '))] += e.calls;
    in_proj_seen |= e.op == in_proj;
  }
  EXPECT_EQ(reported, counting.counts());
  EXPECT_EQ(reported["SsdScan"], c.num_mamba_layers());  // the prefill, one sequence
  EXPECT_TRUE(in_proj_seen) << "the Mamba in_proj product is reported with its weight shape";
  const auto floor = prof->SyncFloor();
  ASSERT_TRUE(floor.ok()) << floor.status();
  EXPECT_GE(*floor, 0.0);
  prof->Reset();
  EXPECT_TRUE(prof->Report().empty());
}

TEST(DeviceModel, RefusesWhatItCannotRun) {
  DeviceModelOptions mo;
  mo.max_tokens = 8;
  mo.max_batch = 2;
  Rig r = MakeRig("tiny-a", mo);
  auto seq = PooledSequence::Create(r.slots.get(), r.kv.get(), 40);
  ASSERT_TRUE(seq.ok());
  std::vector<int32_t> ids(9, 1);
  std::vector<float> logits(r.w->config.vocab_size);
  ForwardSegment too_long{(*seq)->view(), ids.data(), 9, LogitsMode::kLast};
  absl::Status st = r.model->Forward({&too_long, 1}, logits.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("max_tokens"), std::string::npos) << st;
  EXPECT_EQ((*seq)->view()->length, 0);  // nothing ran

  SequenceState contiguous(r.w->config, 16);  // not paged
  ForwardSegment seg{contiguous.view(), ids.data(), 2, LogitsMode::kLast};
  st = r.model->Forward({&seg, 1}, logits.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("paged"), std::string::npos) << st;

  ids[0] = static_cast<int32_t>(r.w->config.vocab_size);  // out of the vocabulary
  ForwardSegment bad{(*seq)->view(), ids.data(), 2, LogitsMode::kLast};
  EXPECT_EQ(r.model->Forward({&bad, 1}, logits.data()).code(), absl::StatusCode::kInvalidArgument);

  DeviceModelOptions no_blocks;
  no_blocks.max_blocks_per_seq = -1;
  EXPECT_EQ(DeviceModel::Create(*r.w, r.ops.get(), no_blocks).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
