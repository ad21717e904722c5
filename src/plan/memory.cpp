// Model states, offload placement and transient buffers per rank (activations: activations.cpp).
#include <algorithm>
#include <cmath>
#include <set>

#include "th/plan/memory.hpp"

namespace th {

StateBytes engine_state_bytes(DType dtype, const Machine& machine) {
  StateBytes b;
  const double compute = dtype == DType::F32 ? 4 : machine.bytes_16bit;
  b.param = compute;
  b.grad = compute;
  b.grad_partition = 4;  // reduce-scattered blocks are accumulated over micro-batches in fp32
  b.master = dtype == DType::F32 ? 0 : 4;
  b.moments = 8;
  return b;
}

StateBytes paper_state_bytes() { return {2, 2, 2, 4, 8}; }

ModelStates model_states(int stage, int ranks, double psi, const StateBytes& b) {
  const double part = psi / ranks;  // the rank's partition
  ModelStates s;
  s.params = b.param * (stage >= 3 ? part : psi);
  s.grads = stage >= 2 ? b.grad_partition * part : b.grad * psi;
  s.optimizer = (b.master + b.moments) * (stage >= 1 ? part : psi);
  return s;
}

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kChunkHeader = 64;  // bytes of a chunk record's header (th/train/offload.hpp)

// The two-slot window and the file of a chunked NVMe store of n elements x width fp32 arrays.
struct ChunkStore {
  double window = 0, file = 0;
};
ChunkStore chunk_store(double n, int width, double chunk_mb) {
  double chunk = std::max(1.0, std::floor(chunk_mb * kMiB / (width * 4.0)));
  chunk = std::min(chunk, std::max(n, 1.0));
  const double stride = kChunkHeader + width * chunk * 4;
  const double chunks = n <= 0 ? 0 : std::ceil(n / chunk);
  return {2 * stride, chunks * stride};
}

// Pages of a reserved range (page-aligned at element 0) touched by elements [b, e).
struct PageSpan {
  std::int64_t first, last;  // inclusive page indices
};
PageSpan pages_of(double b, double e, double elem_bytes, double page) {
  return {static_cast<std::int64_t>(std::floor(b * elem_bytes / page)),
          static_cast<std::int64_t>(std::ceil(e * elem_bytes / page)) - 1};
}

}  // namespace

