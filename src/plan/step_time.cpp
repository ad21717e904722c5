// Step time of a layout: compute, the ZeRO stage's collectives with what buckets and prefetch
// hide, the optimizer, and offload I/O. What each stage communicates (src/train/zero/):
//   stage 0  all-reduce of the gradients in buckets cut from the end of the flat buffer, in the
//            last micro-batch of the step
//   stage 1  reduce-scatter of each segment in the last micro-batch; all-gather after the update
//   stage 2  reduce-scatter of each segment in every micro-batch; all-gather after the update
//   stage 3  all-gather of each unit before its forward and again before its backward, in every
//            micro-batch (prefetched `prefetch` units ahead); reduce-scatter as stage 2; after
//            the update only the units that stay whole are gathered
#include <algorithm>
#include <cmath>

#include "th/plan/memory.hpp"
#include "th/plan/time.hpp"

namespace th {

namespace {

using Kind = PlanModel::UnitKind;

// Backward, step by step: the output projection and cross-entropy first (an untied output's
// gradients are final after it; a tied embedding's only at the very end), then the decoder norm
// and blocks and the encoder norm and blocks, last to first (each recomputed first with
// checkpointing), then the embeddings.
constexpr std::size_t kNoUnit = static_cast<std::size_t>(-1);
struct BackwardStep {
  std::size_t unit;  // whose gradients are final after this step (kNoUnit: none)
  double seconds;
};
std::vector<BackwardStep> backward_order(const PlanModel& m, const ComputeTime& c) {
  std::vector<BackwardStep> order;
  std::size_t output = kNoUnit, embedding = 0;
  for (std::size_t u = 0; u < m.kinds.size(); ++u) {
    if (m.kinds[u] == Kind::Output) output = u;
    if (m.kinds[u] == Kind::Embedding) embedding = u;
  }
  order.push_back({output, c.output_backward});
  for (auto k : {Kind::DecoderNorm, Kind::DecoderBlock, Kind::EncoderNorm, Kind::EncoderBlock})
    for (std::size_t u = m.kinds.size(); u-- > 0;)
      if (m.kinds[u] == k) {
        const bool block = k == Kind::EncoderBlock || k == Kind::DecoderBlock;
        order.push_back({u, c.unit_backward[u] + (m.checkpointing && block ? c.unit_forward[u] : 0)});
      }
  order.push_back({embedding, c.unit_backward[embedding]});
  return order;
}

// One bucket of the gradient reduction: elements [begin, end) of the flat buffer.
struct Bucket {
  std::int64_t begin, end;
};

// Exposed seconds of the bucketed reduction of one backward: a bucket goes once backward has
// passed its first element (its unit finished; the tied embedding at the end), the buckets one
// after the other on one channel; what ends after backward is exposed.
double exposed_reduction(const PlanModel& m, const FlatLayout& f, const std::vector<BackwardStep>& order,
                         const std::vector<Bucket>& buckets, const std::vector<double>& seconds) {
  // Time at which backward has finished the unit holding each flat element: per unit.
  std::vector<double> done(m.kinds.size(), 0);
  double t = 0;
  for (const BackwardStep& s : order) {
    t += s.seconds;
    if (s.unit != kNoUnit) done[s.unit] = t;
  }
  const double end_of_backward = t;
  auto unit_of = [&](std::int64_t e) {
    for (std::size_t u = 0; u < f.units.size(); ++u)
      if (e >= f.units[u].begin && e < f.units[u].end) return u;
    return f.units.size() - 1;
  };
  // Buckets launch in order of readiness (from the end of the flat buffer).
  double channel = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const double ready = done[unit_of(buckets[i].begin)];
    channel = std::max(channel, ready) + seconds[i];
  }
  return std::max(0.0, channel - end_of_backward);
}

// Stage 3: exposed seconds of the gathers of one micro-batch (forward units, then backward
// units): unit k's gather is launched when unit k - prefetch is acquired, gathers run one after
// the other, and unit k's compute waits for its gather.
double exposed_gathers(const std::vector<double>& compute, const std::vector<double>& gather, int prefetch) {
  std::vector<double> start(compute.size(), 0), finish(compute.size(), 0);
  double channel = 0, t = 0;
  std::vector<double> gathered(compute.size(), 0);
  for (std::size_t k = 0; k < compute.size(); ++k) {
    // Launched at the acquire of unit k - prefetch (its start), or on demand.
    const double launch = (prefetch > 0 && k >= static_cast<std::size_t>(prefetch)) ? start[k - prefetch] : t;
    channel = std::max(channel, launch) + gather[k];
    gathered[k] = channel;
    start[k] = std::max(t, gathered[k]);
    t = finish[k] = start[k] + compute[k];
  }
  double total = 0;
  for (double c : compute) total += c;
  return std::max(0.0, t - total);
}

double adam_bytes(bool mixed) { return 28 + (mixed ? 8 : 0); }  // p g m v in, p m v out (+ master -> compute)

}  // namespace

