#include <cmath>
#include <limits>
#include <type_traits>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/element_rules.hpp"
#include "cpu/softmax_rows.hpp"

namespace th::cpu {

template <typename T>
void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, T scale, const int* key_begin) {
  const std::int64_t rows = static_cast<std::int64_t>(B) * H * Tq;
  host_for("Attention::softmax_forward", rows, [=](std::int64_t r) {
    const int q = static_cast<int>(r % Tq);
    const int b = static_cast<int>(r / (static_cast<std::int64_t>(H) * Tq));
    // The masks (padding, causal, document): th/kernels/element_rules.hpp, the CUDA kernel's too.
    const rules::KeyRange keys = rules::attention_keys(key_len, key_begin, causal, b, q, Tq, Tk, q_offset);
    const int valid = keys.end, first = keys.first;
    T* p = P + r * Tk;
    if (valid <= first) {
      for (int k = 0; k < Tk; ++k) p[k] = T(0);
      return;
    }
    T mx = -std::numeric_limits<T>::infinity();
    T sum = 0;
    if constexpr (std::is_same_v<T, float>) {  // vectorised rows (softmax_rows.hpp)
      // max(p) * scale == max(p * scale) for scale > 0: rounding is monotonic.
      mx = scale > 0.0f ? rows::max(p + first, valid - first) * scale : -std::numeric_limits<T>::infinity();
      if (!(scale > 0.0f))
        for (int k = first; k < valid; ++k) mx = std::max(mx, p[k] * scale);
      sum = rows::exp_scaled_inplace(p + first, valid - first, scale, mx);
    } else {
      for (int k = first; k < valid; ++k) mx = std::max(mx, p[k] * scale);
      for (int k = first; k < valid; ++k) {
        const T e = std::exp(p[k] * scale - mx);
        p[k] = e;
        sum += e;
      }
    }
    const T inv = T(1) / sum;
    for (int k = 0; k < first; ++k) p[k] = T(0);
    for (int k = first; k < valid; ++k) p[k] *= inv;
    for (int k = valid; k < Tk; ++k) p[k] = T(0);
  });
}

template <typename T>
void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale) {
  host_for("Attention::softmax_backward", rows, [=](std::int64_t r) {
    const T* p = P + r * Tk;
    const T* dp = dP + r * Tk;
    T dot = 0;
    if constexpr (std::is_same_v<T, float>) dot = rows::dot(dp, p, Tk);
    else
      for (int k = 0; k < Tk; ++k) dot += dp[k] * p[k];
    T* ds = dS + r * Tk;
    for (int k = 0; k < Tk; ++k) ds[k] = scale * p[k] * (dp[k] - dot);
  });
}

#define TH_INSTANTIATE(T)                                                                            \
  template void attention_softmax_forward<T>(T*, int, int, int, int, const int*, bool, int, T, const int*);      \
  template void softmax_backward<T>(T*, const T*, const T*, std::int64_t, int, T);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