MemoryEstimate estimate_memory(const PlanModel& m, const PlanBatch& b, const Layout& l, const ZeroKnobs& z,
                               const Machine& machine) {
  const int N = l.ranks();
  const FlatLayout flat = flat_layout(m, l.stage, N, z.bucket_mb);
  const StateBytes sb = engine_state_bytes(m.dtype, machine);
  const double P = static_cast<double>(flat.padded), S = static_cast<double>(flat.shard);
  const double page = static_cast<double>(machine.page_bytes);
  MemoryEstimate e;
  e.psi = static_cast<double>(m.params());
  e.padded = P;
  e.shard = S;
  const ModelStates ms = model_states(l.stage, N, P, sb);
  e.params = ms.params;
  const bool two_byte_params = m.mixed() && m.two_byte_params && sb.param == 4;
  if (two_byte_params) {
    // bf16 / fp16 where 16-bit values are otherwise kept in fp32 (the CPU backend): the compute
    // copy is 2-byte storage (stages 0-2 the whole buffer, stage 3 the partition and the gathered
    // range, the partition offloaded to the host with it; an NVMe file keeps fp32 numbers), plus
    // an fp32 copy of the wide parameters (src/train/zero/).
    const double a = machine.alloc_align_bytes;
    e.params = std::ceil(2 * (l.stage == 3 ? S : P) / a) * a +
               std::ceil(4 * double(std::max<std::int64_t>(m.wide_params(), 1)) / a) * a;
  }
  const double param_bytes = two_byte_params ? 2 : sb.param;  // per element of the parameter range
  e.grads = ms.grads;
  // bf16/fp16 gradients in 2 bytes (one micro-batch per step, no offload, a backend taking bf16
  // operands; src/train/zero/grad_reduction.hpp). Stages 0-1: the 2-byte buffer, plus the fp32
  // window's last page, which the buffer's end shares with nothing (zeroed in place, so it
  // stays). Stages 2-3: the 2-byte partition, plus the 2-byte range's last page (and the window's,
  // below, as the fp32 working range's).
  const bool two_byte_grads = m.mixed() && m.two_byte_grads && sb.param == 4 && b.grad_accum == 1 &&
                              l.optimizer == Placement::None && l.param == Placement::None;
  if (two_byte_grads) {
    const double a = machine.alloc_align_bytes;
    if (l.stage <= 1)
      e.grads = std::ceil(2 * P / a) * a + (std::fmod(P * 4, page) > 0 ? page : 0);
    else
      e.grads = std::ceil(2 * S / a) * a + (std::fmod(P * 2, page) > 0 ? page : 0);
  }
  e.optimizer = ms.optimizer;
  // The sinusoidal positional table [max_len, D]: a buffer, allocated with the parameters (a
  // learned table is a parameter, already in the flat buffer).
  if (!m.learned_positions)
    e.params += std::ceil(double(m.max_len) * m.d_model * sb.param / machine.alloc_align_bytes) * machine.alloc_align_bytes;

  if (l.stage >= 2) {
    // The working gradient range gives its pages back after each reduce-scatter, except a last
    // page the buffer's end shares with nothing (zeroed in place, so it stays committed).
    const double tail = std::fmod(P * sb.grad, page);
    e.grads += tail > 0 ? page : 0;
  }
  if (l.stage == 3) {
    // Gathered units give back only the pages wholly inside them; units below the persistence
    // threshold stay whole. Pages resident between steps: every page of a persistent unit and
    // the pages a unit shares with a neighbour.
    std::set<std::int64_t> kept;
    for (const FlatLayout::Unit& u : flat.units) {
      const PageSpan p = pages_of(double(u.begin), double(u.end), param_bytes, page);
      if (u.end - u.begin < z.persistence_threshold) {
        for (std::int64_t q = p.first; q <= p.last; ++q) kept.insert(q);
        continue;
      }
      if (std::fmod(u.begin * param_bytes, page) != 0) kept.insert(p.first);
      if (std::fmod(u.end * param_bytes, page) != 0) kept.insert(p.last);
    }
    e.params += double(kept.size()) * page;
    // Offloaded partition: on the host ('cpu') or in a file with a two-chunk window ('nvme').
    if (l.param != Placement::None) {
      const double partition = param_bytes * S;  // the 2-byte one was counted as allocated (aligned)
      const double a = machine.alloc_align_bytes;
      e.params -= two_byte_params ? std::ceil(partition / a) * a : partition;
      if (l.param == Placement::Cpu) {
        e.host_params = partition;
      } else {
        const ChunkStore c = chunk_store(S, 1, z.nvme_chunk_mb);
        e.host_params = c.window;
        e.nvme += c.file;
        e.workspace_init = 4 * S;  // the initial partition is assembled once, then written
      }
    }
  }
  if (l.stage >= 1 && l.optimizer != Placement::None) {
    e.optimizer = 0;
    e.host_master = sb.master * S;
    if (l.optimizer == Placement::Cpu) {
      e.host_moments = sb.moments * S;
    } else {
      const ChunkStore c = chunk_store(S, 2, z.nvme_chunk_mb);
      e.host_moments = c.window;
      e.nvme += c.file;
    }
  }

  // The step's saved tensors and scratch through the caching allocator; stage 3 with NVMe
  // parameters leaves its start-up block (the first partition) cached.
  // Saved activations of a 16-bit run take 2 bytes per value even where the compute storage is fp32.
  const double act_bytes = m.mixed() ? machine.bytes_16bit : 4, store_bytes = m.mixed() ? 2 : act_bytes;
  const StepAllocations full = step_allocations(m, b, false, act_bytes, store_bytes, machine, e.workspace_init);
  const StepAllocations ckpt = step_allocations(m, b, true, act_bytes, store_bytes, machine, e.workspace_init);
  e.activations_full = full.activations;
  e.activations_checkpointed = ckpt.activations;
  const StepAllocations& used = m.checkpointing ? ckpt : full;
  e.activations = used.activations;
  e.workspace = used.workspace;
  // 2-byte gradients: the reduction's and the optimizer's fp32 chunk buffers (2^16 elements each).
  if (two_byte_grads) e.workspace += 2 * 4 * 65536.0;
  // An fp16 2-byte compute copy is widened into fp32 scratch right before each kernel that reads
  // a weight (src/model/weights.hpp), one weight at a time: the largest (the [V, D] table, the
  // fused [3D, D] Q/K/V, a [F, D] feed-forward matrix) counted on top of the walk's peak, an upper
  // bound (the walk does not place it).
  if (two_byte_params && m.dtype == DType::F16) {
    const double D = m.d_model, widest = std::max({double(m.vocab) * D, 3 * D * D, double(m.d_ff) * D});
    e.workspace += std::ceil(4 * widest / machine.alloc_align_bytes) * machine.alloc_align_bytes;
  }
  e.gathered = gathered_peak_bytes(m, flat, l, z, param_bytes, page);
  e.grad_buckets = grad_bucket_peak_bytes(m, flat, l, z, sb.grad, page, machine.overlap >= 1, two_byte_grads);
  return e;
}

}  // namespace th
