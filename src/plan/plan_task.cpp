// task = 'plan': machine (file and/or calibration), model, layouts, report.
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <fstream>

#include "th/config/config.hpp"
#include "th/core/error.hpp"
#include "th/parallel/comm.hpp"
#include "th/plan/plan.hpp"

namespace th {

namespace {
// Runs f on rank 0; its th::InputError / th::Error reaches every rank as the same exception.
void on_root_agreed(Comm& comm, const std::function<void()>& f) {
  std::string error;
  std::int64_t input = 0;
  if (comm.rank() == 0) {
    try {
      f();
    } catch (const InputError& e) {
      error = e.what(), input = 1;
    } catch (const Error& e) {
      error = e.what();
    }
  }
  comm.broadcast(&input, sizeof input, 0);
  comm.broadcast_string(error, 0);
  if (!error.empty()) {
    if (input) throw InputError(error);
    throw Error(error);
  }
}

std::string today() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}
}  // namespace

void run_plan(const Config& cfg, Comm& comm) {
  Machine machine;
  on_root_agreed(comm, [&] {
    if (!cfg.plan.machine.empty()) machine = read_machine(cfg.plan.machine);
  });
  if (cfg.plan.calibrate) {
    std::string report;
    machine = calibrate_machine(comm, machine, cfg.parallel.nvme_path, &report);  // collective
    on_root_agreed(comm, [&] {
      const std::string path = cfg.run.output_dir + "/machine.nml";
      std::ofstream out(path);
      out << machine_namelist(machine, "Measured by task = 'plan' with plan%calibrate = .true. on " + today() + " (" +
                                           std::to_string(comm.size()) + " rank(s) at once):\n" + report);
      if (!out) throw Error("cannot write " + path);
      std::printf("plan: calibrated this machine (%s); description in %s\n%s", machine.name.c_str(), path.c_str(),
                  report.c_str());
    });
  }
  on_root_agreed(comm, [&] {
    const PlanModel m = plan_model(cfg);
    const PlanBatch b = plan_batch(cfg, m);
    std::vector<std::string> skipped;
    const std::vector<LayoutPlan> plans = plan_layouts(m, b, zero_knobs(cfg), machine, cfg.plan.nodes,
                                                       cfg.plan.ranks_per_node, cfg.plan.zero_stages,
                                                       cfg.plan.offload, &skipped);
    print_plan(stdout, m, b, machine, plans, skipped);
    write_plan_h5(cfg.run.output_dir + "/plan.h5", cfg, m, b, machine, plans);
    std::printf("plan: every number in %s/plan.h5 (docs/planning.md)\n", cfg.run.output_dir.c_str());
    std::fflush(stdout);
  });
}

}  // namespace th
