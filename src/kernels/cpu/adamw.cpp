#include <algorithm>
#include <cmath>
#include <type_traits>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/adamw_element.hpp"
#include "th/kernels/cpu.hpp"
#include "cpu/isa_clones.hpp"

namespace th::cpu {

namespace {
// The fp32 loop, one clone per ISA level (isa_clones.hpp); this file is compiled without FMA
// contraction, so every clone gives the bits of the element rule that the offload loops run.
TH_ISA_CLONES void adamw_rows(float* p, const float* g, float* m, float* v, std::int64_t n,
                              const AdamWCoefficients<float>& c) {
  for (std::int64_t i = 0; i < n; ++i) c(p[i], g[i], m[i], v[i]);
}
}  // namespace

template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, std::int64_t t) {
  const auto c = AdamWCoefficients<T>::make(lr, beta1, beta2, eps, weight_decay, t);
  if constexpr (std::is_same_v<T, float>) {
    constexpr std::int64_t kChunk = 16384;
    host_for("AdamW::update", (n + kChunk - 1) / kChunk, [=](std::int64_t k) {
      const std::int64_t i0 = k * kChunk, len = std::min(kChunk, n - i0);
      adamw_rows(p + i0, g + i0, m + i0, v + i0, len, c);
    });
  } else {
    host_for("AdamW::update", n, [=](std::int64_t i) { c(p[i], g[i], m[i], v[i]); });
  }
}

template void adamw_update<float>(float*, const float*, float*, float*, std::int64_t, double, double,
                                  double, double, double, std::int64_t);
template void adamw_update<double>(double*, const double*, double*, double*, std::int64_t, double,
                                   double, double, double, double, std::int64_t);

}  // namespace th::cpu
