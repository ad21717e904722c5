// The plan on stdout (one line per layout) and in plan.h5 (every number; docs/planning.md).
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "th/config/config.hpp"
#include "th/io/h5_file.hpp"
#include "th/plan/plan.hpp"

namespace th {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double bytes) {
  char buf[32];
  const double g = bytes / kGiB;
  std::snprintf(buf, sizeof buf, g == 0 ? "0" : g < 0.01 ? "%.1e" : g < 100 ? "%.3g" : "%.0f", g);
  return buf;
}

std::string model_line(const PlanModel& m, const PlanBatch& b) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s d_model %d, %d heads, d_ff %d, layers %d+%d, vocab %lld, %s, %s positions; Psi = %.4g parameters; micro-batch %d x "
                "(%d + %d) tokens, grad_accum %d; %s, activation checkpointing %s",
                m.decoder_only ? "decoder-only" : "encoder-decoder", m.d_model, m.n_heads, m.d_ff, m.encoder_layers,
                m.decoder_layers, static_cast<long long>(m.vocab), m.tie_embeddings ? "tied" : "untied",
                m.learned_positions ? "learned" : "sinusoidal", double(m.params()), b.micro_batch, b.src, b.tgt, b.grad_accum, to_string(m.dtype),
                m.checkpointing ? "on" : "off");
  return buf;
}
}  // namespace

void print_plan(std::FILE* out, const PlanModel& m, const PlanBatch& b, const Machine& machine,
                const std::vector<LayoutPlan>& plans, const std::vector<std::string>& skipped) {
  std::fprintf(out, "plan: %s\n", model_line(m, b).c_str());
  std::fprintf(out, "plan: machine %s (%s)\n", machine.name.c_str(), machine.source.c_str());
  if (!plans.empty())
    std::fprintf(out, "plan: activations per rank and micro-batch %s GiB without checkpointing, %s GiB with\n",
                 gib(plans[0].memory.activations_full).c_str(), gib(plans[0].memory.activations_checkpointed).c_str());
  std::fprintf(out,
               "  GiB per rank: params grads optim = model states; activ = activations; bufs = gathered units + "
               "gradient pages; work = scratch; host, nvme per node; times in s per step\n");
  std::fprintf(out, "%3s %11s %5s %5s %7s %7s %7s %7s %7s %7s %7s %8s %8s %8s  %-17s %8s %8s %8s %8s %8s %11s %6s\n",
               "#", "nodes x rpn", "ranks", "stage", "offload", "params", "grads", "optim", "activ", "bufs", "work",
               "device", "host", "nvme", "fits", "compute", "comm", "exposed", "offload", "step", "tokens/s", "MFU");
  int i = 0;
  for (const LayoutPlan& p : plans) {
    const MemoryEstimate& e = p.memory;
    const StepTime& t = p.time;
    char layout[32], fit[48];
    std::snprintf(layout, sizeof layout, "%d x %d", p.layout.nodes, p.layout.ranks_per_node);
    if (p.fits)
      std::snprintf(fit, sizeof fit, "yes");
    else
      std::snprintf(fit, sizeof fit, "NO, %s GiB short", gib(p.shortfall).c_str());
    std::fprintf(out,
                 "%3d %11s %5d %5d %7s %7s %7s %7s %7s %7s %7s %8s %8s %8s  %-17s %8.3g %8.3g %8.3g %8.3g %8.3g %11.4g "
                 "%6.3f\n",
                 ++i, layout, p.layout.ranks(), p.layout.stage, to_string(p.layout.optimizer), gib(e.params).c_str(),
                 gib(e.grads).c_str(), gib(e.optimizer).c_str(), gib(e.activations).c_str(),
                 gib(e.gathered + e.grad_buckets).c_str(), gib(std::max(e.workspace, e.workspace_init)).c_str(),
                 gib(e.device_peak()).c_str(), gib(p.layout.ranks_per_node * e.host()).c_str(),
                 gib(p.layout.ranks_per_node * e.nvme).c_str(), fit, t.compute() + t.optimizer, t.comm_total,
                 t.comm_exposed, t.offload_io, t.step, t.tokens_per_s, t.mfu);
  }
  for (const std::string& s : skipped) std::fprintf(out, "  not considered: %s\n", s.c_str());
  if (!plans.empty() && plans[0].fits) {
    const LayoutPlan& p = plans[0];
    std::fprintf(out, "plan: fastest layout that fits: %d node(s) x %d rank(s), ZeRO stage %d, offload %s: %.4g tokens/s, "
                      "step %.3g s, MFU %.3f\n",
                 p.layout.nodes, p.layout.ranks_per_node, p.layout.stage, to_string(p.layout.optimizer),
                 p.time.tokens_per_s, p.time.step, p.time.mfu);
  } else {
    std::fprintf(out, "plan: no layout fits\n");
  }
  std::fflush(out);
}

