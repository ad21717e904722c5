#include "th/train/loss_scaler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "th/core/error.hpp"

namespace th {

LossScaler::LossScaler(const LossScalerOptions& opt) : opt_(opt), enabled_(true), dynamic_(opt.static_scale <= 0) {
  st_.scale = dynamic_ ? std::ldexp(1.0, opt.initial_power) : opt.static_scale;
  st_.hysteresis_left = opt.hysteresis;
}

bool LossScaler::update(bool overflow, std::int64_t step) {
  if (!enabled_) return overflow;
  if (!overflow) {
    st_.floor_overflows = 0;
    if (dynamic_ && ++st_.clean_steps >= opt_.window) {
      st_.scale *= 2;
      st_.clean_steps = 0;
      st_.hysteresis_left = opt_.hysteresis;
    }
    return false;
  }
  ++st_.skipped_steps;
  st_.clean_steps = 0;
  const bool at_floor = !dynamic_ || st_.scale <= opt_.min_scale;
  if (at_floor) {
    if (++st_.floor_overflows >= opt_.max_skipped_steps) {
      char scale[32];
      std::snprintf(scale, sizeof scale, "%g", st_.scale);
      throw Error("fp16 gradients overflowed at loss scale " + std::string(scale) + (dynamic_ ? " (the floor, "
                  "precision%min_loss_scale)" : " (static, precision%loss_scale)") + " in " +
                  std::to_string(st_.floor_overflows) + " consecutive steps up to step " + std::to_string(step) +
                  " (precision%max_skipped_steps): the model or the data produce values fp16 cannot hold; lower "
                  "optim%lr, " + (dynamic_ ? "lower precision%min_loss_scale" : "lower precision%loss_scale") +
                  ", or use precision%dtype = 'bf16'");
    }
  } else {
    st_.floor_overflows = 0;
  }
  if (!dynamic_) return true;
  if (st_.hysteresis_left > 1)
    --st_.hysteresis_left;
  else
    st_.scale = std::max(st_.scale / 2, opt_.min_scale);
  return true;
}

}  // namespace th
