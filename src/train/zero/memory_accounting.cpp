// The memory accounting: what the rank's model states take in the host pool, against the ZeRO
// paper's formula for the engine's stage, the offloaded bytes, and the report table.
#include <algorithm>
#include <cstdio>

#include "engine_impl.hpp"

namespace th {

double ZeroEngine::planned_state_bytes(const ZeroOptions& opt, double psi, int world) {
  const zero::StagePolicy policy = zero::stage_policy(opt.stage);
  const double n = world;
  double params = policy.params_partitioned ? 4 * psi / n : 4 * psi;
  if (policy.params_partitioned && opt.offload.param == OffloadTarget::Nvme) params = 0;
  const double grads = policy.grads_partitioned ? 4 * psi / n : 4 * psi;
  const double moments = opt.offload.optimizer == OffloadTarget::Nvme ? 0 : policy.replicated ? 8 * psi : 8 * psi / n;
  return params + grads + moments;
}

ZeroMemory ZeroEngine::memory() const {
  const Impl& e = *impl_;
  const MemoryPool& pool = e.model.backend().pool(MemorySpace::Device);  // the host pool on the CPU backend
  ZeroMemory m;
  m.psi = e.ps.size();
  m.params = pool.live(MemCategory::Parameters);
  m.grads = pool.live(MemCategory::Gradients);
  m.optimizer = pool.live(MemCategory::OptimizerState);
  m.activation_peak = pool.peak(MemCategory::Activations);
  const OffloadMemory o = e.store->memory();
  m.offload_host = o.host;
  m.offload_window = o.window;
  m.offload_nvme = o.nvme;
  e.params->add_offload(m);
  const double psi = static_cast<double>(m.psi), n = e.comm.size();
  const double f = e.policy.formula_whole * psi + e.policy.formula_split * psi / n;
  // Mixed precision as stored here: the compute copy (2 bytes where ParamHome::two_byte(): at
  // stages 0-2, where it is whole, 2 Psi instead of 4; at stage 3 the partition, 2 Psi / N instead
  // of 4 Psi / N; else fp32 storage) and the gradients (2 bytes where
  // GradReduction::two_byte(): 2 Psi instead of 4 at stages 0-1, 2 Psi / N instead of 4 Psi / N
  // at stages 2-3; the fp32 window backward writes is given back unit by unit and the 2-byte
  // range of stages 2-3 bucket by bucket: not in the formula), plus the fp32 master (4 Psi,
  // partitioned from stage 1 on).
  const double master = e.opt.compute != DType::F32 ? 4 * psi / (e.policy.replicated ? 1 : n) : 0;
  const double grads_saving = e.grads->two_byte() ? 2 * psi / (e.policy.grads_partitioned ? n : 1) : 0;
  const double params_saving = e.params->two_byte() ? 2 * psi / (e.policy.params_partitioned ? n : 1) : 0;
  const double two_byte_saving = params_saving + grads_saving;
  m.formula = static_cast<std::int64_t>(f + master - two_byte_saving);
  return m;
}

std::vector<ZeroMemory> ZeroEngine::memory_all() const {
  const Comm& comm = impl_->comm;
  const auto n = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
  const ZeroMemory m = memory();
  constexpr std::size_t K = 9;
  std::vector<std::int64_t> v(K * n, 0);
  const std::int64_t mine[K] = {m.psi,     m.params,          m.grads,        m.optimizer,   m.formula,
                                m.activation_peak, m.offload_host, m.offload_window, m.offload_nvme};
  std::copy(mine, mine + K, v.begin() + static_cast<std::ptrdiff_t>(K * me));
  impl_->comm.allreduce(v.data(), v.size(), ReduceOp::Sum);
  std::vector<ZeroMemory> all(n);
  for (std::size_t r = 0; r < n; ++r) {
    const std::int64_t* x = v.data() + K * r;
    all[r] = {x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8]};
  }
  return all;
}