StepTime estimate_time(const PlanModel& m, const PlanBatch& b, const Layout& l, const ZeroKnobs& z,
                       const Machine& machine) {
  const int N = l.ranks(), accum = b.grad_accum;
  const bool cpu = machine.device == DeviceKind::Cpu;
  const double share = cpu ? std::min(1.0, double(machine.devices_per_node) / l.ranks_per_node) : 1.0;
  const ComputeTime c = estimate_compute(m, b, machine, share);
  const FlatLayout f = flat_layout(m, l.stage, N, z.bucket_mb);
  const StateBytes sb = engine_state_bytes(m.dtype, machine);
  const double P = double(f.padded), S = double(f.shard), mem_bw = machine.memory_bandwidth_gbs * 1e9 * share;
  const Link link = collective_link(machine, l);
  const double overlap = z.overlap ? machine.overlap : 0.0;
  const std::vector<BackwardStep> order = backward_order(m, c);

  StepTime t;
  t.forward = accum * c.forward;
  t.backward = accum * c.backward;
  t.recompute = accum * c.recompute;

  // Gradient reduction: buckets and their times.
  std::vector<Bucket> buckets;
  std::vector<double> seconds;
  if (l.stage == 0) {
    const auto per = std::max<std::int64_t>(1, static_cast<std::int64_t>(z.bucket_mb * 1024 * 1024 / 4));
    for (std::int64_t end = f.padded; end > 0; end -= per) buckets.push_back({std::max<std::int64_t>(0, end - per), end});
    for (const Bucket& k : buckets) seconds.push_back(allreduce_s(double(k.end - k.begin) * sb.grad, N, link));
  } else {
    for (std::size_t u = f.units.size(); u-- > 0;) {
      std::int64_t end = f.units[u].end;
      for (std::size_t s = f.units[u].segments.size(); s-- > 0;) {
        buckets.push_back({end - f.units[u].segments[s], end});
        end -= f.units[u].segments[s];
      }
    }
    for (const Bucket& k : buckets) seconds.push_back(reduce_scatter_s(double(k.end - k.begin) * sb.grad, N, link));
  }
  double reduction = 0;
  for (double s : seconds) reduction += s;
  const double reductions = l.stage >= 2 ? accum : 1;  // stages 2-3 never keep a whole gradient
  const double reduction_exposed = N > 1 ? exposed_reduction(m, f, order, buckets, seconds) : 0.0;
  t.comm_total += reductions * reduction;
  t.comm_exposed += reductions * (overlap * reduction_exposed + (1 - overlap) * reduction);

  // Parameters: all-gathered after the update (stages 1-2: everything; stage 3: what stays whole),
  // never hidden; stage 3 gathers every unit for forward and for backward.
  if (l.stage == 1 || l.stage == 2) {
    double g = 0;
    for (const FlatLayout::Unit& u : f.units)
      for (std::int64_t seg : u.segments) g += all_gather_s(double(seg) * sb.param, N, link);
    t.comm_total += g;
    t.comm_exposed += g;
  }
  if (l.stage == 3 && N > 1) {
    // One task per acquire, in the model's order: the compute that follows it and the gather it
    // waits for (none for a unit that stays whole). The output projection's acquire carries the
    // logits' forward and backward; the embeddings' backward closes the micro-batch.
    auto unit_gather = [&](std::size_t u) {
      if (f.units[u].end - f.units[u].begin < z.persistence_threshold) return 0.0;
      double g = 0;
      for (std::int64_t seg : f.units[u].segments) g += all_gather_s(double(seg) * sb.param, N, link);
      return g;
    };
    std::vector<double> compute, gather;
    std::size_t embedding = 0, output = 0;
    for (std::size_t u = 0; u < m.kinds.size(); ++u) {
      if (m.kinds[u] == Kind::Output) {
        output = u;
        continue;
      }
      if (m.kinds[u] == Kind::Embedding) embedding = u;
      compute.push_back(c.unit_forward[u]), gather.push_back(unit_gather(u));
    }
    const std::size_t out = m.tie_embeddings ? embedding : output;
    compute.push_back(c.output_forward + c.output_backward), gather.push_back(unit_gather(out));
    for (const BackwardStep& s : order)
      if (s.unit != kNoUnit && s.unit != embedding && m.kinds[s.unit] != Kind::Output)
        compute.push_back(s.seconds), gather.push_back(unit_gather(s.unit));
    compute.back() += c.unit_backward[embedding];
    double total = 0;
    for (double g : gather) total += g;
    const double exposed = exposed_gathers(compute, gather, z.prefetch);
    t.comm_total += accum * total;
    t.comm_exposed += accum * (overlap * exposed + (1 - overlap) * total);
  }

  // Gradient bookkeeping on the device: zeroing and averaging (stages 0-1, the full buffer),
  // accumulating arrived blocks into the partition (stages 2-3, every micro-batch).
  const double owned = l.stage == 0 ? P : S;
  double housekeeping = l.stage <= 1 ? (4 + 8) * P : accum * 12 * S + 4 * S;
  housekeeping += 12 * owned;  // clip: scale and sum of squares of the owned gradients
  t.optimizer = housekeeping / mem_bw;

  // The Adam step: on the device, or on the host with copies (and NVMe streaming). NVMe files are
  // streamed chunk by chunk by one I/O thread while the update runs on the chunk before: the
  // slower of the two counts. What the engine streams (src/train/zero/, offload.cpp):
  // moments: every chunk read and written back once per update (8 bytes per element each way);
  // stage 3 parameters: the rank's block of every unit read for each gather (whole chunks), the
  // partition read and written by an fp32 update (whose optimizer step runs once per parameter
  // chunk, each time streaming every moment chunk), written once after a mixed-precision update.
  const double adam = owned * adam_bytes(m.mixed());
  const double pcie = cpu ? 0 : machine.pcie_bandwidth_gbs * 1e9;
  const double host_bw = cpu ? mem_bw : machine.host_bandwidth_gbs * 1e9 / l.ranks_per_node;
  const double nvme_rd = machine.nvme_read_gbs * 1e9 / l.ranks_per_node, nvme_wr = machine.nvme_write_gbs * 1e9 / l.ranks_per_node;
  const bool param_file = l.stage == 3 && l.param == Placement::Nvme;
  const double param_chunk = std::min(std::max(1.0, std::floor(z.nvme_chunk_mb * 1024 * 1024 / 4)), std::max(S, 1.0));
  const double param_chunks = std::ceil(S / param_chunk);
  const double moment_stream = 8 * S / nvme_rd + 8 * S / nvme_wr;
  if (l.stage >= 1 && l.optimizer != Placement::None) {
    double io = adam / host_bw;
    if (pcie > 0) io += S * 4 / pcie + S * sb.param / pcie;  // gradients down, parameters up
    if (l.optimizer == Placement::Nvme) io = std::max(io, moment_stream * (param_file && !m.mixed() ? param_chunks : 1));
    t.offload_io += io;
  } else {
    t.optimizer += adam / mem_bw;
  }
  if (l.stage == 3 && l.param != Placement::None) {
    double gathered_units = 0;  // units whose blocks each gather brings up
    for (const FlatLayout::Unit& u : f.units) gathered_units += u.end - u.begin >= z.persistence_threshold;
    // Each gather first brings the rank's own block up (forward and backward, every micro-batch).
    const double up = l.param == Placement::Cpu
                          ? (pcie > 0 ? S * sb.param / pcie : 2 * S * 4 / mem_bw)
                          : (param_chunks + gathered_units) * param_chunk * 4 / nvme_rd + (pcie > 0 ? S * sb.param / pcie : 0);
    t.offload_io += 2 * accum * up;
    if (param_file) t.offload_io += m.mixed() ? S * 4 / nvme_wr : S * 4 / nvme_rd + S * 4 / nvme_wr;
  }

  t.step = t.compute() + t.optimizer + t.comm_exposed + t.offload_io;
  t.model_flops = 6.0 * b.micro_batch * accum * forward_macs_per_sequence(m, b.src, b.tgt);
  t.tokens_per_s = t.step > 0 ? N * b.tokens_per_rank() / t.step : 0;
  const double devices = double(l.nodes) * std::min(l.ranks_per_node, machine.devices_per_node);
  const double peak = machine.peak_tflops(m.dtype) * 1e12 * devices;
  t.mfu = t.step > 0 && peak > 0 ? t.model_flops * N / (t.step * peak) : 0;
  return t;
}

}  // namespace th
