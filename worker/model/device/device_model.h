// DeviceModel: the Granite-4.0-H forward pass on a DeviceOps backend (the GPU, or the host references).
//
// Per step the host builds the step metadata (token ids, KV slots, block tables, KV lengths, per-row Mamba
// state pointers) in one staging buffer and uploads it once; the rest runs on the device:
//   * decode rows (1-token segments) first, as batched ops: ConvUpdateBatch, SsdUpdateBatch, AttentionDecode;
//   * prefill chunks after them, one sequence at a time: CausalConv1d, SsdScan, Attention over the paged KV;
//   * the MoE as TopK -> permute -> grouped GEMM -> SwiGLU -> grouped GEMM -> combine, plus the shared expert,
//     with no host round trip;
//   * a step of decode rows only runs as a CUDA graph captured once per padded batch size (bucket): padding
//     rows read token 0, write no KV (slot -1) and update a scratch Mamba state zeroed inside the graph.
// Residual stream, norms, SSM state (by default) and softmax are f32; weights stay bf16; large GEMMs round
// their input to bf16 for the tensor cores (cuBLAS, f32 accumulate). Sequence state lives in pools the caller
// allocates in the same backend (StateSlotPool / KvBlockPool with a DeviceOps); the KV pools must be paged.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/device/device_ops.h"
#include "worker/model/device/device_weights.h"
#include "worker/model/step_model.h"
#include "worker/model/weights.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/expert_placement.h"
#include "worker/parallel/moe_dispatch.h"

namespace quarry {

struct DeviceModelOptions {
  int64_t max_tokens = 256;        // tokens per Forward (the engine's token budget)
  int64_t max_batch = 64;          // segments per Forward (the engine's state slots); graph buckets up to this
  int64_t max_blocks_per_seq = 0;  // KV pages a sequence can hold (block-table width); required with attention
  int64_t max_logit_rows = 0;      // logits rows one eager step may return (0 = max_tokens); graph steps need
                                   // max_batch rows. Bounds the [rows, vocab] f32 logits buffer.
  int64_t mamba_chunk_size = 0;    // 0 = config
  bool cuda_graphs = true;         // decode steps as graphs where the backend has them
  bool pad_decode_steps = false;   // run decode-only steps in the padded graph layout even without graphs
                                   // (how the host backend tests the graph layout)
  bool bf16_state = false;         // the sequences' SSM states are bf16 (StateSlotPool's bf16 option)
  // Expert parallelism (comm->world_size() > 1): this rank holds placement->experts_of(rank) and every MoE
  // layer exchanges rows with the group, so all ranks must call Forward in lockstep (an idle rank with no
  // segments). `comm` carries the small host-side exchanges (row counts, expert ids); `payload_comm` the
  // hidden rows, in the backend's memory: NCCL for the CUDA backend; null = `comm` (host backend only).
  // Such steps run eagerly (no CUDA graphs: the counts come to the host in every layer).
  Communicator* comm = nullptr;
  Communicator* payload_comm = nullptr;
  const ExpertPlacement* placement = nullptr;
};

// Back-to-back sections of one scratch buffer: Add(n) returns a section's offset, each start aligned to `align`.
struct ScratchSections {
  uint64_t align = 256;
  uint64_t bytes = 0;  // the total so far
  uint64_t Add(uint64_t n) {
    const uint64_t at = bytes;
    bytes += (n + align - 1) / align * align;
    return at;
  }
};

// Rows per expert (on average) from which a grouped GEMM runs on the tensor cores (GroupedLinearMany: 16-row
// MMA tiles up to 32 rows per expert, 64-row tiles above) instead of the small-m GEMV, whose FMA issue rate runs
// out at about 8 rows per weight element.
inline constexpr int64_t kManyRowsPerExpert = 8;
// Up to this many rows a down projection reads SwiGLU(gate|up) directly (LinearParams::swiglu_input) instead
// of after a separate SwiGLU pass: the decode GEMV path (larger m goes to cuBLAS, which cannot).
inline constexpr int64_t kFusedSwigluRows = 16;
// Above this many rows the norms in front of dense products also write a 16-bit copy of their output (Copy16),
// which cuBLAS multiplies directly (LinearParams::x16) instead of rounding the f32 rows in a cast launch.
inline constexpr int64_t kCopy16Rows = 16;

struct DeviceModelStats {
  int64_t eager_steps = 0;
  int64_t graph_steps = 0;
  int64_t graph_captures = 0;
  int64_t empty_steps = 0;  // expert parallelism: steps with no tokens here that joined the exchanges
  // ForwardSample's wall time split at the token download: `host_seconds` is everything before it (metadata,
  // uploads, launching the graph or the eager kernels and the sampling kernels: host work, which overlaps the
  // GPU only where launches are asynchronous), `wait_seconds` the download (waiting for the GPU to finish).
  // On the host backend every op is synchronous, so the compute lands in host_seconds.
  double host_seconds = 0;
  double wait_seconds = 0;
};

// Largest m * k over the model's dense Linears at rows_cap rows: the cuBLAS staging a backend needs.
int64_t DeviceModelGemmInputElems(const ModelConfig& config, const DeviceModelOptions& options);

class DeviceModel final : public StepModel {
 public:
  // Uploads the weights (`ops` must outlive the model) and sizes the workspace for the options.
  static absl::StatusOr<std::unique_ptr<DeviceModel>> Create(const ModelWeights& weights, DeviceOps* ops,
                                                             const DeviceModelOptions& options);
  ~DeviceModel() override;

