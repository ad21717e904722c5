#pragma once
// ZeRO data parallelism (DeepSpeed's stages, fp32, CPU backend) over the flat parameter and
// gradient buffers of th/model/params.hpp. One engine runs every stage, stage 0 included (plain
// data parallelism: the reference path), so the trainer and the benchmark have one step.
//
//   stage 0  every rank: parameters, gradients, Adam moments (all-reduce of the gradients)
//   stage 1  every rank: parameters, gradients; its partition of the Adam moments
//   stage 2  every rank: parameters; its partition of the gradients and moments
//   stage 3  every rank: its partition of everything; a block's parameters are gathered for its
//            forward and backward and released right after
//
// In fp32 there is no separate master copy of the weights: the optimizer updates the fp32
// parameters themselves (stages 1-2: the rank's slices of the full buffer, stage 3: its
// partition buffer), then the updated slices are all-gathered where ranks hold more than their
// partition.
//
// Mixed precision (ZeroOptions::compute = BF16 / F16): the optimizer keeps an fp32 master copy
// of what it updates (stage 0: every parameter, stages 1-3: the rank's partition, in partition
// layout, counted as optimizer state) and the parameter buffers above become the 16-bit compute
// copy: after every update (and at initialization and load) the master values are rounded to the
// compute type into them. In bf16 and fp16 on a backend that takes bf16 operands (CPU, emulated)
// the compute copy is 2-byte storage (ParamStore::use_16bit_values(): the GEMMs and the embedding
// read bf16 as it is and fp16 widened right before use; biases, LayerNorm and learned positions
// keep an fp32 copy too); stages 1-2 all-gather it in 2 bytes, stage 3 keeps a 2-byte partition
// and gathers each unit in 2 bytes (the layout is padded to 2N for that: pairs of values travel
// as one 4-byte word). Otherwise (stage 3 with parameter offload or on the emulated device, the
// CUDA backend, precision%param_storage = 'fp32') storage stays fp32 holding exactly-representable
// 16-bit values. The two storages give the same bits. Each rank's gradients are rounded to the compute type when
// handed to the reduction (fp16: beyond 65504 they become inf); accumulation over micro-batches
// and the reduction sums are fp32. Checkpoints hold the master values.
//
// The engine is built from parts with one job each (src/train/zero/, see docs/architecture.md);
// this header is all the trainer, the benchmark and the tests see.
//
// Partition map. With ZeRO the model pads its layout (ModelSpec::param_align = world size):
// every segment of the flat buffers (ParamStore::segments(): whole parameters of one gather
// unit, at most parallel%bucket_mb) has a length that is a multiple of N, and rank r owns the
// r-th N-th of every segment. Its partition buffers (moments; stage 2-3 gradients; stage 3
// parameters) are the concatenation of its pieces, so every collective is one balanced
// reduce-scatter or all-gather of a segment.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/io/checkpoint.hpp"
#include "th/core/memory.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/offload.hpp"
#include "th/train/optimizer.hpp"

namespace th {

class ZeroPartition {
 public:
  // One segment as seen by every rank: flat [begin, begin + N * count), rank r's piece is
  // [begin + r * count, begin + (r + 1) * count), kept at `shard` in the rank's partition.
  struct Piece {
    std::int64_t begin = 0, count = 0, shard = 0;
    int unit = 0;
  };
  // Elements [begin, end) of one parameter that rank `rank` owns, at `shard` of its partition.
  struct ParamSlice {
    int rank = 0;
    std::int64_t begin = 0, end = 0, shard = 0;
  };
  ZeroPartition(const std::vector<ParamSegment>& segments, int rank, int world);
  int rank() const { return rank_; }
  int world() const { return world_; }
  std::int64_t shard_size() const { return shard_; }        // elements each rank owns
  std::int64_t padded_size() const { return shard_ * world_; }
  const std::vector<Piece>& pieces() const { return pieces_; }
  std::int64_t owned(const Piece& p) const { return p.begin + rank_ * p.count; }  // flat start of mine
  std::vector<ParamSlice> slices(const ParamInfo& p) const;  // every rank's part of a parameter
  // This rank's pieces as checkpoint ranges (flat range -> partition offset).
  std::vector<CheckpointRange> owned_ranges() const;

