#pragma once
// The gradient reduction: how backward's gradients become each rank's reduced gradients, in
// buckets that overlap backward (th/train/grad_sync.hpp). One implementation per kind:
//
//   AllReduce        (stage 0)    buckets of bucket_mb all-reduced and averaged in the model's buffer
//   ScatterInPlace   (stage 1)    each segment reduce-scattered in place, the rank's sum moved to
//                                 its own place in the model's buffer, on the last micro-batch only
//   ScatterPartition (stages 2-3) each segment reduce-scattered every micro-batch and accumulated
//                                 into the rank's partition; the full-size range is a reserved
//                                 range whose bucket pages are given back once reduced
//
//   TwoByte          (bf16/fp16, one micro-batch per step) the gradients kept in 2 bytes: backward
//                    writes each unit's into an fp32 window (a reserved range backed parameter
//                    by parameter from writing_range(), never a whole unit at once), which is
//                    rounded into 2-byte storage and given back as soon as it is final; the buckets are reduced as they are, and the optimizer widens
//                    them chunk by chunk (owned16). The 2-byte storage: stages 0-1 a full-size
//                    buffer (all-reduced, or reduce-scattered in place); stages 2-3 a full-size
//                    reserved range whose bucket pages are given back once reduce-scattered into
//                    the rank's 2-byte partition
//
// Mixed precision: each rank's gradients are rounded to the compute type as backward hands them
// to the reduction (accumulation and sums stay fp32).
#include <cstdint>
#include <memory>

#include "reserved_range.hpp"
#include "stage_policy.hpp"
#include "th/core/tensor.hpp"
#include "th/model/params.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/zero.hpp"

namespace th::zero {

class GradReduction {
 public:
  virtual ~GradReduction() = default;
  virtual void zero_grad() = 0;
  void begin_backward(bool last_micro_batch);
  void grads_ready(std::int64_t watermark);  // the model's hook: grads[watermark, P) are final
  void finish();
  // The rank's reduced gradients of piece p (partition layout): what the optimizer reads.
  // nullptr where they are kept in 2 bytes: owned16.
  virtual float* owned(const ZeroPartition::Piece& p) = 0;
  virtual std::uint16_t* owned16(const ZeroPartition::Piece&) { return nullptr; }
  // The gradients kept in 2 bytes (TwoByte): then the reduced gradients are sums over ranks even
  // at stage 0 (the optimizer divides as it widens them).
  virtual bool two_byte() const { return false; }
  // The full-size gradient range backward writes (reserved, stages 2-3), nullptr: the model's own.
  virtual float* working() { return nullptr; }
  // Stages 2-3: what backs the gradient range before backward writes a unit's gradients.
  virtual GradAccess* grad_access() { return nullptr; }
  GradientSync& sync() { return *sync_; }
  // Builds the bucket machinery; last in the engine's construction (as the profiler tracks go).
  // 16-bit runs put the buckets on the wire in the compute type (GradientSync::set_wire_type).
  void init_sync(Comm& comm, const ZeroOptions& opt) {
    sync_ = make_sync(comm, opt);
    if (compute_ != DType::F32) sync_->set_wire_type(compute_);
  }

 protected:
  GradReduction(ParamStore<float>& ps, DType compute) : ps_(ps), compute_(compute) {}
  virtual std::unique_ptr<GradientSync> make_sync(Comm& comm, const ZeroOptions& opt) = 0;
  // Stages 2-3 reduce every micro-batch (the full gradient is never kept); 0-1 only the last.
  virtual bool reduce_every_micro_batch() const { return false; }
  virtual void account() {}        // the pages of the full-size range resident now
  virtual void after_finish() {}
  // Gradients [w, end) are final and go to the reduction: 16-bit runs round them (default).
  virtual void finalize(std::int64_t w, std::int64_t end);
  virtual void begin_sync(bool communicating) { sync_->begin_backward(ps_.grads(), communicating); }

  ParamStore<float>& ps_;
  DType compute_;
  std::unique_ptr<GradientSync> sync_;

 private:
  std::int64_t rounded_from_ = 0;  // mixed precision: gradients [rounded_from_, P) are rounded
  bool communicating_ = false;
};

// The reduction a stage uses (the sync itself is built by init_sync(), after the parameters).
// two_byte: the model's gradients are kept in 2 bytes (ModelSpec::two_byte_grads; at stages 0-1
// the model allocated no gradient buffer): TwoByte.
std::unique_ptr<GradReduction> make_grad_reduction(const StagePolicy& policy, ParamStore<float>& ps,
                                                   const ZeroPartition& part, DType compute, bool two_byte);

}  // namespace th::zero
