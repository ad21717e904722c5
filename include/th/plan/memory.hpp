#pragma once
// Bytes per rank by category for one layout, from first principles: which elements each stage
// keeps on which rank, at how many bytes each (ZeRO, Rajbhandari et al. 2019), the activations a
// forward saves for its backward, and where offload puts the optimizer state and the stage-3
// parameter partition. Categories are those of the engine's memory report (th/core/memory.hpp:
// parameters, gradients, optimizer state, activations, workspace) plus communication buffers and
// the offloaded bytes, so a real run's report can check every number.
#include <algorithm>
#include <cstdint>

#include "th/plan/layout.hpp"
#include "th/plan/machine.hpp"
#include "th/plan/model.hpp"

namespace th {

// Bytes per element of each piece of model state, as an implementation stores them.
struct StateBytes {
  double param = 4;           // compute copy of the parameters (full buffer, or stage-3 partition)
  double grad = 4;            // full gradient buffer (stages 0-1)
  double grad_partition = 4;  // the rank's accumulated gradient partition (stages 2-3)
  double master = 0;          // fp32 master copy of a mixed-precision run
  double moments = 8;         // Adam m and v
};
// Ours (src/train/zero/): the compute copy and full gradients in the compute type's storage,
// the gradient partition accumulated in fp32, an fp32 master with 16-bit compute types.
StateBytes engine_state_bytes(DType dtype, const Machine& machine);
// The ZeRO paper's mixed-precision Adam (K = 12): fp16 parameters and gradients (also the
// partitioned ones), fp32 master, momentum and variance.
StateBytes paper_state_bytes();

// Model states per rank (bytes) of `psi` parameters at `stage` on `ranks` ranks: the formulas
// 16Psi / 4Psi + 12Psi/Nd / 2Psi + 14Psi/Nd / 16Psi/Nd for the paper's bytes.
struct ModelStates {
  double params = 0, grads = 0, optimizer = 0;
  double total() const { return params + grads + optimizer; }
};
ModelStates model_states(int stage, int ranks, double psi, const StateBytes& b);

struct MemoryEstimate {
  double psi = 0, padded = 0, shard = 0;  // parameters; the flat buffers; the rank's partition (elements)
  // On the device (a CPU rank's device is the host), per rank, bytes.
  double params = 0;       // compute copy kept (full; stage 3: partition + units that stay whole) + positional table
  double grads = 0;        // full buffer (stages 0-1) or the fp32 partition (stages 2-3)
  double optimizer = 0;    // moments and master kept with the parameters (none when offloaded)
  double activations = 0;  // peak of what forward saves for backward, with the deck's checkpointing
  double activations_full = 0, activations_checkpointed = 0;  // peak without / with checkpointing
  double gathered = 0;     // stage 3: peak of units gathered for use (+ prefetched), transient
  double grad_buckets = 0; // stages 2-3: peak of gradient pages before their reduce-scatter, transient
  double workspace = 0;    // peak of per-layer scratch (forward / backward)
  double workspace_init = 0;  // ZeRO's start-up scratch (stage 3 'nvme': the first partition)
  // Offloaded, per rank, bytes.
  double host_moments = 0;  // 'cpu': m and v; 'nvme': the two-chunk streaming window
  double host_master = 0;   // fp32 master of a mixed-precision run whose optimizer is offloaded
  double host_params = 0;   // stage 3 'cpu': the partition; 'nvme': its streaming window
  double nvme = 0;          // bytes of the rank's NVMe files (moments and/or parameters)
  double device_peak() const {
    return params + grads + optimizer + std::max(activations + gathered + grad_buckets + workspace, workspace_init);
  }
  double host() const { return host_moments + host_master + host_params; }
};

MemoryEstimate estimate_memory(const PlanModel& m, const PlanBatch& b, const Layout& layout, const ZeroKnobs& z,
                               const Machine& machine);

// Peak bytes of the Activations and Workspace categories over one step (grad_accum
// micro-batches), every block as the caching allocator hands it out (rounded up to
// alloc_align_bytes; a cached block up to alloc_reuse times a request is reused), starting from
// a cache holding one block of `cached_bytes` (0: empty); and the peaks of what the layers request.
// `elem_bytes`: the compute storage per value; `store_bytes`: the saved activations' (2 for a
// 16-bit run; below elem_bytes, as on the CPU backend, every saved tensor is made wide in
// Workspace and packed into Activations, th/model/saved.hpp).
struct StepAllocations {
  double activations = 0, workspace = 0;
  double activations_requested = 0, workspace_requested = 0;
};
StepAllocations step_allocations(const PlanModel& m, const PlanBatch& b, bool checkpointing, double elem_bytes,
                                 double store_bytes, const Machine& machine, double cached_bytes);

// Stage 3: peak bytes of gathered parameter units beyond what stays resident between steps (the
// unit in use and the `prefetch` units gathered ahead, in the recorded acquire order). Stages
// 2-3: peak bytes of gradient pages written by backward and not yet reduce-scattered (a tied
// embedding's gradient is dense from the logits on and final only at the end of backward). With
// `async_progress` false (machine.overlap < 1: collectives progress only when waited on), every
// bucket may still be in flight at the end of backward: the whole working range.
// With 2-byte gradients (`two_byte_window`): peak bytes of backward's fp32 window
// (src/train/zero/grad_reduction.hpp) beyond what stays between steps: the unit being written
// (the output projection and the embeddings' lookups: one row block, grad_block_rows), the
// embeddings' gradient while it waits for the source lookup (encoder-decoder: the target
// lookup's rows come first), and the zeroed partial pages each taken range leaves behind; at
// stages 2-3 plus the 2-byte range's pages waiting for their reduce-scatter (as above, at 2 bytes
// a value).
double gathered_peak_bytes(const PlanModel& m, const FlatLayout& flat, const Layout& l, const ZeroKnobs& z,
                           double elem_bytes, double page);
double grad_bucket_peak_bytes(const PlanModel& m, const FlatLayout& flat, const Layout& l, const ZeroKnobs& z,
                              double elem_bytes, double page, bool async_progress, bool two_byte_window = false);

}  // namespace th
