#include <cmath>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/adamw_element.hpp"
#include "th/kernels/cpu.hpp"

namespace th::cpu {

template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, std::int64_t t) {
  const auto c = AdamWCoefficients<T>::make(lr, beta1, beta2, eps, weight_decay, t);
  host_for("AdamW::update", n, [=](std::int64_t i) { c(p[i], g[i], m[i], v[i]); });
}

template void adamw_update<float>(float*, const float*, float*, float*, std::int64_t, double, double,
                                  double, double, double, std::int64_t);
template void adamw_update<double>(double*, const double*, double*, double*, std::int64_t, double,
                                   double, double, double, double, std::int64_t);

}  // namespace th::cpu