std::vector<ZeroMemory> ZeroEngine::memory_report(const char* when) const {
  const Impl& e = *impl_;
  const std::vector<ZeroMemory> all = memory_all();
  if (e.comm.rank() != 0) return all;
  const int N = e.comm.size();
  std::printf("memory %s: ZeRO stage %d on %d ranks, Psi = %lld parameters (padded layout); per rank, bytes:\n"
              "  rank   parameters    gradients    optimizer  model states   formula   ratio  activation peak\n",
              when, e.policy.stage, N, static_cast<long long>(all[0].psi));
  for (int r = 0; r < N; ++r) {
    const ZeroMemory& m = all[static_cast<std::size_t>(r)];
    const std::int64_t states = m.params + m.grads + m.optimizer;
    std::printf("  %4d %12lld %12lld %12lld  %12lld %9lld  %6.3f  %15lld\n", r, static_cast<long long>(m.params),
                static_cast<long long>(m.grads), static_cast<long long>(m.optimizer), static_cast<long long>(states),
                static_cast<long long>(m.formula), m.formula > 0 ? double(states) / double(m.formula) : 0.0,
                static_cast<long long>(m.activation_peak));
  }
  std::printf("  formula (fp32, Psi padded): stage 0 16Psi, 1 4Psi+4Psi+8Psi/N, 2 4Psi+12Psi/N, 3 16Psi/N\n");
  const OffloadTarget moments = e.opt.offload.optimizer, params = e.opt.offload.param;
  if (moments != OffloadTarget::None || params != OffloadTarget::None) {
    std::printf("  offload (optimizer '%s', parameters '%s'): moments %s; per rank, bytes:\n"
                "  rank  host offload  of it NVMe window    NVMe file\n",
                to_string(moments), to_string(params),
                moments == OffloadTarget::Nvme  ? "streamed from <nvme_path>/th_optim_rank<r>.bin"
                : moments == OffloadTarget::Cpu ? "on the host"
                                                : "with the parameters");
    for (int r = 0; r < N; ++r) {
      const ZeroMemory& m = all[static_cast<std::size_t>(r)];
      std::printf("  %4d %13lld %18lld %12lld\n", r, static_cast<long long>(m.offload_host),
                  static_cast<long long>(m.offload_window), static_cast<long long>(m.offload_nvme));
    }
  }
  const char* type = e.opt.compute == DType::BF16 ? "bf16" : "fp16";
  if (e.params->two_byte() && e.grads->two_byte())
    std::printf("  %s (the compute copy and the gradients in 2 bytes): 2Psi (stages 0-2) or 2Psi/N (stage 3) less "
                "for the parameters, 2Psi (stages 0-1) or 2Psi/N (stages 2-3) for the gradients, plus the fp32 master, 4Psi at stage 0, 4Psi/N from "
                "stage 1; backward's fp32 window (one unit at a time) is not in the formula\n", type);
  else if (e.grads->two_byte())
    std::printf("  %s (the gradients in 2 bytes, the compute copy in fp32 storage): 2Psi less (stages 0-1) or "
                "2Psi/N (stages 2-3) for the gradients, plus the fp32 master, 4Psi at stage 0, 4Psi/N from stage 1; "
                "backward's fp32 window (one unit at a time) is not in the formula\n", type);
  else if (e.params->two_byte())
    std::printf("  %s (the compute copy in 2 bytes, gradients in fp32 storage): 2Psi (stages 0-2) or 2Psi/N (stage "
                "3) less for the parameters, plus the fp32 master, 4Psi at stage 0, 4Psi/N from stage 1\n", type);
  else if (e.opt.compute != DType::F32)
    std::printf("  %s (emulated: 16-bit values in fp32 storage): plus the fp32 master, 4Psi at stage 0, 4Psi/N at "
                "stages 1-3\n", type);
  std::fflush(stdout);
  return all;
}

double ZeroEngine::theory_bytes_per_step() const {
  const double psi = static_cast<double>(impl_->ps.size()), n = impl_->comm.size();
  const zero::StagePolicy& p = impl_->policy;
  const double grad_bytes = static_cast<double>(dtype_size(impl_->opt.compute));  // the gradients' wire type
  const double param_bytes = impl_->params->two_byte() ? 2.0 : 4.0;  // the all-gathered compute copy
  return (p.comm_grad_psi * grad_bytes + (p.comm_psi - p.comm_grad_psi) * param_bytes) * psi * (n - 1) / n;
}

std::string ZeroEngine::theory_formula() const {
  const zero::StagePolicy& p = impl_->policy;
  if (impl_->opt.compute == DType::F32) return std::string(p.comm_formula) + " Psi (N-1)/N x 4 bytes";
  if (p.comm_grad_psi == p.comm_psi || impl_->params->two_byte())
    return std::string(p.comm_formula) + " Psi (N-1)/N x 2 bytes";
  return "(" + std::to_string(p.comm_grad_psi) + " x 2 + " + std::to_string(p.comm_psi - p.comm_grad_psi) +
         " x 4 bytes) Psi (N-1)/N: 16-bit gradients, fp32 parameters";
}

}  // namespace th
