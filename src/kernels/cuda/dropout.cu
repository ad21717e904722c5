// Dropout with the counter-based RNG of th::cpu: element i is kept iff
// uniform(seed, stream_id, i) >= p, so the GPU mask is bit-identical to the CPU one and can be
// recomputed in backward without storing it.
#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cuda {

// The mask and the arithmetic: th/kernels/element_rules.hpp (th::mix64's counter RNG), the CPU's too.

// ---- kernels --------------------------------------------------------------------------------

// y = keep ? x * keep_scale : 0 (y may alias x).
__global__ void dropout_forward_kernel(float* y, const float* x, std::int64_t n, float p, float keep_scale,
                                       std::uint64_t seed, std::uint64_t stream_id) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) {
    y[i] = rules::dropout_value(x[i], rules::dropout_keep(seed, stream_id, static_cast<std::uint64_t>(i), p), keep_scale);
  }
}

// y = x + (keep ? f * keep_scale : 0), multiply and add rounded separately as on the CPU (the
// explicit _rn intrinsics stop nvcc from fusing them into an FMA).
__global__ void dropout_add_kernel(float* y, const float* x, const float* f, std::int64_t n, float p,
                                   float keep_scale, std::uint64_t seed, std::uint64_t stream_id) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) {
    y[i] = rules::dropout_add_value(x[i], f[i], rules::dropout_keep(seed, stream_id, static_cast<std::uint64_t>(i), p),
                                    keep_scale);
  }
}

// y = x + f (p == 0), rounded as the CPU's add.
__global__ void dropout_add_plain_kernel(float* y, const float* x, const float* f, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) y[i] = __fadd_rn(x[i], f[i]);
}

// ---- launchers ------------------------------------------------------------------------------

void dropout_forward(float* y, const float* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream_id,
                     cudaStream_t stream) {
  TH_CHECK(n >= 0, "dropout_forward: n < 0");
  if (n == 0) return;
  TH_CHECK(y && x, "dropout_forward: null pointer");
  if (p <= 0.0f) {
    if (y != x) TH_CUDA_CHECK(cudaMemcpyAsync(y, x, static_cast<std::size_t>(n) * sizeof(float),
                                              cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const float keep_scale = 1.0f / (1.0f - p);  // as th::cpu: T(1) / (T(1) - T(p))
  dropout_forward_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(y, x, n, p, keep_scale, seed,
                                                                                stream_id);
  TH_CUDA_CHECK_LAUNCH();
}

void dropout_add(float* y, const float* x, const float* f, std::int64_t n, float p, std::uint64_t seed,
                 std::uint64_t stream_id, cudaStream_t stream) {
  TH_CHECK(n >= 0, "dropout_add: n < 0");
  if (n == 0) return;
  TH_CHECK(y && x && f, "dropout_add: null pointer");
  if (p <= 0.0f) {
    dropout_add_plain_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(y, x, f, n);
  } else {
    const float keep_scale = 1.0f / (1.0f - p);
    dropout_add_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(y, x, f, n, p, keep_scale, seed,
                                                                              stream_id);
  }
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
