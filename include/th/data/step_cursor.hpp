#pragma once
// Where a training loader stands in its epochs, shared by TrainLoader (pairs) and PackedLoader
// (packed LM blocks). A loader prefetches one optimizer step ahead, so there are two positions:
// the step last given out (epoch, step_in_epoch = how many steps of that epoch were given) and
// the step being prefetched (next_epoch, next_step). When the current epoch is used up the
// prefetched step is step 0 of the next epoch, and the sampler is moved to that epoch right
// then (it plans the step being prefetched).
#include <algorithm>
#include <cstdint>

#include "th/data/batch_source.hpp"

namespace th {

struct StepCursor {
  std::int64_t epoch = 0, step_in_epoch = 0;  // the last step given out
  std::int64_t next_epoch = 0, next_step = 0;  // the step being prefetched

  // Chooses the step to prefetch after the last one given; `epoch_steps` counts the steps of the
  // current epoch. Calls sampler.set_epoch() on a roll-over. Returns the step (in next_epoch).
  template <typename Sampler> std::int64_t plan_next(std::int64_t epoch_steps, Sampler& sampler) {
    if (step_in_epoch >= epoch_steps) {
      next_epoch = epoch + 1;
      next_step = 0;
      sampler.set_epoch(next_epoch);
    } else {
      next_epoch = epoch;
      next_step = step_in_epoch;
    }
    return next_step;
  }
  // The prefetched step is given out; true when it opened a new epoch.
  bool advance() {
    const bool new_epoch = next_epoch != epoch;
    epoch = next_epoch;
    step_in_epoch = next_step + 1;
    return new_epoch;
  }
  // Continue after `s` (a checkpoint's sampler state); the sampler is set to its epoch. A step
  // count past the epoch's end counts as its end: after world size x grad_accum changed, the
  // epoch is planned for the new product and can hold a few steps fewer than the saved position.
  template <typename Sampler> void restore(const BatchSource::State& s, Sampler& sampler) {
    sampler.set_epoch(s.epoch);
    epoch = s.epoch;
    step_in_epoch = std::min(s.step_in_epoch, sampler.steps());
  }
  BatchSource::State state() const { return {epoch, step_in_epoch}; }
};

}  // namespace th
