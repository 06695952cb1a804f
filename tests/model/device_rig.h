// A device model on a backend with its pools, for tests: golden weights, DeviceModel, state slots, KV pages,
// and ReferenceOptions whose sequences live in those pools.
#pragma once

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "worker/engine/reference_check.h"
#include "worker/engine/state_pools.h"
#include "worker/model/device/device_factory.h"
#include "worker/model/device/device_model.h"
#include "worker/model/weights.h"

namespace quarry::testing {

struct DeviceRig {
  std::unique_ptr<ModelWeights> w;
  std::unique_ptr<DeviceOps> ops;
  std::unique_ptr<DeviceModel> model;
  std::unique_ptr<StateSlotPool> slots;
  std::unique_ptr<KvBlockPool> kv;

  // `kind`: "host" or "cuda". Slots = mo.max_batch; max_blocks_per_seq defaults to 64. `golden`: a directory of
  // tests/data/golden.
  static DeviceRig Make(const std::string& golden, const std::string& kind, DeviceModelOptions mo,
                        int64_t block_size, int64_t blocks, bool kv_bf16 = false) {
    return MakeFromDir("tests/data/golden/" + golden, kind, mo, block_size, blocks, kv_bf16);
  }
  // The same for the checkpoint in `dir` (e.g. one written by MakeModel).
  static DeviceRig MakeFromDir(const std::string& dir, const std::string& kind, DeviceModelOptions mo,
                               int64_t block_size, int64_t blocks, bool kv_bf16 = false) {
    DeviceRig r;
    auto w = LoadModelDir(dir, {});
    EXPECT_TRUE(w.ok()) << w.status();
    r.w = std::move(*w);
    if (mo.max_blocks_per_seq == 0) mo.max_blocks_per_seq = 64;
    DeviceOpsRequest req;
    req.kind = kind;
    req.max_gemm_input_elems = DeviceModelGemmInputElems(r.w->config, mo);
    auto ops = CreateDeviceOps(req);
    EXPECT_TRUE(ops.ok()) << ops.status();
    r.ops = std::move(*ops);
    auto m = DeviceModel::Create(*r.w, r.ops.get(), mo);
    EXPECT_TRUE(m.ok()) << m.status();
    r.model = std::move(*m);
    auto slots = StateSlotPool::Create(r.w->config, mo.max_batch, mo.bf16_state, r.ops.get());
    EXPECT_TRUE(slots.ok()) << slots.status();
    r.slots = std::move(*slots);
    auto kv = KvBlockPool::Create(r.w->config, blocks, block_size, r.ops.get(), kv_bf16);
    EXPECT_TRUE(kv.ok()) << kv.status();
    r.kv = std::move(*kv);
    return r;
  }

  // Reference options whose sequences are PooledSequences of this rig.
  ReferenceOptions Pooled(int64_t prefill_chunk, double tolerance = 2e-3) {
    ReferenceOptions o;
    o.prefill_chunk = prefill_chunk;
    o.tolerance = tolerance;
    o.new_sequence = [this](int64_t cap) -> absl::StatusOr<std::unique_ptr<SequenceHandle>> {
      auto s = PooledSequence::Create(slots.get(), kv.get(), cap);
      if (!s.ok()) return s.status();
      return std::unique_ptr<SequenceHandle>(std::move(*s));
    };
    return o;
  }
};

}  // namespace quarry::testing
