#include <cmath>
#include <type_traits>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/element_rules.hpp"
#include "cpu/softmax_rows.hpp"

namespace th::cpu {

template <typename T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta,
                       std::int64_t N, int D, T eps) {
  host_for("LayerNorm::forward", N, [=](std::int64_t i) {
    const T* xi = x + i * D;
    T m = 0, var = 0;
    if constexpr (std::is_same_v<T, float>) {  // vectorised row sums (softmax_rows.hpp)
      m = rows::sum(xi, D) / D;
      var = rows::sum_sq_dev(xi, D, m) / D;
    } else {
      for (int j = 0; j < D; ++j) m += xi[j];
      m /= D;
      for (int j = 0; j < D; ++j) var += (xi[j] - m) * (xi[j] - m);
      var /= D;  // biased variance, as PyTorch
    }
    const T r = T(1) / std::sqrt(var + eps);
    T* yi = y + i * D;
    for (int j = 0; j < D; ++j) yi[j] = rules::layernorm_out(xi[j], m, r, gamma[j], beta[j]);
    mean[i] = m;
    rstd[i] = r;
  });
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
template <typename T>
void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                        const T* mean, const T* rstd, std::int64_t N, int D) {
  host_for("LayerNorm::backward_input", N, [=](std::int64_t i) {
    const T* xi = x + i * D;
    const T* dyi = dy + i * D;
    const T m = mean[i], r = rstd[i];
    T sum_g = 0, sum_gx = 0;
    if constexpr (std::is_same_v<T, float>) {
      rows::layernorm_grad_sums(dyi, gamma, xi, D, m, r, &sum_g, &sum_gx);
    } else {
      for (int j = 0; j < D; ++j) {
        const T g = dyi[j] * gamma[j];
        sum_g += g;
        sum_gx += g * (xi[j] - m) * r;
      }
    }
    sum_g /= D;
    sum_gx /= D;
    T* dxi = dx + i * D;
    for (int j = 0; j < D; ++j) dxi[j] = rules::layernorm_dx(dyi[j], gamma[j], xi[j], m, r, sum_g, sum_gx);
  });
  constexpr int kBlock = 64;
  const std::int64_t nblocks = (D + kBlock - 1) / kBlock;
  host_for("LayerNorm::backward_params", nblocks, [=](std::int64_t blk) {
    const int j0 = static_cast<int>(blk) * kBlock, j1 = std::min(D, j0 + kBlock);
    T ag[kBlock] = {}, ab[kBlock] = {};
    for (std::int64_t i = 0; i < N; ++i) {
      const T m = mean[i], r = rstd[i];
      for (int j = j0; j < j1; ++j) {
        const T d = dy[i * D + j];
        ag[j - j0] += d * (x[i * D + j] - m) * r;
        ab[j - j0] += d;
      }
    }
    for (int j = j0; j < j1; ++j) {
      dgamma[j] += ag[j - j0];
      dbeta[j] += ab[j - j0];
    }
  });
}

#define TH_INSTANTIATE(T)                                                                           \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, std::int64_t, int, T); \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,   \
                                      std::int64_t, int);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
