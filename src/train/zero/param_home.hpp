#pragma once
// Where the parameters live, and how the values every rank needs whole are made whole again:
//
//   WholeParams        (stage 0)    the model's buffer, replicated; nothing to gather
//   GatheredParams     (stages 1-2) the full buffer on every rank (stage 2: allocated here, the
//                                   model's gradients being the reduction's range); after an
//                                   update each rank's owned slices are all-gathered
//   PartitionedParams  (stage 3)    the rank's partition (host, or a file of parallel%nvme_path),
//                                   gathered unit by unit into a reserved full-size range by the
//                                   Gatherer (gatherer.hpp); only persistent units stay whole
//
// Mixed precision: the working values are the 16-bit compute copy; the fp32 master lives with
// the optimizer step (optimizer_step.hpp) in owned-span layout.
#include <cstdint>
#include <memory>
#include <vector>

#include "owned_span.hpp"
#include "stage_policy.hpp"
#include "th/core/tensor.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/offload.hpp"
#include "th/train/zero.hpp"

namespace th::zero {

class ParamHome {
 public:
  virtual ~ParamHome() = default;
  // The rank's values of piece p, updated in place by the optimizer (nullptr: in a file).
  virtual float* owned(const ZeroPartition::Piece& p) = 0;
  // The same in the 2-byte compute copy (ZeroOptions::two_byte_params; nullptr otherwise).
  virtual std::uint16_t* owned16(const ZeroPartition::Piece& /*p*/) { return nullptr; }
  virtual bool two_byte() const { return false; }
  // Initial values from the seed, identical on every rank. Mixed precision (`master` set): the
  // master's spans get the fp32 values, the working values are rounded to `compute`.
  virtual void initialize(std::uint64_t seed, const OwnedSpans& spans, float* master, DType compute) = 0;
  // After the owned values changed (update, load): the values every rank keeps whole, gathered.
  virtual void regather() {}
  virtual std::vector<float> gather_values() = 0;  // the full flat vector on every rank (collective)
  virtual bool replicas_identical() = 0;           // what is replicated agrees bitwise over ranks
  // Checkpoints of fp32 runs: the rank's values in partition layout (stage 0: the whole buffer),
  // where they are, or copied into `scratch`; load_target(): where the loaded values go, and
  // loaded() puts them in place.
  virtual const float* partition_values(Tensor& scratch, const OwnedSpans& spans) = 0;
  virtual float* load_target(Tensor& scratch) = 0;
  virtual void loaded(const Tensor& /*scratch*/, const OwnedSpans& /*spans*/) {}
  // offload_param = 'nvme': the partition file (else nullptr); write_partition() writes the
  // partition `x` (rounded to `compute` unless F32) as its next generation, agreed over ranks.
  virtual ChunkFile* file() { return nullptr; }
  // The owned values are host memory the backend's kernels cannot reach (stage 3 offload_param
  // = 'cpu' on a device backend): the optimizer step reaches them by copies and host loops.
  virtual bool owned_on_host() const { return false; }
  virtual void write_partition(const float* /*x*/, DType /*compute*/) {}
  // Stage 3's gatherer: drop what was gathered ahead; the first step's order is complete.
  virtual void drop_prefetched() {}
  virtual void order_recorded() {}
  virtual bool collective_forward() const { return false; }
  virtual void add_offload(ZeroMemory& /*m*/) const {}  // offloaded parameter bytes
};

// `grad_range`: the reduction's full-size gradient range (stages 2-3, the model's parameters
// then live in storage given here), nullptr: the model's own buffers.
std::unique_ptr<ParamHome> make_param_home(const StagePolicy& policy, Comm& comm, Transformer<float>& model,
                                           const ZeroPartition& part, const ZeroOptions& opt, float* grad_range);

// Stage 3 (partitioned_params.cpp).
// two_byte: the compute copy in 2 bytes (mixed precision, a backend taking bf16 operands).
std::unique_ptr<ParamHome> make_partitioned_params(Comm& comm, Transformer<float>& model, const ZeroPartition& part,
                                                   const ZeroOptions& opt, float* grad_range, bool two_byte);

}  // namespace th::zero
