// CreateEngineBackend: the CPU engine, or the device model + pools sized from free device memory.
#include "worker/engine/engine_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/status_macros.h"
#include "worker/model/device/device_factory.h"
#include "worker/model/device/device_model.h"
#include "worker/model/model.h"

namespace quarry {
namespace {

std::string GiB(uint64_t bytes) { return absl::StrFormat("%.2f GiB", bytes / 1073741824.0); }

}  // namespace

absl::StatusOr<EngineBackend> CreateEngineBackend(const ModelWeights& w, EngineOptions* o) {
  const ModelConfig& c = w.config;
  EngineBackend b;
  if (o->device == "cpu") {
    b.model = std::make_unique<Model>(w, ModelOptions{o->mamba_chunk_size, o->comm, o->placement});
    b.slots = std::make_unique<StateSlotPool>(c, o->state_slots, o->bf16_state);
    b.kv = std::make_unique<KvBlockPool>(c, o->kv_blocks, o->kv_block_size);
    b.summary = absl::StrCat("device cpu; ", o->state_slots, " state slots (", GiB(b.slots->bytes()), "), ",
                             o->kv_blocks, " KV pages of ", o->kv_block_size, " tokens (", GiB(b.kv->bytes()), ")");
    return b;
  }
  DeviceModelOptions mo;
  mo.max_tokens = o->max_tokens_per_step;
  mo.max_batch = o->state_slots;
  mo.max_logit_rows = o->state_slots;  // the engine asks for at most one logits row per sequence and step
  mo.max_blocks_per_seq = (o->max_model_len + o->kv_block_size - 1) / o->kv_block_size;
  mo.mamba_chunk_size = o->mamba_chunk_size;
  mo.cuda_graphs = o->cuda_graphs;
  mo.bf16_state = o->bf16_state;
  mo.comm = o->comm;
  mo.payload_comm = o->payload_comm;
  mo.placement = o->placement;
  DeviceOpsRequest req;
  req.kind = o->device;
  req.device = o->cuda_device;
  req.max_gemm_input_elems = DeviceModelGemmInputElems(c, mo);
  QUARRY_ASSIGN_OR_RETURN(b.ops, CreateDeviceOps(req));
  QUARRY_RETURN_IF_ERROR(b.ops->BindThread());
  QUARRY_ASSIGN_OR_RETURN(std::unique_ptr<DeviceModel> model, DeviceModel::Create(w, b.ops.get(), mo));
  QUARRY_ASSIGN_OR_RETURN(uint64_t free_bytes, b.ops->FreeBytes());
  const uint64_t budget = static_cast<uint64_t>(static_cast<double>(free_bytes) * o->gpu_memory_utilization);
  const uint64_t slot_bytes = StateSlotPool::SlotBytes(c, o->bf16_state);
  const uint64_t slots_total = slot_bytes * static_cast<uint64_t>(o->state_slots);
  if (slots_total > budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        o->state_slots, " state slots need ", GiB(slots_total), " (", GiB(slot_bytes), " each) but only ", GiB(budget),
        " of device memory are left after the weights (", GiB(model->weight_bytes()), ") and workspace (",
        GiB(model->workspace_bytes()), ") at gpu_memory_utilization ", o->gpu_memory_utilization,
        "; lower --state-slots or use --bf16-state"));
  }
  const bool kv_bf16 = o->kv_cache_dtype == "bf16";
  const uint64_t block_bytes = std::max<uint64_t>(KvBlockPool::BlockBytes(c, o->kv_block_size, kv_bf16), 1);
  if (o->kv_blocks == 0) {
    const int64_t fit = static_cast<int64_t>((budget - slots_total) / block_bytes);
    o->kv_blocks = std::min(fit, o->state_slots * mo.max_blocks_per_seq);
    if (o->kv_blocks < 1) {
      return absl::ResourceExhaustedError(absl::StrCat("no device memory is left for KV pages after ", o->state_slots,
                                                       " state slots (", GiB(slots_total), ")"));
    }
  }
  QUARRY_ASSIGN_OR_RETURN(b.slots, StateSlotPool::Create(c, o->state_slots, o->bf16_state, b.ops.get()));
  QUARRY_ASSIGN_OR_RETURN(b.kv, KvBlockPool::Create(c, o->kv_blocks, o->kv_block_size, b.ops.get(), kv_bf16));
  const std::string ep = model->expert_parallel()
                             ? absl::StrCat("expert-parallel rank ", o->comm->rank(), " of ", o->comm->world_size(),
                                            " (experts ", absl::StrJoin(o->placement->experts_of(o->comm->rank()), ","),
                                            "); ")
                             : "";
  b.summary = absl::StrCat("device ", b.ops->name(), "; ", ep, "weights ", GiB(model->weight_bytes()), ", workspace ",
                           GiB(model->workspace_bytes()), "; ", o->state_slots, " state slots (", GiB(b.slots->bytes()),
                           o->bf16_state ? ", bf16 SSM state" : "", "), ", o->kv_blocks, " KV pages of ",
                           o->kv_block_size, " tokens (", GiB(b.kv->bytes()), ", ", kv_bf16 ? "bf16, " : "f32, ",
                           o->kv_blocks * o->kv_block_size, " tokens); CUDA graphs ",
                           o->cuda_graphs && b.ops->graphs() && !model->expert_parallel() ? "on" : "off");
  b.model = std::move(model);
  return b;
}

}  // namespace quarry
