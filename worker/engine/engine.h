// The serving engine of one worker: a step loop thread running continuous batching over the model. Each
// step mixes one decode token of every running request with prefill chunks of admitted ones under a token
// budget; requests join and leave between steps. Owns the request queue, the Mamba state-slot pool and the
// paged KV pool; admission control on both; bounded waiting queue (RESOURCE_EXHAUSTED beyond it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/request.h"
#include "worker/model/weights.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/expert_placement.h"

namespace quarry {

struct EngineOptions {
  int64_t state_slots = 8;             // concurrent sequences (Mamba conv + SSM state per slot)
  bool bf16_state = false;             // SSM state stored in bf16 (half the memory; f32 math, rounded per step)
  int64_t kv_block_size = 16;          // tokens per KV page
  int64_t kv_blocks = 0;               // 0 = enough for state_slots full-length sequences of max_model_len
  int64_t max_model_len = 0;           // 0 = config.max_position_embeddings (capped at 8192 on CPU)
  int64_t max_tokens_per_step = 256;   // token budget per step (decode tokens + prefill chunks)
  int64_t max_waiting = 64;            // queue bound; beyond it Submit returns RESOURCE_EXHAUSTED
  int64_t mamba_chunk_size = 0;        // 0 = config
  int num_threads = 0;                 // OpenMP threads of the step thread (0 = the OpenMP default); the
                                       // setting is per thread, so a caller's omp_set_num_threads does not reach it
  // Expert parallelism (group size > 1): every step is agreed with the other ranks (one all-reduce), an idle
  // rank runs empty steps so that it joins every MoE exchange, and a failed collective fails the group: every
  // request ends with UNAVAILABLE and failed() turns true (the process should exit and be restarted with its
  // group). Stopping one rank stops the whole group. Both must outlive the engine.
  Communicator* comm = nullptr;
  const ExpertPlacement* placement = nullptr;
  // Device engines with expert parallelism: the communicator for the hidden rows in device memory (NCCL on
  // GPUs); null = `comm` (the host backend). `comm` still carries the lockstep and the per-layer row counts.
  Communicator* payload_comm = nullptr;

  // Where the model runs: "cpu" (the CPU engine), "cuda" (the device engine on a GPU) or "host" (the device
  // engine on the CPU reference kernels: slow, for tests of the device path without a GPU).
  std::string device = "cpu";
  int cuda_device = 0;
  // Device engines: the share of the memory left after weights and workspace that state slots + KV pages
  // may take; with kv_blocks == 0 the KV pool gets what the state slots leave (up to state_slots full-length
  // sequences).
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;  // decode steps as CUDA graphs (per padded batch size)
  // KV cache element type: "auto" (device engines: bf16 for a bf16 checkpoint, else f32; the CPU engine: f32),
  // "bf16" (device engines only: half the KV memory and attention reads) or "f32".
  std::string kv_cache_dtype = "auto";
};

class Engine {
 public:
  // Starts the step thread. `weights` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const ModelWeights& weights, const EngineOptions& options);
  virtual ~Engine() = default;

  // Validates (INVALID_ARGUMENT naming the field, limit and value), queues (RESOURCE_EXHAUSTED with a retry
  // hint when the queue is full; UNAVAILABLE after Shutdown). On OK, `on_output` is called for every step
  // that produced tokens and exactly once with finished == true.
  virtual absl::Status Submit(EngineRequest request, OutputCallback on_output) = 0;
  // Ends the request at the next step boundary (final output: kCancelled / CANCELLED) and frees its slot and
  // pages. Unknown ids are ignored.
  virtual void Abort(const std::string& id) = 0;
  virtual EngineLoad GetLoad() const = 0;
  virtual const EngineOptions& options() const = 0;
  // One line: device, weights, workspace and pool sizes (for the start-up log).
  virtual const std::string& backend_summary() const = 0;
  // The expert-parallel group failed (a peer died or a collective timed out); the engine accepts nothing more.
  virtual bool failed() const { return false; }
  // Stops accepting, cancels everything still queued or running, joins the step thread.
  virtual void Shutdown() = 0;
};

}  // namespace quarry
