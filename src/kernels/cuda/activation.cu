// Bias + activation (ReLU, exact-erf GELU) forward and backward, elementwise over [N,F].
#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cuda {

// The formulas (exact-erf GELU, ReLU): th/kernels/element_rules.hpp, the CPU loops' too.

// ---- kernels --------------------------------------------------------------------------------

// pre[N,F] += b[F]; y = act(pre).
template <Activation kAct>
__global__ void bias_act_forward_kernel(float* y, float* pre, const float* b, std::int64_t N, int F) {
  const std::int64_t total = N * F;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    const float v = pre[i] + b[i % F];
    pre[i] = v;
    y[i] = kAct == Activation::ReLU ? rules::relu(v) : rules::gelu(v);
  }
}

// dpre = dy * act'(pre); dpre may alias dy (each element is read before it is written).
template <Activation kAct>
__global__ void bias_act_backward_kernel(float* dpre, const float* dy, const float* pre, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) {
    dpre[i] = kAct == Activation::ReLU ? rules::relu_backward(dy[i], pre[i]) : dy[i] * rules::gelu_grad(pre[i]);
  }
}

// ---- launchers ------------------------------------------------------------------------------

void bias_act_forward(float* y, float* pre, const float* b, std::int64_t N, int F, Activation act,
                      cudaStream_t stream) {
  TH_CHECK(N >= 0 && F > 0, "bias_act_forward: need N >= 0, F > 0");
  if (N == 0) return;
  TH_CHECK(y && pre && b, "bias_act_forward: null pointer");
  const unsigned grid = elementwise_grid(N * F);
  if (act == Activation::ReLU)
    bias_act_forward_kernel<Activation::ReLU><<<grid, kElementwiseBlock, 0, stream>>>(y, pre, b, N, F);
  else
    bias_act_forward_kernel<Activation::GELU><<<grid, kElementwiseBlock, 0, stream>>>(y, pre, b, N, F);
  TH_CUDA_CHECK_LAUNCH();
}

void bias_act_backward(float* dpre, float* db, const float* dy, const float* pre, std::int64_t N, int F,
                       Activation act, cudaStream_t stream) {
  TH_CHECK(N >= 0 && F > 0, "bias_act_backward: need N >= 0, F > 0");
  if (N == 0) return;
  TH_CHECK(dpre && db && dy && pre, "bias_act_backward: null pointer");
  const std::int64_t n = N * F;
  if (act == Activation::ReLU)
    bias_act_backward_kernel<Activation::ReLU><<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(dpre, dy, pre, n);
  else
    bias_act_backward_kernel<Activation::GELU><<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(dpre, dy, pre, n);
  TH_CUDA_CHECK_LAUNCH();
  bias_grad(db, dpre, N, F, stream);
}

}  // namespace th::cuda