  const ModelConfig& config() const override { return config_; }
  absl::Status Forward(std::span<const ForwardSegment> segments, float* logits) override;
  using StepModel::ForwardSample;
  absl::Status ForwardSample(std::span<const ForwardSegment> segments, const SampleRow* rows, int32_t* tokens,
                             RowLogprobs* logprobs) override;
  bool expert_parallel() const override { return ep_; }
  const MoeDispatchStats* dispatch_stats() const override { return ep_ ? &ep_stats_ : nullptr; }

  DeviceOps* ops() const { return ops_; }
  uint64_t weight_bytes() const { return weights_->bytes(); }
  uint64_t workspace_bytes() const { return workspace_bytes_; }
  const DeviceModelOptions& options() const { return options_; }
  const DeviceModelStats& stats() const { return stats_; }
  // The padded batch size a decode step of n rows runs at (n <= max_batch).
  int64_t Bucket(int64_t n) const;

  struct Step;  // the layout of one Forward (device_model.cc)

 private:
  DeviceModel(const ModelConfig& config, DeviceOps* ops, const DeviceModelOptions& options)
      : config_(config), ops_(ops), options_(options) {}
  absl::Status Allocate();
  absl::Status Prepare(std::span<const ForwardSegment> segments, int64_t padded_rows, Step* step);
  absl::Status Body(const Step& s);
  absl::Status Mamba(int layer, const Step& s);
  absl::Status AttentionLayer(int layer, const Step& s);
  // The MoE block: the shared expert into mix_; the routed experts' outputs left in yo_ for AfterMoe's
  // AddRmsNorm to add (under expert parallelism the exchange has combined them into mix_ already). On the
  // few-rows path (up to kGroupedAfterMaxTokens tokens) the experts' down projection runs that AddRmsNorm itself
  // (GroupedLinearParams::after) and *after_done says so.
  absl::Status Moe(int layer, const Step& s, bool* after_done);
  // The residual add + norm after a layer's MoE (the next layer's input norm; the model's final norm after the
  // last layer), with the routed experts' combine; sets up u16_ for it (U16Out).
  AddRmsNormParams AfterMoe(int layer, const Step& s);
  // A step of decode rows only, few enough for the GEMV paths: the one the decode fusions apply to.
  bool GemvDecodeStep(const Step& s) const;
  absl::Status Logits(const Step& s);
  // Expert parallelism: the routed experts of one layer for T rows of u_ whose top-k is in experts_ / gates_
  // (T may be 0: an idle rank serving the others); adds the weighted results into mix_.
  absl::Status MoeExchange(int layer, int64_t T);
  // The shared expert's down projection from its gate|up rows (row stride ld) into mix_.
  absl::Status SharedDown(const DeviceMoeWeights& mw, const float* gate_up, int64_t ld, int64_t T);
  // The grouped expert MLP over `rows` permuted rows (x gathered by `gather`, or in order when null):
  // gate|up into gu [rows, 2I], then the down projection into y [rows, H]. Few rows: the SwiGLU is fused into
  // the down projection's input; many (tensor cores): a SwiGLU pass into act [rows, I] in between. x16: x
  // already rounded to the gate|up weights' type (or null); with act16 the SwiGLU pass also writes its 16-bit
  // copy there ([rows, I]) for the down projection. dense (or null): a dense product to run with the down
  // projection (the shared expert's; in the same launch on the few-rows path). route (or null): the routing
  // that produces offsets and gather, run first (inside the first product's launch on the few-rows path).
  // x_norm (or null): x is the residual stream, RMS-normalised with these weights by the first product itself
  // (few-rows path only). after (or null): the AddRmsNorm after the block, run by the down projection
  // (GroupedLinearParams::after; few-rows path only).
  absl::Status Experts(const DeviceMoeWeights& mw, int64_t experts, const float* x, const int32_t* gather,
                       const int32_t* offsets, int64_t rows, float* gu, float* act, float* y,
                       const uint16_t* x16 = nullptr, uint16_t* act16 = nullptr,
                       const LinearParams* dense = nullptr, const MoeRouteParams* route = nullptr,
                       const float* x_norm = nullptr, const AddRmsNormParams* after = nullptr);
  // True when `rows` expert rows over `experts` experts run on the tensor cores (GroupedLinearMany).
  // Points u16_ at u_'s copy rounded to dt (when T > kCopy16Rows and dt is 16-bit) and returns the Copy16 the
  // norm writing u_ should fill, or records that u16_ holds nothing for u_.
  Copy16 U16Out(int64_t T, DType dt);
  // y[T, ldy] = u_ · wᵀ, reading u16_ when it holds u_ rounded to w's type (LinearParams::x16).
  LinearParams OnU(const MatrixView& w, float* y, int64_t ldy, int64_t T) const;
  // The mixer's output projection: into mix_, or with fold_post_norm_ added to h_ scaled by residual_multiplier.
  LinearParams MixerOut(const float* x, int64_t ldx, const MatrixView& w, int64_t T) const;
  // A dense product on the MoE block's input: u_ (OnU), or with fold_post_norm_ h_ normalised by the product.
  LinearParams OnMoeInput(int layer, const MatrixView& w, float* y, int64_t ldy, int64_t T) const;
  // u16_ when it holds u_ rounded to w's type, else null (LinearParams::x16).
  const uint16_t* U16In(const MatrixView& w) const {
    return u16_dtype_ != DType::kF32 && u16_dtype_ == w.dtype ? u16_ : nullptr;
  }
  bool ManyRowsPerExpert(const DeviceMoeWeights& mw, int64_t rows, int64_t experts) const;
  // A step with no tokens on this rank: every layer's exchange.
  absl::Status EmptyStep();
  // Validates, lays out and runs one step (graph or eager); the logits stay on the device.
  absl::Status Run(std::span<const ForwardSegment> segments, Step* s);