void write_plan_h5(const std::string& path, const Config& cfg, const PlanModel& m, const PlanBatch& b,
                   const Machine& machine, const std::vector<LayoutPlan>& plans) {
  H5File f(path, H5File::Mode::Create);
  f.set_attr("format", std::string("torch-handle plan 1"));
  f.set_attr("model", model_line(m, b));
  f.set_attr("machine", machine.name);
  f.write_string("deck", cfg.resolved_deck);
  f.write_string("machine", machine_namelist(machine, machine.source));
  const hsize_t one = 1;
  auto scalar = [&](const std::string& name, double v) { f.write(name, std::vector<double>{v}, {one}); };
  scalar("model/params", double(m.params()));
  scalar("model/d_model", m.d_model);
  scalar("model/n_heads", m.n_heads);
  scalar("model/d_ff", m.d_ff);
  scalar("model/encoder_layers", m.encoder_layers);
  scalar("model/decoder_layers", m.decoder_layers);
  scalar("model/vocab", double(m.vocab));
  scalar("batch/micro_batch", b.micro_batch);
  scalar("batch/src", b.src);
  scalar("batch/tgt", b.tgt);
  scalar("batch/grad_accum", b.grad_accum);
  const hsize_t n = plans.size();
  auto column = [&](const std::string& name, const std::function<double(const LayoutPlan&)>& get) {
    std::vector<double> v;
    for (const LayoutPlan& p : plans) v.push_back(get(p));
    f.write("layouts/" + name, v, {n});
  };
  column("order", [&](const LayoutPlan& p) { return double(&p - plans.data()); });
  column("nodes", [](const LayoutPlan& p) { return p.layout.nodes; });
  column("ranks_per_node", [](const LayoutPlan& p) { return p.layout.ranks_per_node; });
  column("ranks", [](const LayoutPlan& p) { return p.layout.ranks(); });
  column("stage", [](const LayoutPlan& p) { return p.layout.stage; });
  column("offload_optimizer", [](const LayoutPlan& p) { return double(static_cast<int>(p.layout.optimizer)); });
  column("offload_param", [](const LayoutPlan& p) { return double(static_cast<int>(p.layout.param)); });
  column("padded_params", [](const LayoutPlan& p) { return p.memory.padded; });
  column("shard_params", [](const LayoutPlan& p) { return p.memory.shard; });
  column("params_bytes", [](const LayoutPlan& p) { return p.memory.params; });
  column("grads_bytes", [](const LayoutPlan& p) { return p.memory.grads; });
  column("optimizer_bytes", [](const LayoutPlan& p) { return p.memory.optimizer; });
  column("activations_bytes", [](const LayoutPlan& p) { return p.memory.activations; });
  column("activations_full_bytes", [](const LayoutPlan& p) { return p.memory.activations_full; });
  column("activations_checkpointed_bytes", [](const LayoutPlan& p) { return p.memory.activations_checkpointed; });
  column("gathered_bytes", [](const LayoutPlan& p) { return p.memory.gathered; });
  column("grad_buckets_bytes", [](const LayoutPlan& p) { return p.memory.grad_buckets; });
  column("workspace_bytes", [](const LayoutPlan& p) { return p.memory.workspace; });
  column("workspace_init_bytes", [](const LayoutPlan& p) { return p.memory.workspace_init; });
  column("host_moments_bytes", [](const LayoutPlan& p) { return p.memory.host_moments; });
  column("host_master_bytes", [](const LayoutPlan& p) { return p.memory.host_master; });
  column("host_params_bytes", [](const LayoutPlan& p) { return p.memory.host_params; });
  column("nvme_bytes", [](const LayoutPlan& p) { return p.memory.nvme; });
  column("device_peak_bytes", [](const LayoutPlan& p) { return p.memory.device_peak(); });
  column("device_need_bytes", [](const LayoutPlan& p) { return p.device_need; });
  column("device_have_bytes", [](const LayoutPlan& p) { return p.device_have; });
  column("host_need_bytes", [](const LayoutPlan& p) { return p.host_need; });
  column("host_have_bytes", [](const LayoutPlan& p) { return p.host_have; });
  column("nvme_need_bytes", [](const LayoutPlan& p) { return p.nvme_need; });
  column("nvme_have_bytes", [](const LayoutPlan& p) { return p.nvme_have; });
  column("fits", [](const LayoutPlan& p) { return p.fits ? 1.0 : 0.0; });
  column("shortfall_bytes", [](const LayoutPlan& p) { return p.shortfall; });
  column("forward_s", [](const LayoutPlan& p) { return p.time.forward; });
  column("backward_s", [](const LayoutPlan& p) { return p.time.backward; });
  column("recompute_s", [](const LayoutPlan& p) { return p.time.recompute; });
  column("optimizer_s", [](const LayoutPlan& p) { return p.time.optimizer; });
  column("comm_total_s", [](const LayoutPlan& p) { return p.time.comm_total; });
  column("comm_exposed_s", [](const LayoutPlan& p) { return p.time.comm_exposed; });
  column("offload_io_s", [](const LayoutPlan& p) { return p.time.offload_io; });
  column("step_s", [](const LayoutPlan& p) { return p.time.step; });
  column("model_flops", [](const LayoutPlan& p) { return p.time.model_flops; });
  column("tokens_per_s", [](const LayoutPlan& p) { return p.time.tokens_per_s; });
  column("mfu", [](const LayoutPlan& p) { return p.time.mfu; });
  f.flush();
}

}  // namespace th
