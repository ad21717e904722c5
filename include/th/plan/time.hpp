#pragma once
// Step time of one layout: compute (a roofline per matrix product plus memory-bound element-wise
// passes), the collectives of its ZeRO stage under an alpha-beta model (ring or tree), the part of
// them the buckets and prefetches hide behind compute, and offload I/O (host <-> device copies,
// the host optimizer, NVMe reads and writes).
#include <vector>

#include "th/plan/layout.hpp"
#include "th/plan/machine.hpp"
#include "th/plan/model.hpp"

namespace th {

// One link of the alpha-beta model: a collective step costs latency + bytes / bandwidth.
struct Link {
  double latency_s = 0, bandwidth = 0;  // seconds; bytes per second, per rank, one direction
};
// The link a collective over every rank of the layout runs on: the node's own within one node;
// across nodes the slower of the two (a ring through every rank crosses the network).
Link collective_link(const Machine& m, const Layout& l);
// Collective times of `bytes` (the whole buffer, every rank's part together) on `ranks` ranks.
double ring_allreduce_s(double bytes, int ranks, const Link& link);  // 2(N-1) a + 2 (N-1)/N B / b
double tree_allreduce_s(double bytes, int ranks, const Link& link);  // 2 ceil(log2 N) a + 2 B / b
double allreduce_s(double bytes, int ranks, const Link& link);       // the faster of the two
double reduce_scatter_s(double bytes, int ranks, const Link& link);  // (N-1) a + (N-1)/N B / b
double all_gather_s(double bytes, int ranks, const Link& link);      // (N-1) a + (N-1)/N B / b

// Per-rank compute of one micro-batch, split by where it happens (seconds).
struct ComputeTime {
  double forward = 0, backward = 0, recompute = 0;  // totals
  std::vector<double> unit_forward, unit_backward;  // per gather unit (recompute not included)
  double output_forward = 0, output_backward = 0;   // logits and cross-entropy (in the totals)
};
ComputeTime estimate_compute(const PlanModel& m, const PlanBatch& b, const Machine& machine, double share);

struct StepTime {
  double forward = 0, backward = 0, recompute = 0;  // every micro-batch of the step
  double optimizer = 0;     // clip, Adam and the master copy on the device (0 when offloaded)
  double comm_total = 0;    // every collective of the step, back to back
  double comm_exposed = 0;  // what compute does not hide
  double offload_io = 0;    // host <-> device copies, host optimizer, NVMe traffic
  double step = 0;          // forward + backward + recompute + optimizer + comm_exposed + offload_io
  double model_flops = 0;   // per rank per step: 6 x multiply-adds (task='bench' counts the same)
  double tokens_per_s = 0;  // the whole job's
  double mfu = 0;           // model FLOPs / (step x peak of the compute type)
  double compute() const { return forward + backward + recompute; }
};
StepTime estimate_time(const PlanModel& m, const PlanBatch& b, const Layout& l, const ZeroKnobs& z,
                       const Machine& machine);

}  // namespace th
