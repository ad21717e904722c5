#pragma once
// Loss scaling for fp16 training (DeepSpeed's DynamicLossScaler semantics, scale factor 2).
// The loss is multiplied by scale() before backward; after the gradients are reduced the ranks
// agree whether any of them overflowed (Comm::any_true) and hand that one decision to update():
//
//   overflow  the step is skipped (no optimizer update). With hysteresis h, the first h - 1
//             overflows only use up the tolerance; the h-th (and every later one until the
//             next doubling) halves the scale, never below min_scale.
//   clean     counts towards the window; after `window` consecutive clean steps the scale
//             doubles and the hysteresis tolerance is restored.
//   floor     an overflow while the scale is already at min_scale (or static) counts as a
//             step stuck at the floor; max_skipped such steps in a row stop the run (th::Error).
//
// Static scaling (loss_scale > 0): the scale never changes; overflowing steps are skipped and
// count as stuck at the floor. Without scaling (fp32, bf16): scale 1, update() is never needed.
// The state is plain numbers, identical on every rank (the inputs are agreed), and goes into
// checkpoints so that a resumed run scales exactly as the uninterrupted one.
#include <cstdint>

namespace th {

struct LossScalerOptions {
  double static_scale = 0;    // > 0: static scale; 0: dynamic
  int initial_power = 16;     // dynamic: starts at 2^initial_power
  int window = 1000;          // clean steps before doubling
  int hysteresis = 2;         // overflows tolerated before halving
  double min_scale = 1;       // floor of the dynamic scale
  int max_skipped_steps = 20; // consecutive overflowing steps at the floor before stopping
};

class LossScaler {
 public:
  LossScaler() = default;  // no scaling: scale 1
  explicit LossScaler(const LossScalerOptions& opt);

  struct State {
    double scale = 1;
    std::int64_t clean_steps = 0;      // consecutive clean steps since the last overflow or doubling
    std::int64_t hysteresis_left = 1;  // overflows left before the next halving
    std::int64_t floor_overflows = 0;  // consecutive overflowing steps at the floor
    std::int64_t skipped_steps = 0;    // total steps skipped
  };

  bool enabled() const { return enabled_; }
  double scale() const { return st_.scale; }
  const State& state() const { return st_; }
  void restore(const State& s) { st_ = s; }

  // One step's agreed overflow decision (`step`: its 1-based number, for the message). Returns
  // whether the step must be skipped. Throws th::Error when the scale is stuck at its floor.
  bool update(bool overflow, std::int64_t step);

 private:
  LossScalerOptions opt_;
  bool enabled_ = false, dynamic_ = false;
  State st_;
};

}  // namespace th
