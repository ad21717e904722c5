// Stages 0-2: every rank holds the full parameter buffer (param_home.hpp).
#include <algorithm>
#include <cstring>

#include "param_home.hpp"
#include "precision.hpp"
#include "th/parallel/replica_check.hpp"
#include "th/train/device_comm.hpp"

namespace th::zero {

namespace {

using Piece = ZeroPartition::Piece;

class WholeParams : public ParamHome {
 public:
  WholeParams(Comm& comm, ParamStore<float>& ps) : comm_(comm), ps_(ps) {}
  float* owned(const Piece& p) override { return ps_.values() + p.begin; }
  void initialize(std::uint64_t seed, const OwnedSpans& spans, float* master, DType compute) override {
    const std::int64_t P = ps_.size();
    ps_.initialize(seed);
    broadcast_device(ps_.backend(), comm_, ps_.values(), sizeof(float) * static_cast<std::size_t>(P), 0);  // rank 0's wins
    if (!master) return;
    for (const OwnedSpan& s : spans) copy_device(ps_.backend(), master + s.shard, s.value, s.n);
    round_to_compute(ps_.backend(), compute, ps_.values(), P);
  }
  // Host reads of the device values: explicit copies (the CPU backend aliases).
  std::vector<float> gather_values() override {
    std::vector<float> out(static_cast<std::size_t>(ps_.size()));
    copy_to_host(ps_.backend(), out.data(), ps_.values(), ps_.size());
    return out;
  }
  bool replicas_identical() override {
    Tensor staging;
    return th::replicas_identical(comm_, host_view(ps_.backend(), ps_.values(), ps_.size(), staging), ps_.size());
  }
  const float* partition_values(Tensor&, const OwnedSpans&) override { return ps_.values(); }
  float* load_target(Tensor&) override { return ps_.values(); }

 protected:
  Comm& comm_;
  ParamStore<float>& ps_;
};

class GatheredParams final : public WholeParams {
 public:
  GatheredParams(Comm& comm, ParamStore<float>& ps, const ZeroPartition& part, float* grad_range)
      : WholeParams(comm, ps), part_(part) {
    if (!grad_range) return;  // stage 1: the model's own buffers
    values_ = ps.backend().zeros({ps.size()}, DType::F32, MemCategory::Parameters);
    ps.attach(values_.data<float>(), grad_range);
  }
  float* owned(const Piece& p) override { return ps_.values() + part_.owned(p); }
  void regather() override {
    std::vector<CommRequestPtr> reqs;
    for (const Piece& p : part_.pieces())
      reqs.push_back(iall_gather_device(ps_.backend(), comm_, ps_.values() + part_.owned(p), ps_.values() + p.begin,
                                        static_cast<std::size_t>(p.count)));
    for (auto& r : reqs) r->wait();
  }
  const float* partition_values(Tensor& scratch, const OwnedSpans& spans) override {
    // Host memory (the checkpoint writes it): device -> host copies of the owned slices.
    scratch = ps_.backend().empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace,
                                  MemorySpace::Host);
    for (const OwnedSpan& s : spans) copy_to_host(ps_.backend(), scratch.data<float>() + s.shard, s.value, s.n);
    return scratch.data<float>();
  }
  float* load_target(Tensor& scratch) override {
    scratch = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    return scratch.data<float>();
  }
  void loaded(const Tensor& scratch, const OwnedSpans& spans) override {
    for (const OwnedSpan& s : spans) copy_to_device(ps_.backend(), s.value, scratch.data<float>() + s.shard, s.n);
  }

 private:
  const ZeroPartition& part_;
  Tensor values_;  // stage 2: the full buffer (the model's gradients are the reduction's range)
};

}  // namespace

std::unique_ptr<ParamHome> make_param_home(const StagePolicy& policy, Comm& comm, Transformer<float>& model,
                                           const ZeroPartition& part, const ZeroOptions& opt, float* grad_range) {
  if (policy.replicated) return std::make_unique<WholeParams>(comm, model.params());
  if (!policy.params_partitioned) return std::make_unique<GatheredParams>(comm, model.params(), part, grad_range);
  return make_partitioned_params(comm, model, part, opt, grad_range);
}

}  // namespace th::zero
