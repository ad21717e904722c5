#pragma once
// The AdamW update of one element, shared by every loop that runs it (th::cpu::adamw_update on
// the rank's moments, th::offload's host and NVMe loops on offloaded moments), so the formula is
// written once; host-device code, so the CUDA kernel (src/kernels/cuda/adamw.cu) runs it too. The
// per-step constants are computed in double on the host and rounded to T.
#include <cmath>
#include <cstdint>

#include "th/kernels/element_rules.hpp"

namespace th::cpu {

template <typename T>
struct AdamWCoefficients {
  T b1, b2, bc2_sqrt, step, decay, eps;
  // PyTorch semantics, step t >= 1: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
  static AdamWCoefficients make(double lr, double beta1, double beta2, double eps, double weight_decay,
                                std::int64_t t) {
    const T bc1 = T(1.0 - std::pow(beta1, static_cast<double>(t)));
    return {T(beta1), T(beta2), T(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t)))), T(lr) / bc1,
            T(1.0 - lr * weight_decay), T(eps)};
  }
  TH_HOST_DEVICE void operator()(T& p, T g, T& m, T& v) const {
    const T mi = b1 * m + (T(1) - b1) * g;
    const T vi = b2 * v + (T(1) - b2) * g * g;
    m = mi;
    v = vi;
    p = p * decay - step * mi / (rules::sqrt_of(vi) / bc2_sqrt + eps);
  }
};

}  // namespace th::cpu
