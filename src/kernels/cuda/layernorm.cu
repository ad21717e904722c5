// LayerNorm over the last dim of x[N,D]: one warp per row for the row statistics and dx;
// dgamma/dbeta are column sums, reduced per chunk of rows and then in chunk order (deterministic).
#include "device_utils.cuh"
#include "scratch.hpp"
#include "th/kernels/cuda.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cuda {

constexpr int kRowsPerBlock = 4;  // warps per block, one row each
constexpr int kColTile = 32;
constexpr int kRowThreads = 8;
constexpr std::int64_t kRowsPerChunkMin = 256;
constexpr std::int64_t kMaxChunks = 64;

// ---- kernels --------------------------------------------------------------------------------

// Two passes over the row, as the CPU: mean first, then the biased variance of (x - mean), which
// avoids the cancellation of E[x^2] - mean^2.
__global__ void layernorm_forward_kernel(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                                         const float* beta, std::int64_t N, int D, float eps) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;  // whole warps leave together
  const float* xi = x + row * D;
  float s = 0.0f;
  for (int j = lane; j < D; j += kWarpSize) s += xi[j];
  const float m = warp_sum(s) / static_cast<float>(D);
  float var = 0.0f;
  for (int j = lane; j < D; j += kWarpSize) {
    const float d = xi[j] - m;
    var += d * d;
  }
  var = warp_sum(var) / static_cast<float>(D);
  const float r = 1.0f / sqrtf(var + eps);
  float* yi = y + row * D;
  for (int j = lane; j < D; j += kWarpSize) yi[j] = rules::layernorm_out(xi[j], m, r, gamma[j], beta[j]);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma; one warp per row.
__global__ void layernorm_backward_input_kernel(float* dx, const float* dy, const float* x, const float* gamma,
                                                const float* mean, const float* rstd, std::int64_t N, int D) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;
  const float* xi = x + row * D;
  const float* dyi = dy + row * D;
  const float m = mean[row], r = rstd[row];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int j = lane; j < D; j += kWarpSize) {
    const float g = dyi[j] * gamma[j];
    sum_g += g;
    sum_gx += g * (xi[j] - m) * r;
  }
  sum_g = warp_sum(sum_g) / static_cast<float>(D);
  sum_gx = warp_sum(sum_gx) / static_cast<float>(D);
  float* dxi = dx + row * D;
  for (int j = lane; j < D; j += kWarpSize) dxi[j] = rules::layernorm_dx(dyi[j], gamma[j], xi[j], m, r, sum_g, sum_gx);
}

// Per chunk of rows (grid.y) and kColTile columns (grid.x): sum of dy * xhat and of dy.
// partial == null (one chunk): added to dgamma/dbeta directly; else partial[chunk, 0|1, c].
__global__ void layernorm_backward_params_partial_kernel(float* dgamma, float* dbeta, float* partial,
                                                         const float* dy, const float* x, const float* mean,
                                                         const float* rstd, std::int64_t N, int D,
                                                         std::int64_t rows_per_chunk) {
  __shared__ float tile_g[kRowThreads][kColTile + 1];
  __shared__ float tile_b[kRowThreads][kColTile + 1];
  const int c = blockIdx.x * kColTile + threadIdx.x;
  const std::int64_t r0 = blockIdx.y * rows_per_chunk;
  const std::int64_t r1 = min(N, r0 + rows_per_chunk);
  float ag = 0.0f, ab = 0.0f;
  if (c < D) {
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowThreads) {
      const float d = dy[r * D + c];
      ag += d * (x[r * D + c] - mean[r]) * rstd[r];
      ab += d;
    }
  }
  tile_g[threadIdx.y][threadIdx.x] = ag;
  tile_b[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < D) {
    float sg = 0.0f, sb = 0.0f;
    for (int k = 0; k < kRowThreads; ++k) {
      sg += tile_g[k][threadIdx.x];
      sb += tile_b[k][threadIdx.x];
    }
    if (partial) {
      partial[(2 * static_cast<std::int64_t>(blockIdx.y)) * D + c] = sg;
      partial[(2 * static_cast<std::int64_t>(blockIdx.y) + 1) * D + c] = sb;
    } else {
      dgamma[c] += sg;
      dbeta[c] += sb;
    }
  }
}

// dgamma[c], dbeta[c] += the chunk partials, in chunk order.
__global__ void layernorm_backward_params_finish_kernel(float* dgamma, float* dbeta, const float* partial,
                                                        int chunks, int D) {
  for (std::int64_t c = global_thread_index(); c < D; c += grid_stride()) {
    float sg = 0.0f, sb = 0.0f;
    for (int k = 0; k < chunks; ++k) {
      sg += partial[(2 * static_cast<std::int64_t>(k)) * D + c];
      sb += partial[(2 * static_cast<std::int64_t>(k) + 1) * D + c];
    }
    dgamma[c] += sg;
    dbeta[c] += sb;
  }
}

// ---- launchers ------------------------------------------------------------------------------

namespace {
unsigned row_grid(std::int64_t N, const char* who) {
  const std::int64_t blocks = ceil_div(N, kRowsPerBlock);
  TH_CHECK(blocks <= 0x7fffffff, std::string(who) + ": too many rows");
  return static_cast<unsigned>(blocks);
}
}  // namespace

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                       std::int64_t N, int D, float eps, cudaStream_t stream) {
  TH_CHECK(N >= 0 && D > 0, "layernorm_forward: need N >= 0, D > 0");
  if (N == 0) return;
  TH_CHECK(y && mean && rstd && x && gamma && beta, "layernorm_forward: null pointer");
  layernorm_forward_kernel<<<row_grid(N, "layernorm_forward"), kRowsPerBlock * kWarpSize, 0, stream>>>(
      y, mean, rstd, x, gamma, beta, N, D, eps);
  TH_CUDA_CHECK_LAUNCH();
}

void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* mean, const float* rstd, std::int64_t N, int D,
                        cudaStream_t stream) {
  TH_CHECK(N >= 0 && D > 0, "layernorm_backward: need N >= 0, D > 0");
  if (N == 0) return;
  TH_CHECK(dx && dgamma && dbeta && dy && x && gamma && mean && rstd, "layernorm_backward: null pointer");
  TH_CHECK(dx != dy, "layernorm_backward: dx must not alias dy");
  layernorm_backward_input_kernel<<<row_grid(N, "layernorm_backward"), kRowsPerBlock * kWarpSize, 0, stream>>>(
      dx, dy, x, gamma, mean, rstd, N, D);
  TH_CUDA_CHECK_LAUNCH();

  const std::int64_t chunks = std::min(kMaxChunks, ceil_div(N, kRowsPerChunkMin));
  const std::int64_t rows_per_chunk = ceil_div(N, chunks);
  Scratch partial(chunks > 1 ? static_cast<std::size_t>(2 * chunks) * D * sizeof(float) : 0, stream);
  const dim3 grid(static_cast<unsigned>(ceil_div(D, kColTile)), static_cast<unsigned>(chunks));
  layernorm_backward_params_partial_kernel<<<grid, dim3(kColTile, kRowThreads), 0, stream>>>(
      dgamma, dbeta, partial.as<float>(), dy, x, mean, rstd, N, D, rows_per_chunk);
  TH_CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    layernorm_backward_params_finish_kernel<<<elementwise_grid(D), kElementwiseBlock, 0, stream>>>(
        dgamma, dbeta, partial.as<float>(), static_cast<int>(chunks), D);
    TH_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace th::cuda
