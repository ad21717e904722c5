#pragma once
// The optimizer step over the rank's owned spans: averaging and clipping the reduced gradients,
// the overflow check, the AdamW update through the optimizer-state store, and the fp32 master
// copy of mixed precision.
//
// In fp32 there is no separate master copy: the optimizer updates the fp32 parameters themselves
// (stage 0: the whole buffer, stages 1-2: the rank's slices of it, stage 3: its partition), then
// the parameter home gathers what ranks keep whole. Mixed precision (compute = BF16 / F16): the
// optimizer keeps an fp32 master copy of the owned spans (counted as optimizer state), and after
// every update (and at initialization and load) the master values are rounded to the compute
// type into the parameters. Checkpoints hold the master values.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "owned_span.hpp"
#include "optimizer_store.hpp"
#include "param_home.hpp"
#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"
#include "th/parallel/comm.hpp"

namespace th::zero {

class OptimizerStep {
 public:
  // `summed_over`: how many ranks' gradients the reduced gradients are the sum of (1: averaged
  // already, stage 0); their squares are then summed over ranks too (each rank owns a part).
  // `divide_by`: what the gradients are divided by to average them (summed_over, or the world
  // size where a stage-0 reduction leaves sums: 2-byte gradients).
  // `moments`: elements of the moment space (the master's size).
  // `backend`: the model's (the spans' gradients and values, and the master, are in its device
  // memory; the offloaded store works on host copies of them).
  OptimizerStep(Comm& comm, const OwnedSpans& spans, ParamHome& params, OptimizerStore& store, DType compute,
                int summed_over, int divide_by, std::int64_t moments, Backend& backend);

  float* master() { return master_.defined() ? master_.data<float>() : nullptr; }
  double clip_and_norm(double max_norm, double loss_scale);
  bool local_overflow() const;
  void inject_overflow();
  void update(double lr);
  void skip_update();
  // Mixed precision: the owned working values from the master copy (rounded).
  void master_to_compute();

 private:
  // Offloaded moments on a device backend: the spans' gradients and values come down on the copy
  // stream into pinned buffers, are updated on the host as they arrive and go back up on it.
  void update_offloaded_streamed(float* master, double lr);
  // 2-byte gradients (OwnedSpan::grad16): elements [i, i + m) of span s widened into the chunk
  // buffer (bf16 or fp16, the compute type), with the scalings clip_and_norm decided applied in
  // the order the fp32 path applies them in place (the same bits; `scaled` false: as reduced);
  // m <= kChunk.
  static constexpr std::int64_t kChunk = 1 << 16;
  float* widened(const OwnedSpan& s, std::int64_t i, std::int64_t m, bool scaled = true) const;
  template <typename F> void each_chunk(const OwnedSpan& s, F&& f) const {
    for (std::int64_t i = 0; i < s.n; i += kChunk) f(i, std::min(kChunk, s.n - i));
  }

  Comm& comm_;
  Backend& be_;
  const OwnedSpans& spans_;
  ParamHome& params_;
  OptimizerStore& store_;
  DType compute_;
  int summed_over_, divide_by_;
  Tensor master_;  // mixed precision: fp32 master of the owned spans
  Tensor chunk_;   // 2-byte gradients: kChunk fp32 elements
  std::vector<float> pending_;  // 2-byte gradients: the scalings of this step, in order
};

}  // namespace th::zero
