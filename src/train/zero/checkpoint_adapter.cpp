// The checkpoint adapter: what the engine hands to io/checkpoint (docs/checkpoint-format.md).
// Replicated (stage 0): every rank holds everything, rank 0 writes it all. Partitioned (stages
// 1-3): every rank writes / reads its partition as slices of the global datasets: parameters in
// partition layout (the fp32 master with mixed precision), moments as they are (offloaded to the
// NVMe file: through a staging buffer).
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
  if (x.m) return x;
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
  const auto tensors = checkpoint_tensors(e.ps.infos());
  Tensor copy;
  const float* values = e.step->master() ? e.step->master() : e.params->partition_values(copy, e.spans);
  if (e.policy.replicated) {
    const std::int64_t end = e.comm.rank() == 0 ? e.ps.size() : 0;
    save_checkpoint(e.comm, dir, tensors, values, e.store->exp_avg(), e.store->exp_avg_sq(), 0, end, st, keep_last);
    return;
  }
  Moments mv = moments_of(*e.store, e.part.shard_size(), false);
  if (mv.staged.defined()) agree_each(e.comm, [&] { e.store->read_moments(mv.m, mv.v); });  // verified reads
  save_checkpoint(e.comm, dir, tensors, values, mv.m, mv.v, e.part.owned_ranges(), st, keep_last);
}

CheckpointState ZeroEngine::load(const std::string& path) {
  Impl& e = *impl_;
  const auto tensors = checkpoint_tensors(e.ps.infos());
  Tensor copy;
  float* values = e.step->master() ? e.step->master() : e.params->load_target(copy);
  CheckpointState st;
  if (e.policy.replicated) {
    st = load_checkpoint(e.comm, path, tensors, values, e.store->exp_avg(), e.store->exp_avg_sq(), 0, e.ps.size());
  } else {
    Moments mv = moments_of(*e.store, e.part.shard_size(), true);
    st = load_checkpoint(e.comm, path, tensors, values, mv.m, mv.v, e.part.owned_ranges());
    if (mv.staged.defined()) agree_each(e.comm, [&] { e.store->write_moments(mv.m, mv.v); });
  }
  if (e.step->master())
    e.step->master_to_compute();
  else
    e.params->loaded(copy, e.spans);
  e.params->regather();
  return st;
}

}  // namespace th