 private:
  int rank_, world_;
  std::int64_t shard_ = 0;
  std::vector<Piece> pieces_;
};

struct ZeroOptions {
  int stage = 0;                             // parallel%zero_stage: read once, by the engine's stage policy
  double bucket_mb = 25;
  bool overlap = true;
  int prefetch = 1;                          // stage 3: units gathered ahead
  std::int64_t persistence_threshold = 0;    // stage 3: units below this many elements stay whole
  std::uint64_t seed = 0;                    // parameter initialization
  DType compute = DType::F32;                // F32, or BF16 / F16: fp32 master + 16-bit compute copy
  // bf16: the compute copy in 2 bytes where it can be (precision%param_storage = 'auto': stages
  // 0-2 on a backend that takes bf16 operands), else in fp32 storage holding bf16 values.
  bool two_byte_params = true;
  // bf16/fp16 at any stage with no accumulation over micro-batches (precision%grad_storage = 'auto',
  // optim%grad_accum = 1, no offload) on a backend that takes bf16 operands: the gradients in 2
  // bytes. Backward writes each unit's gradients into an fp32 window that is rounded into 2-byte
  // storage and given back as soon as they are final; stages 2-3 keep a 2-byte partition
  // (zero/grad_reduction.hpp).
  bool two_byte_grads = true;
  int grad_accum = 1;
  AdamWConfig adam;
  OffloadOptions offload;                    // parallel%offload_optimizer / offload_param (th/train/offload.hpp)
};

// Model-state bytes of one rank: what the pool holds now, and the ZeRO paper's formula.
struct ZeroMemory {
  std::int64_t psi = 0;                       // parameters (padded layout)
  std::int64_t params = 0, grads = 0, optimizer = 0;  // pool live bytes per category
  std::int64_t formula = 0;
  std::int64_t activation_peak = 0;
  // Offload (th/train/offload.hpp): bytes of the rank's offloaded state on the host (moments with
  // 'cpu', the streaming window with 'nvme', the stage-3 parameter partition with offload_param
  // 'cpu'), of which `offload_window` is the NVMe window, and bytes of its NVMe file.
  std::int64_t offload_host = 0, offload_window = 0, offload_nvme = 0;
};

// The engine seen from the trainer, the benchmark and the tests. Its parts (src/train/zero/):
// the stage policy (the one place a stage number becomes behaviour), the partition layout, the
// gradient reduction, the parameter home (with the stage-3 gatherer), the optimizer-state store
// (device, host or NVMe), the optimizer step, the checkpoint adapter and the memory accounting.
class ZeroEngine {
 public:
  // Sets the layout fields of a model spec for this stage and world size (before building it).
  static void configure(ModelSpec& spec, const ZeroOptions& opt, int world);
  // Model-state bytes one rank will hold (parameters, gradients, Adam moments; fp32, before the
  // model exists): for refusing a model that cannot fit before anything is allocated.
  static double planned_state_bytes(const ZeroOptions& opt, double psi, int world);
  // The model must have been built from a spec passed through configure(). Allocates or
  // attaches the buffers and initializes the parameters (identical on every rank).
  ZeroEngine(Comm& comm, Transformer<float>& model, const ZeroOptions& opt);
  ~ZeroEngine();
  ZeroEngine(const ZeroEngine&) = delete;
  ZeroEngine& operator=(const ZeroEngine&) = delete;

  const ZeroPartition& partition() const;
  // Forward passes gather parameters (collectives): every rank must run as many of them as the
  // others, also in evaluation (pad with empty batches).
  bool collective_forward() const;

  // One optimizer step: zero_grad(); per micro-batch: forward, begin_backward(last),
  // model.backward(scale, hook()), finish_backward(); then clip_and_norm(), update().
  void zero_grad();
  void begin_backward(bool last_micro_batch);
  Transformer<float>::GradsReadyFn hook();
  void finish_backward();
  // The global norm of the averaged gradients, clipped; `loss_scale`: the gradients are those of
  // loss_scale x loss and are divided by it first.
  double clip_and_norm(double max_norm, double loss_scale = 1.0);
  // After finish_backward(): this rank's reduced gradients hold inf/NaN (or, in fp16, a magnitude
  // above 65504). Local: agree over ranks (Comm::any_true) before acting on it.
  bool local_overflow();
  // Testing aid: sets this rank's first owned gradient to inf (after finish_backward()).
  void inject_overflow();
  void update(double lr);
  void skip_update();  // instead of update(): a step whose gradients overflowed (fp16)
  // Releases what stage 3 gathered ahead without using it (after inference passes).
  void drop_prefetched();

  std::int64_t steps() const;
  void set_steps(std::int64_t t);
  GradientSync& sync();

  // The full parameter vector (flat layout), assembled on every rank (collective in stage 3).
  std::vector<float> gather_values();
  // Checkpoints (collective): this rank's part, written / read as slices of the global datasets.
  void save(const std::string& dir, const CheckpointState& st, int keep_last);
  CheckpointState load(const std::string& path);
  // Replicated state agrees bitwise over ranks (what is replicated at this stage).
  bool replicas_identical();

  ZeroMemory memory() const;
  std::vector<ZeroMemory> memory_all() const;  // every rank's, on every rank (collective)
  // memory_all(), and rank 0 prints the table (per rank: pool bytes by category against the
  // ZeRO formula; offloaded bytes; the mixed-precision master) headed "memory <when>".
  std::vector<ZeroMemory> memory_report(const char* when) const;
  // Where the moments live: "" (with the parameters), "host", or the NVMe file.
  std::string offload_where() const;
  // Communication this rank issued per step in theory: 2 Psi (N-1)/N x 4 bytes (stages 0-2),
  // 3 Psi (N-1)/N x 4 (stage 3); in 16-bit runs the gradients' share (2 Psi at stage 0, the
  // reduce-scatter's 1 Psi at stages 1-3) at 2 bytes, and with bf16's 2-byte compute copy
  // (stages 1-2) the parameters' all-gather too. theory_formula() says which applies.
  double theory_bytes_per_step() const;
  std::string theory_formula() const;

 private:
  struct Impl;  // src/train/zero/engine_impl.hpp
  std::unique_ptr<Impl> impl_;
};

}  // namespace th
