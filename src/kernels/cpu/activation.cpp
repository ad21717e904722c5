#include <cmath>

#include "th/core/half.hpp"
#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cpu {

// The formulas: th/kernels/element_rules.hpp (the CUDA kernels use the same).
using rules::gelu;
using rules::gelu_grad;

template <typename T>
void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, Activation act) {
  if (act == Activation::ReLU) {
    host_for("BiasReLU::forward", N, [=](std::int64_t i) {
      for (int j = 0; j < F; ++j) {
        const T v = pre[i * F + j] + b[j];
        pre[i * F + j] = v;
        y[i * F + j] = rules::relu(v);
      }
    });
  } else {
    host_for("BiasGELU::forward", N, [=](std::int64_t i) {
      for (int j = 0; j < F; ++j) {
        const T v = pre[i * F + j] + b[j];
        pre[i * F + j] = v;
        y[i * F + j] = gelu(v);
      }
    });
  }
}

template <typename T>
void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F, Activation act) {
  const std::int64_t n = N * F;
  if (act == Activation::ReLU) {
    // Both loads unconditional, then a select: the loop vectorises (a load under the condition
    // kept it scalar, with a branch per element).
    host_for("BiasReLU::backward", n, [=](std::int64_t i) {
      const T d = dy[i], x = pre[i];
      dpre[i] = rules::relu_backward(d, x);
    });
  } else {
    host_for("BiasGELU::backward", n, [=](std::int64_t i) { dpre[i] = dy[i] * gelu_grad(pre[i]); });
  }
  bias_grad(db, dpre, N, F);
}

void bias_act_backward_bf16(float* dpre, float* db, const float* dy, const std::uint16_t* pre16, std::int64_t N,
                            int F, Activation act) {
  const std::int64_t n = N * F;
  if (act == Activation::ReLU) {
    host_for("BiasReLU::backward_bf16", n, [=](std::int64_t i) {
      const float d = dy[i], x = half::from_bf16(pre16[i]);
      dpre[i] = rules::relu_backward(d, x);
    });
  } else {
    host_for("BiasGELU::backward_bf16", n, [=](std::int64_t i) { dpre[i] = dy[i] * gelu_grad(half::from_bf16(pre16[i])); });
  }
  bias_grad(db, dpre, N, F);
}

#define TH_INSTANTIATE(T)                                                                    \
  template void bias_act_forward<T>(T*, T*, const T*, std::int64_t, int, Activation);        \
  template void bias_act_backward<T>(T*, T*, const T*, const T*, std::int64_t, int, Activation);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
