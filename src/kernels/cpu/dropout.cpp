#include "th/kernels/host_loop.hpp"
#include "th/core/rng.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cpu {

// The mask and the arithmetic: th/kernels/element_rules.hpp (the CUDA kernels use the same).
float dropout_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return rules::dropout_uniform(seed, stream, i);
}

template <typename T>
void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream) {
  if (p <= 0.0f) {
    if (y != x) host_for("Dropout::copy", n, [=](std::int64_t i) { y[i] = x[i]; });
    return;
  }
  const T keep_scale = T(1) / (T(1) - T(p));
  host_for("Dropout::forward", n, [=](std::int64_t i) {
    y[i] = rules::dropout_value(x[i], rules::dropout_keep(seed, stream, static_cast<std::uint64_t>(i), p), keep_scale);
  });
}

template <typename T>
void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                 std::uint64_t stream) {
  if (p <= 0.0f) {
    add(y, x, f, n);
    return;
  }
  const T keep_scale = T(1) / (T(1) - T(p));
  host_for("Dropout::residual_add", n, [=](std::int64_t i) {
    y[i] = rules::dropout_add_value(x[i], f[i], rules::dropout_keep(seed, stream, static_cast<std::uint64_t>(i), p),
                                    keep_scale);
  });
}

#define TH_INSTANTIATE(T)                                                                        \
  template void dropout_forward<T>(T*, const T*, std::int64_t, float, std::uint64_t, std::uint64_t); \
  template void dropout_add<T>(T*, const T*, const T*, std::int64_t, float, std::uint64_t, std::uint64_t);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
