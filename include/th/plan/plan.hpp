#pragma once
// task = 'plan': memory per rank by category and the step time of every layout the deck lists
// (plan%nodes x plan%ranks_per_node x plan%zero_stages x plan%offload) on a machine description,
// which layouts fit and by how much they do not, the fastest fitting layout first. Output: a table
// on stdout and <output_dir>/plan.h5 (schema: docs/planning.md). Rank 0 computes; with
// plan%calibrate every rank takes part in measuring the machine first.
#include <cstdio>
#include <string>
#include <vector>

#include "th/plan/layout.hpp"
#include "th/plan/machine.hpp"
#include "th/plan/memory.hpp"
#include "th/plan/model.hpp"
#include "th/plan/time.hpp"

namespace th {

class Comm;
struct Config;

struct LayoutPlan {
  Layout layout;
  MemoryEstimate memory;
  StepTime time;
  double device_need = 0, device_have = 0;  // per device (CPU: per node, the ranks' sum)
  double host_need = 0, host_have = 0;      // per node
  double nvme_need = 0, nvme_have = 0;      // per node
  bool fits = false;
  double shortfall = 0;  // bytes missing on the tightest of the three (0 when it fits)
};

ZeroKnobs zero_knobs(const Config& cfg);
// Every layout of the lists that can run (offload needs stage >= 1; a GPU node has at most
// devices_per_node ranks), planned; fitting layouts first, fastest first, then the others by
// shortfall. `skipped` receives one line per layout left out and why.
std::vector<LayoutPlan> plan_layouts(const PlanModel& m, const PlanBatch& b, const ZeroKnobs& z, const Machine& machine,
                                     const std::vector<int>& nodes, const std::vector<int>& ranks_per_node,
                                     const std::vector<int>& stages, const std::vector<std::string>& offload,
                                     std::vector<std::string>* skipped);
LayoutPlan plan_layout(const PlanModel& m, const PlanBatch& b, const ZeroKnobs& z, const Machine& machine,
                       const Layout& layout);

void run_plan(const Config& cfg, Comm& comm);

// Output (src/plan/report.cpp): the stdout table, and plan.h5.
void print_plan(std::FILE* out, const PlanModel& m, const PlanBatch& b, const Machine& machine,
                const std::vector<LayoutPlan>& plans, const std::vector<std::string>& skipped);
void write_plan_h5(const std::string& path, const Config& cfg, const PlanModel& m, const PlanBatch& b,
                   const Machine& machine, const std::vector<LayoutPlan>& plans);

}  // namespace th
