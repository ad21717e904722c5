// Token embedding + positional table, its scatter-add backward, and the sinusoidal table.
#include <vector>

#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// ---- kernels --------------------------------------------------------------------------------

// y[n, j] = table[tokens[n], j] * scale + pe[n % L, j] over the flat index n*D + j.
__global__ void embedding_forward_kernel(float* y, const int* tokens, const float* table, const float* pe,
                                         std::int64_t N, int L, int D, float scale) {
  const std::int64_t total = N * D;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    const std::int64_t n = i / D;
    const int j = static_cast<int>(i % D);
    y[i] = table[static_cast<std::int64_t>(tokens[n]) * D + j] * scale + pe[(n % L) * D + j];
  }
}

// dtable[tokens[n], j] += scale * dy[n, j]. Repeated tokens collide, so atomicAdd: the order of
// the additions (and the last bits of the sum) may change from run to run.
__global__ void embedding_backward_kernel(float* dtable, const int* tokens, const float* dy, std::int64_t N, int D,
                                          float scale) {
  const std::int64_t total = N * D;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    const std::int64_t n = i / D;
    const int j = static_cast<int>(i % D);
    atomicAdd(dtable + static_cast<std::int64_t>(tokens[n]) * D + j, scale * dy[i]);
  }
}

// One thread per (t, d): the sum over the batch in b order, as the CPU loop adds them.
__global__ void position_backward_kernel(float* dpe, const float* dy, int B, int L, int D) {
  const std::int64_t total = static_cast<std::int64_t>(L) * D;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    float acc = dpe[i];
    for (int b = 0; b < B; ++b) acc += dy[static_cast<std::int64_t>(b) * total + i];
    dpe[i] = acc;
  }
}

// ---- launchers ------------------------------------------------------------------------------

void embedding_forward(float* y, const int* tokens, const float* table, const float* pe, int B, int L, int D,
                       float scale, cudaStream_t stream) {
  TH_CHECK(B >= 0 && L > 0 && D > 0, "embedding_forward: need B >= 0, L > 0, D > 0");
  const std::int64_t N = static_cast<std::int64_t>(B) * L;
  if (N == 0) return;
  TH_CHECK(y && tokens && table && pe, "embedding_forward: null pointer");
  embedding_forward_kernel<<<elementwise_grid(N * D), kElementwiseBlock, 0, stream>>>(y, tokens, table, pe, N, L, D,
                                                                                      scale);
  TH_CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dtable, const int* tokens, const float* dy, std::int64_t N, int D, float scale,
                        cudaStream_t stream) {
  TH_CHECK(N >= 0 && D > 0, "embedding_backward: need N >= 0, D > 0");
  if (N == 0) return;
  TH_CHECK(dtable && tokens && dy, "embedding_backward: null pointer");
  embedding_backward_kernel<<<elementwise_grid(N * D), kElementwiseBlock, 0, stream>>>(dtable, tokens, dy, N, D,
                                                                                       scale);
  TH_CUDA_CHECK_LAUNCH();
}

void position_backward(float* dpe, const float* dy, int B, int L, int D, cudaStream_t stream) {
  TH_CHECK(B >= 0 && L >= 0 && D > 0, "position_backward: bad shape");
  if (B == 0 || L == 0) return;
  TH_CHECK(dpe && dy, "position_backward: null pointer");
  position_backward_kernel<<<elementwise_grid(static_cast<std::int64_t>(L) * D), kElementwiseBlock, 0, stream>>>(
      dpe, dy, B, L, D);
  TH_CUDA_CHECK_LAUNCH();
}

// Not a kernel: the CPU builds the table in double with the C library's sin/cos/exp; device math
// differs in the last ulp now and then, and the table must be the same on every backend. It is
// built once at start-up, so the host computation and one copy cost nothing that matters.
void sinusoidal_table(float* pe, int L, int D, cudaStream_t stream) {
  TH_CHECK(L >= 0 && D > 0, "sinusoidal_table: need L >= 0, D > 0");
  if (L == 0) return;
  TH_CHECK(pe != nullptr, "sinusoidal_table: pe is null");
  std::vector<float> host(static_cast<std::size_t>(L) * static_cast<std::size_t>(D));
  cpu::sinusoidal_table<float>(host.data(), L, D);
  // From pageable memory the call returns once `host` has been staged, so it may go out of scope.
  TH_CUDA_CHECK(cudaMemcpyAsync(pe, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
}

}  // namespace th::cuda
