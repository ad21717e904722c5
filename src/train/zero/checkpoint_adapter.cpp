// The checkpoint adapter: what the engine hands to io/checkpoint (docs/checkpoint-format.md).
// Replicated (stage 0): every rank holds everything, rank 0 writes it all. Partitioned (stages
// 1-3): every rank writes / reads its partition as slices of the global datasets: parameters in
// partition layout (the fp32 master with mixed precision), moments as they are (offloaded to the
// NVMe file: through a staging buffer). The checkpoint files are host I/O: values and moments in
// the backend's device memory are handed to it through explicit copies (host_view / host_target,
// which alias on the CPU backend); ParamHome::partition_values() and load_target() of stages 1-3
// are host memory already.
#include <algorithm>

#include "engine_impl.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {

// The moments of the store for a checkpoint: its arrays, or (NVMe) a staging buffer of 2 x S.
struct Moments {
  float* m = nullptr;
  float* v = nullptr;
  Tensor staged;
};

Moments moments_of(zero::OptimizerStore& store, std::int64_t n, bool zeroed) {
  Moments x{store.exp_avg(), store.exp_avg_sq(), {}};
  if (x.m) return x;  // resident (device: see host_moments)
  const std::int64_t len = std::max<std::int64_t>(n, 1);
  x.staged = zeroed ? Tensor::zeros({2 * len}, DType::F32, MemCategory::Workspace)
                    : Tensor::empty({2 * len}, DType::F32, MemCategory::Workspace);
  x.m = x.staged.data<float>();
  x.v = x.m + len;
  return x;
}

}  // namespace

void ZeroEngine::save(const std::string& dir, const CheckpointState& st, int keep_last) {
  Impl& e = *impl_;
  Backend& be = e.model.backend();
  const auto tensors = checkpoint_tensors(e.ps.infos());
  const std::int64_t n = e.policy.replicated ? e.ps.size() : e.part.shard_size();  // moment space
  Tensor copy, values_host, m_host, v_host;
  const float* values = e.step->master() ? host_view(be, e.step->master(), n, values_host)
                        : e.policy.replicated ? host_view(be, e.params->partition_values(copy, e.spans), n, values_host)
                                              : e.params->partition_values(copy, e.spans);
  if (e.policy.replicated) {
    const std::int64_t end = e.comm.rank() == 0 ? e.ps.size() : 0;
    save_checkpoint(e.comm, dir, tensors, values, host_view(be, e.store->exp_avg(), n, m_host),
                    host_view(be, e.store->exp_avg_sq(), n, v_host), 0, end, st, keep_last);
    return;
  }
  Moments mv = moments_of(*e.store, e.part.shard_size(), false);
  if (mv.staged.defined()) agree_each(e.comm, [&] { e.store->read_moments(mv.m, mv.v); });  // verified reads
  const float* m = e.store->on_device() ? host_view(be, mv.m, n, m_host) : mv.m;
  const float* v = e.store->on_device() ? host_view(be, mv.v, n, v_host) : mv.v;
  save_checkpoint(e.comm, dir, tensors, values, m, v, e.part.owned_ranges(), st, keep_last);
}

CheckpointState ZeroEngine::load(const std::string& path) {
  Impl& e = *impl_;
  Backend& be = e.model.backend();
  const auto tensors = checkpoint_tensors(e.ps.infos());
  const std::int64_t n = e.policy.replicated ? e.ps.size() : e.part.shard_size();  // moment space
  Tensor copy, values_host, m_host, v_host;
  // Read into host buffers, then copied to the device (the CPU backend reads in place).
  float* device_values = e.step->master() ? e.step->master() : e.params->load_target(copy);
  const bool values_on_device = e.step->master() || e.policy.replicated;
  float* values = values_on_device ? host_target(be, device_values, n, values_host) : device_values;
  CheckpointState st;
  if (e.policy.replicated) {
    float* m = host_target(be, e.store->exp_avg(), n, m_host);
    float* v = host_target(be, e.store->exp_avg_sq(), n, v_host);
    st = load_checkpoint(e.comm, path, tensors, values, m, v, 0, e.ps.size());
    copy_to_device(be, e.store->exp_avg(), m, n);
    copy_to_device(be, e.store->exp_avg_sq(), v, n);
  } else {
    Moments mv = moments_of(*e.store, e.part.shard_size(), true);
    float *m = mv.m, *v = mv.v;
    if (e.store->on_device()) {
      m = host_target(be, mv.m, n, m_host);
      v = host_target(be, mv.v, n, v_host);
    }
    st = load_checkpoint(e.comm, path, tensors, values, m, v, e.part.owned_ranges());
    if (e.store->on_device()) {
      copy_to_device(be, mv.m, m, n);
      copy_to_device(be, mv.v, v, n);
    }
    if (mv.staged.defined()) agree_each(e.comm, [&] { e.store->write_moments(mv.m, mv.v); });
  }
  if (values_on_device) copy_to_device(be, device_values, values, n);
  if (e.step->master())
    e.step->master_to_compute();
  else
    e.params->loaded(copy, e.spans);
  e.params->regather();
  return st;
}

}  // namespace th
