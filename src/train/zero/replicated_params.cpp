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
  // two_byte: the compute copy in 2 bytes of type `compute` (the model allocated it so where configured to).
  WholeParams(Comm& comm, ParamStore<float>& ps, bool two_byte, DType compute) : comm_(comm), ps_(ps) {
    if (two_byte && !ps_.two_byte_values()) ps_.use_16bit_values(compute);
  }
  float* owned(const Piece& p) override { return half() ? nullptr : ps_.values() + p.begin; }
  std::uint16_t* owned16(const Piece& p) override { return half() ? ps_.values16() + p.begin : nullptr; }
  void initialize(std::uint64_t seed, const OwnedSpans& spans, float* master, DType compute) override {
    const std::int64_t P = ps_.size();
    Backend& be = ps_.backend();
    if (half()) {
      // 2-byte values: the fp32 initial values in a scratch buffer, master from it, then narrowed
      // (the bits rounding them in place would give).
      Tensor full = be.zeros({P}, DType::F32, MemCategory::Workspace);
      float* f = full.data<float>();
      ps_.initial_values(seed, f);
      broadcast_device(be, comm_, f, sizeof(float) * static_cast<std::size_t>(P), 0);  // rank 0's wins
      for (const OwnedSpan& s : spans) copy_device(be, master + s.shard, f + (s.value16 - ps_.values16()), s.n);
      be.narrow_16bit(ps_.values16_type(), ps_.values16(), f, P);
      ps_.widen_copies();
      return;
    }
    ps_.initialize(seed);
    broadcast_device(be, comm_, ps_.values(), sizeof(float) * static_cast<std::size_t>(P), 0);  // rank 0's wins
    if (!master) return;
    for (const OwnedSpan& s : spans) copy_device(be, master + s.shard, s.value, s.n);
    round_to_compute(be, compute, ps_.values(), P);
  }
  void regather() override { ps_.widen_copies(); }
  // Host reads of the device values: explicit copies (the CPU backend aliases); 2-byte values widened.
  std::vector<float> gather_values() override {
    std::vector<float> out(static_cast<std::size_t>(ps_.size()));
    if (half()) {
      Tensor wide = ps_.backend().empty({ps_.size()}, DType::F32, MemCategory::Workspace);
      ps_.backend().widen_16bit(ps_.values16_type(), wide.data<float>(), ps_.values16(), ps_.size());
      copy_to_host(ps_.backend(), out.data(), wide.data<float>(), ps_.size());
    } else {
      copy_to_host(ps_.backend(), out.data(), ps_.values(), ps_.size());
    }
    return out;
  }
  bool replicas_identical() override {
    if (half()) {  // widening is one-to-one on the bits
      const std::vector<float> v = gather_values();
      return th::replicas_identical(comm_, v.data(), ps_.size());
    }
    Tensor staging;
    return th::replicas_identical(comm_, host_view(ps_.backend(), ps_.values(), ps_.size(), staging), ps_.size());
  }
  const float* partition_values(Tensor&, const OwnedSpans&) override { return fp32_values(); }
  float* load_target(Tensor&) override { return fp32_values(); }

  bool two_byte() const override { return half(); }

 protected:
  bool half() const { return ps_.two_byte_values(); }
  float* fp32_values() const {  // checkpoints of fp32 runs only (mixed precision saves its master)
    TH_CHECK(!half(), "fp32 checkpoint values asked of a 2-byte compute copy");
    return ps_.values();
  }
  Comm& comm_;
  ParamStore<float>& ps_;
};

class GatheredParams final : public WholeParams {
 public:
  GatheredParams(Comm& comm, ParamStore<float>& ps, const ZeroPartition& part, float* grad_range, bool two_byte,
                 DType compute)
      : WholeParams(comm, ps, false, compute), part_(part) {
    if (grad_range) {  // stage 2: the values live here (2-byte: in the store), the gradients are the range
      if (!two_byte) values_ = ps.backend().zeros({ps.size()}, DType::F32, MemCategory::Parameters);
      ps.attach(two_byte ? nullptr : values_.data<float>(), grad_range);
    }  // stage 1: the model's own buffers
    if (two_byte && !ps_.two_byte_values()) ps_.use_16bit_values(compute);
  }
  float* owned(const Piece& p) override { return half() ? nullptr : ps_.values() + part_.owned(p); }
  std::uint16_t* owned16(const Piece& p) override { return half() ? ps_.values16() + part_.owned(p) : nullptr; }
  void regather() override {
    std::vector<CommRequestPtr> reqs;
    for (const Piece& p : part_.pieces()) {
      if (half()) {
        reqs.push_back(iall_gather_device_16bit(ps_.backend(), comm_, ps_.values16() + part_.owned(p),
                                                ps_.values16() + p.begin, static_cast<std::size_t>(p.count)));
      } else {
        reqs.push_back(iall_gather_device(ps_.backend(), comm_, ps_.values() + part_.owned(p), ps_.values() + p.begin,
                                          static_cast<std::size_t>(p.count)));
      }
    }
    for (auto& r : reqs) r->wait();
    ps_.widen_copies();
  }
  const float* partition_values(Tensor& scratch, const OwnedSpans& spans) override {
    fp32_values();
    // Host memory (the checkpoint writes it): device -> host copies of the owned slices.
    scratch = ps_.backend().empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace,
                                  MemorySpace::Host);
    for (const OwnedSpan& s : spans) copy_to_host(ps_.backend(), scratch.data<float>() + s.shard, s.value, s.n);
    return scratch.data<float>();
  }
  float* load_target(Tensor& scratch) override {
    fp32_values();
    scratch = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    return scratch.data<float>();
  }
  void loaded(const Tensor& scratch, const OwnedSpans& spans) override {
    fp32_values();
    for (const OwnedSpan& s : spans) copy_to_device(ps_.backend(), s.value, scratch.data<float>() + s.shard, s.n);
  }

 private:
  const ZeroPartition& part_;
  Tensor values_;  // stage 2: the full buffer (the model's gradients are the reduction's range)
};

}  // namespace

std::unique_ptr<ParamHome> make_param_home(const StagePolicy& policy, Comm& comm, Transformer<float>& model,
                                           const ZeroPartition& part, const ZeroOptions& opt, float* grad_range) {
  // The 2-byte compute copy: bf16 or fp16, asked for, and a backend whose kernels take bf16 operands.
  const bool two_byte = opt.compute != DType::F32 && opt.two_byte_params &&
                        model.backend().kernels<float>().bf16_operands();
  if (policy.replicated) return std::make_unique<WholeParams>(comm, model.params(), two_byte, opt.compute);
  if (!policy.params_partitioned)
    return std::make_unique<GatheredParams>(comm, model.params(), part, grad_range, two_byte, opt.compute);
  return make_partitioned_params(comm, model, part, opt, grad_range, two_byte);
}

}  // namespace th::zero
