// AdamW (decoupled weight decay, PyTorch semantics) on flat fp32 buffers.
#include <cmath>

#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// ---- kernels --------------------------------------------------------------------------------

// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = p*decay - step * m / (sqrt(v)/bc2_sqrt + eps).
__global__ void adamw_update_kernel(float* p, const float* g, float* m, float* v, std::int64_t n, float b1, float b2,
                                    float step, float decay, float bc2_sqrt, float eps) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) / bc2_sqrt + eps);
  }
}

// ---- launchers ------------------------------------------------------------------------------

void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, std::int64_t t, cudaStream_t stream) {
  TH_CHECK(n >= 0, "adamw_update: n < 0");
  TH_CHECK(t >= 1, "adamw_update: step t must be >= 1");
  if (n == 0) return;
  TH_CHECK(p && g && m && v, "adamw_update: null pointer");
  // The per-step constants, in double and then rounded, exactly as th::cpu::adamw_update<float>.
  const float bc1 = static_cast<float>(1.0 - std::pow(beta1, static_cast<double>(t)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
  const float step = static_cast<float>(lr) / bc1;
  const float decay = static_cast<float>(1.0 - lr * weight_decay);
  adamw_update_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(
      p, g, m, v, n, static_cast<float>(beta1), static_cast<float>(beta2), step, decay, bc2_sqrt,
      static_cast<float>(eps));
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
