#include "th/train/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "th/core/error.hpp"

namespace th {

LRSchedule::LRSchedule(std::string kind, double base_lr, std::int64_t warmup, std::int64_t total_steps,
                       double min_lr_ratio)
    : kind_(std::move(kind)), base_(base_lr), min_ratio_(min_lr_ratio), warmup_(warmup), total_(total_steps) {
  TH_CHECK(kind_ == "inverse_sqrt" || kind_ == "cosine" || kind_ == "constant", "unknown schedule " + kind_);
}

double LRSchedule::at(std::int64_t step) const {
  step = std::max<std::int64_t>(step, 1);
  if (warmup_ > 0 && step <= warmup_) return base_ * static_cast<double>(step) / static_cast<double>(warmup_);
  if (kind_ == "inverse_sqrt")
    return base_ * std::sqrt(static_cast<double>(std::max<std::int64_t>(warmup_, 1)) / static_cast<double>(step));
  if (kind_ == "cosine") {
    const double span = static_cast<double>(std::max<std::int64_t>(total_ - warmup_, 1));
    const double progress = std::min(1.0, static_cast<double>(step - warmup_) / span);
    return base_ * (min_ratio_ + (1.0 - min_ratio_) * 0.5 * (1.0 + std::cos(M_PI * progress)));
  }
  return base_;
}

template <typename T>
AdamW<T>::AdamW(std::int64_t n, const AdamWConfig& cfg, Backend& backend)
    : n_(n), cfg_(cfg), be_(backend),
      m_(backend.zeros({n}, dtype_of<T>(), MemCategory::OptimizerState)),
      v_(backend.zeros({n}, dtype_of<T>(), MemCategory::OptimizerState)) {}

template <typename T> void AdamW<T>::step(T* params, const T* grads, double lr) {
  next_step();
  update(params, grads, 0, n_, lr);
}

template <typename T>
void AdamW<T>::update(T* params, const T* grads, std::int64_t offset, std::int64_t n, double lr) {
  TH_CHECK(offset >= 0 && offset + n <= n_, "AdamW update outside the moments");
  be_.kernels<T>().adamw_update(params, grads, m_.data<T>() + offset, v_.data<T>() + offset, n, lr, cfg_.beta1,
                                cfg_.beta2, cfg_.eps, cfg_.weight_decay, t_);
}

template <typename T>
double clip_by_global_norm(T* grads, std::int64_t n, double sum_sq, double max_norm, Backend& backend) {
  const double factor = clip_factor(sum_sq, max_norm);
  if (factor < 1.0) backend.kernels<T>().scale_inplace(grads, static_cast<T>(factor), n);
  return std::sqrt(sum_sq);
}

double clip_factor(double sum_sq, double max_norm) {
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && std::isfinite(norm)) return std::min(1.0, max_norm / (norm + 1e-6));
  return 1.0;
}

template class AdamW<float>;
template class AdamW<double>;
template double clip_by_global_norm<float>(float*, std::int64_t, double, double, Backend&);
template double clip_by_global_norm<double>(double*, std::int64_t, double, double, Backend&);

}  // namespace th
