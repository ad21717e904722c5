#pragma once
// AdamW over a flat parameter buffer, the learning-rate schedules, and global-norm clipping.
#include <cstdint>
#include <string>

#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"

namespace th {

struct AdamWConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Linear warmup over `warmup` steps to `base_lr`, then: inverse_sqrt (base_lr*sqrt(warmup/step)),
// cosine (to min_lr_ratio*base_lr at total_steps), or constant. Steps count from 1.
class LRSchedule {
 public:
  LRSchedule(std::string kind, double base_lr, std::int64_t warmup, std::int64_t total_steps,
             double min_lr_ratio);
  double at(std::int64_t step) const;

 private:
  std::string kind_;
  double base_, min_ratio_;
  std::int64_t warmup_, total_;
};

template <typename T>
class AdamW {
 public:
  // Moments in the backend's device memory (OptimizerState category); the update is its kernel.
  AdamW(std::int64_t n, const AdamWConfig& cfg, Backend& backend = cpu_backend());
  void step(T* params, const T* grads, double lr);  // one update, t += 1
  // The same in pieces (a ZeRO partition): next_step() (t += 1), then update() of each piece,
  // moments [offset, offset + n) with params[0, n) and grads[0, n).
  void next_step() { ++t_; }
  void update(T* params, const T* grads, std::int64_t offset, std::int64_t n, double lr);
  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }  // resuming: the bias corrections continue from t
  T* exp_avg() const { return m_.data<T>(); }
  T* exp_avg_sq() const { return v_.data<T>(); }

 private:
  std::int64_t n_, t_ = 0;
  AdamWConfig cfg_;
  Backend& be_;
  Tensor m_, v_;
};

// Scales grads so their global L2 norm is at most max_norm (PyTorch clip_grad_norm_ rule:
// factor max_norm / (norm + 1e-6) when below 1). `sum_sq` is the already reduced sum of squares
// (all ranks' shards); returns the norm before clipping. max_norm <= 0: only measure.
// `grads` is in the backend's device memory.
template <typename T>
double clip_by_global_norm(T* grads, std::int64_t n, double sum_sq, double max_norm, Backend& backend = cpu_backend());
// The factor clip_by_global_norm scales by: max_norm / (norm + 1e-6) where that is below 1 (and
// max_norm > 0, the norm finite), else 1.
double clip_factor(double sum_sq, double max_norm);

}  // namespace th
