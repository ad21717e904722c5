#include <cmath>

#include "host_loop.hpp"
#include "th/kernels/cpu.hpp"

namespace th::cpu {

template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, std::int64_t t) {
  const T b1 = T(beta1), b2 = T(beta2);
  const T bc1 = T(1.0 - std::pow(beta1, static_cast<double>(t)));
  const T bc2_sqrt = T(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
  const T step = T(lr) / bc1, decay = T(1.0 - lr * weight_decay), e = T(eps);
  host_for("AdamW::update", n, [=](std::int64_t i) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (std::sqrt(vi) / bc2_sqrt + e);
  });
}

template void adamw_update<float>(float*, const float*, float*, float*, std::int64_t, double, double,
                                  double, double, double, std::int64_t);
template void adamw_update<double>(double*, const double*, double*, double*, std::int64_t, double,
                                   double, double, double, double, std::int64_t);

}  // namespace th::cpu
