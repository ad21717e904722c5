// AdamW (decoupled weight decay, PyTorch semantics) on flat fp32 buffers.
#include <cmath>

#include "device_utils.cuh"
#include "th/kernels/adamw_element.hpp"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// ---- kernels --------------------------------------------------------------------------------

// One element: th::cpu::AdamWCoefficients (th/kernels/adamw_element.hpp), the CPU loops' rule.
__global__ void adamw_update_kernel(float* p, const float* g, float* m, float* v, std::int64_t n,
                                    cpu::AdamWCoefficients<float> c) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) c(p[i], g[i], m[i], v[i]);
}

// ---- launchers ------------------------------------------------------------------------------

void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, std::int64_t t, cudaStream_t stream) {
  TH_CHECK(n >= 0, "adamw_update: n < 0");
  TH_CHECK(t >= 1, "adamw_update: step t must be >= 1");
  if (n == 0) return;
  TH_CHECK(p && g && m && v, "adamw_update: null pointer");
  // The per-step constants, in double and then rounded, exactly as th::cpu::adamw_update<float>.
  const auto c = cpu::AdamWCoefficients<float>::make(lr, beta1, beta2, eps, weight_decay, t);
  adamw_update_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(p, g, m, v, n, c);
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
