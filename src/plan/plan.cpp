// Layouts: which can run, what each needs against what the machine has, and their order.
#include "th/plan/plan.hpp"

#include <algorithm>
#include <cmath>

#include "th/config/config.hpp"

namespace th {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
}

ZeroKnobs zero_knobs(const Config& cfg) {
  ZeroKnobs z;
  z.bucket_mb = cfg.parallel.bucket_mb;
  z.overlap = cfg.parallel.overlap_comm;
  z.prefetch = cfg.parallel.stage3_prefetch;
  z.persistence_threshold = cfg.parallel.param_persistence_threshold;
  z.nvme_chunk_mb = cfg.parallel.nvme_chunk_mb;
  return z;
}

LayoutPlan plan_layout(const PlanModel& m, const PlanBatch& b, const ZeroKnobs& z, const Machine& machine,
                       const Layout& layout) {
  LayoutPlan p;
  p.layout = layout;
  p.memory = estimate_memory(m, b, layout, z, machine);
  p.time = estimate_time(m, b, layout, z, machine);
  const double rpn = layout.ranks_per_node;
  if (machine.device == DeviceKind::Gpu) {
    p.device_need = p.memory.device_peak();
    p.device_have = (machine.device_memory_gib - machine.reserved_gib) * kGiB;
    p.host_need = rpn * p.memory.host();
  } else {  // the device is the host: a node's ranks share its memory with what they offload
    p.device_need = rpn * (p.memory.device_peak() + p.memory.host());
    p.device_have = machine.host_memory_gib * kGiB;
    p.host_need = p.device_need;
  }
  p.host_have = machine.host_memory_gib * kGiB;
  p.nvme_need = rpn * p.memory.nvme;
  p.nvme_have = machine.nvme_capacity_gib * kGiB;
  p.shortfall = std::max({0.0, p.device_need - p.device_have, p.host_need - p.host_have, p.nvme_need - p.nvme_have});
  p.fits = p.shortfall == 0;
  return p;
}

std::vector<LayoutPlan> plan_layouts(const PlanModel& m, const PlanBatch& b, const ZeroKnobs& z, const Machine& machine,
                                     const std::vector<int>& nodes, const std::vector<int>& ranks_per_node,
                                     const std::vector<int>& stages, const std::vector<std::string>& offload,
                                     std::vector<std::string>* skipped) {
  std::vector<LayoutPlan> out;
  for (int n : nodes)
    for (int r : ranks_per_node)
      for (int s : stages)
        for (const std::string& o : offload) {
          const std::string name = std::to_string(n) + " x " + std::to_string(r) + ", stage " + std::to_string(s) +
                                   ", offload " + o;
          if (s == 0 && o != "none") {
            if (skipped) skipped->push_back(name + ": offload needs ZeRO stage >= 1");
            continue;
          }
          if (machine.device == DeviceKind::Gpu && r > machine.devices_per_node) {
            if (skipped)
              skipped->push_back(name + ": a node of " + machine.name + " has " + std::to_string(machine.devices_per_node) +
                                 " GPUs");
            continue;
          }
          Layout l;
          l.nodes = n;
          l.ranks_per_node = r;
          l.stage = s;
          l.optimizer = parse_placement(o);
          l.param = s == 3 ? l.optimizer : Placement::None;  // ZeRO-Infinity: stage 3 offloads both
          out.push_back(plan_layout(m, b, z, machine, l));
        }
  std::stable_sort(out.begin(), out.end(), [](const LayoutPlan& a, const LayoutPlan& c) {
    if (a.fits != c.fits) return a.fits;
    if (a.fits) return a.time.tokens_per_s > c.time.tokens_per_s;
    return a.shortfall < c.shortfall;
  });
  return out;
}

}  // namespace th