  ModelConfig config_;
  DeviceOps* ops_;
  DeviceModelOptions options_;
  DeviceModelStats stats_;
  std::unique_ptr<DeviceWeights> weights_;
  std::vector<int> ordinal_;  // layer -> index among its type's layers
  int64_t rows_cap_ = 0;      // max(max_tokens, max_batch)
  bool ssm_bf16_ = false;     // options_.bf16_state
  // Graph bookkeeping: buckets captured, and the KV pools their kernels point at.
  std::set<int> captured_;
  std::vector<void*> graph_kv_k_, graph_kv_v_;

  // Device buffers (one arena).
  void* arena_ = nullptr;
  uint64_t workspace_bytes_ = 0;
  float *h_ = nullptr, *u_ = nullptr, *mix_ = nullptr, *proj_ = nullptr, *conv_ = nullptr, *y_ = nullptr;
  float *qkv_ = nullptr, *attn_ = nullptr, *router_ = nullptr, *gates_ = nullptr;
  float *shared_ = nullptr, *act_ = nullptr, *gu_ = nullptr, *act2_ = nullptr, *yo_ = nullptr, *logits_ = nullptr;
  int32_t *experts_ = nullptr, *offsets_ = nullptr, *row_token_ = nullptr, *pair_row_ = nullptr;
  uint32_t* after_counts_ = nullptr;  // [R] per-token completions of the down projection's after norm (zeros)
  float *dummy_conv_ = nullptr, *dummy_ssm_ = nullptr;  // scratch state of graph padding rows
  float* partials_ = nullptr;                          // split-K decode attention scratch
  int64_t partial_floats_ = 0;
  uint32_t* split_counts_ = nullptr;                   // its per-(sequence, KV head) split counters
  float* ssd_ws_ = nullptr;                            // token-parallel prefill SSD scan scratch
  int64_t ssd_ws_floats_ = 0;
  uint16_t* dummy_ssm16_ = nullptr;
  uint16_t* u16_ = nullptr;    // [R, H] 16-bit copy of u_ (prefill: the expert GEMM's and cuBLAS's input)
  DType u16_dtype_ = DType::kF32;  // what u16_ holds for the current u_: BF16 / F16, or F32 = nothing
  // This step folds the post-mixer AddRmsNorm into its neighbours (Body): decode steps of GEMV size whose MoE
  // routing runs inside the experts' launch. (The post-MoE one goes into the experts' down projection on any
  // few-rows step up to kGroupedAfterMaxTokens tokens: Moe's after_done.)
  bool fold_post_norm_ = false;
  uint16_t* act16_ = nullptr;  // [R * K, I] 16-bit copy of the experts' SwiGLU output (prefill)
  uint16_t* y16_ = nullptr;    // [R, d_inner] 16-bit copy of the gated norm's output (out_proj's cuBLAS input)
  // Step metadata: device copy and host staging, same layout.
  void* meta_ = nullptr;
  std::vector<uint8_t> meta_host_;
  uint64_t off_ids_ = 0, off_slots_ = 0, off_kv_lens_ = 0, off_tables_ = 0, off_logit_rows_ = 0, off_conv_ptrs_ = 0,
           off_ssm_ptrs_ = 0, meta_bytes_ = 0;
  std::vector<float> logits_host_;  // reordered logits before they go out in segment order
  int32_t* tokens_ = nullptr;              // [logit rows] sampled tokens (device)
  SampleRowParams* sample_params_ = nullptr;  // [logit rows] (device)
  std::vector<int32_t> tokens_host_;
  std::vector<SampleRowParams> sample_params_host_;
  // Sampling scratch (grown on demand; sampling runs outside the graphs): processor inputs + logprob outputs,
  // and the raw logits rows of requests that want logprobs.
  absl::Status GrowScratch(void** buf, uint64_t* cap, uint64_t bytes, const char* what);
  void* proc_ = nullptr;
  uint64_t proc_cap_ = 0;
  float* raw_ = nullptr;
  uint64_t raw_cap_ = 0;
  std::vector<uint8_t> proc_host_;
  std::vector<float> lp_host_;
  PackedSampleRows packed_;
  // Expert parallelism.
  bool ep_ = false;
  std::vector<int32_t> local_experts_;  // global ids this rank holds (local index order)
  std::vector<int32_t> local_of_;       // global expert -> local index, -1 elsewhere
  MoeDispatchStats ep_stats_;
  void* ep_buf_ = nullptr;  // per-step exchange buffers (grown on demand)
  uint64_t ep_cap_ = 0;
  std::vector<int32_t> ep_idx_, ep_send_expert_, ep_recv_expert_;
  std::vector<uint8_t> ep_meta_;
};

}  // namespace quarry
