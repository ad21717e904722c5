// Bias add and bias gradient (column sums), residual adds, scaling, sum of squares.
#include "device_utils.cuh"
#include "scratch.hpp"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// Column sums of a [N,D] matrix: a block of (kColTile, kRowThreads) threads covers kColTile
// columns of one chunk of rows; chunks run in parallel (grid.y) and write partial sums that one
// more kernel adds up in chunk order, so the result does not depend on scheduling.
constexpr int kColTile = 32;
constexpr int kRowThreads = 8;
constexpr std::int64_t kRowsPerChunkMin = 256;
constexpr std::int64_t kMaxChunks = 64;

// ---- kernels --------------------------------------------------------------------------------

// y[N,D] += b[D].
__global__ void bias_add_kernel(float* y, const float* b, std::int64_t N, int D) {
  const std::int64_t total = N * D;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) y[i] += b[i % D];
}

// Sum of dy[r, c] over the rows r of chunk blockIdx.y; partial == null (a single chunk): db[c] +=
// sum, else partial[chunk, c] = sum.
__global__ void bias_grad_partial_kernel(float* db, float* partial, const float* dy, std::int64_t N, int D,
                                         std::int64_t rows_per_chunk) {
  __shared__ float tile[kRowThreads][kColTile + 1];
  const int c = blockIdx.x * kColTile + threadIdx.x;
  const std::int64_t r0 = blockIdx.y * rows_per_chunk;
  const std::int64_t r1 = min(N, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (c < D)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowThreads) acc += dy[r * D + c];
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < D) {
    float s = 0.0f;
    for (int k = 0; k < kRowThreads; ++k) s += tile[k][threadIdx.x];
    if (partial) partial[blockIdx.y * static_cast<std::int64_t>(D) + c] = s;
    else db[c] += s;
  }
}

// db[c] += sum over chunks of partial[chunk, c], in chunk order.
__global__ void bias_grad_finish_kernel(float* db, const float* partial, int chunks, int D) {
  for (std::int64_t c = global_thread_index(); c < D; c += grid_stride()) {
    float s = 0.0f;
    for (int k = 0; k < chunks; ++k) s += partial[static_cast<std::int64_t>(k) * D + c];
    db[c] += s;
  }
}

__global__ void add_kernel(float* out, const float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

__global__ void scale_inplace_kernel(float* a, float s, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) a[i] *= s;
}

// partial[block] = sum of a[i]^2 (in double) over the block's grid-stride share of [0, n).
__global__ void sum_squares_partial_kernel(double* partial, const float* a, std::int64_t n) {
  __shared__ double shared[kWarpSize];
  double acc = 0.0;
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) {
    const double v = a[i];
    acc += v * v;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// *result (=, or += when accumulate) sum of partial[0, count); one block, count <= blockDim.x.
__global__ void sum_squares_finish_kernel(double* result, const double* partial, int count, bool accumulate) {
  __shared__ double shared[kWarpSize];
  double v = static_cast<int>(threadIdx.x) < count ? partial[threadIdx.x] : 0.0;
  v = block_sum(v, shared);
  if (threadIdx.x == 0) *result = accumulate ? *result + v : v;
}

// ---- launchers ------------------------------------------------------------------------------

void bias_add(float* y, const float* b, std::int64_t N, int D, cudaStream_t stream) {
  TH_CHECK(N >= 0 && D > 0, "bias_add: need N >= 0, D > 0");
  if (N == 0) return;
  TH_CHECK(y && b, "bias_add: null pointer");
  bias_add_kernel<<<elementwise_grid(N * D), kElementwiseBlock, 0, stream>>>(y, b, N, D);
  TH_CUDA_CHECK_LAUNCH();
}

void bias_grad(float* db, const float* dy, std::int64_t N, int D, cudaStream_t stream) {
  TH_CHECK(N >= 0 && D > 0, "bias_grad: need N >= 0, D > 0");
  if (N == 0) return;
  TH_CHECK(db && dy, "bias_grad: null pointer");
  const std::int64_t chunks = std::min(kMaxChunks, ceil_div(N, kRowsPerChunkMin));
  const std::int64_t rows_per_chunk = ceil_div(N, chunks);
  Scratch partial(chunks > 1 ? static_cast<std::size_t>(chunks) * D * sizeof(float) : 0, stream);
  const dim3 grid(static_cast<unsigned>(ceil_div(D, kColTile)), static_cast<unsigned>(chunks));
  bias_grad_partial_kernel<<<grid, dim3(kColTile, kRowThreads), 0, stream>>>(db, partial.as<float>(), dy, N, D,
                                                                            rows_per_chunk);
  TH_CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    bias_grad_finish_kernel<<<elementwise_grid(D), kElementwiseBlock, 0, stream>>>(db, partial.as<float>(),
                                                                                   static_cast<int>(chunks), D);
    TH_CUDA_CHECK_LAUNCH();
  }
}

namespace {
__global__ void fill_kernel(float* x, float value, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) x[i] = value;
}
}  // namespace

void fill(float* x, float value, std::int64_t n, cudaStream_t stream) {
  TH_CHECK(n >= 0 && (n == 0 || x), "fill: bad arguments");
  if (n == 0) return;
  fill_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(x, value, n);
  TH_CUDA_CHECK_LAUNCH();
}

void add(float* out, const float* a, const float* b, std::int64_t n, cudaStream_t stream) {
  TH_CHECK(n >= 0, "add: n < 0");
  if (n == 0) return;
  add_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(out, a, b, n);
  TH_CUDA_CHECK_LAUNCH();
}

void add_inplace(float* a, const float* b, std::int64_t n, cudaStream_t stream) { add(a, a, b, n, stream); }

void scale_inplace(float* a, float s, std::int64_t n, cudaStream_t stream) {
  TH_CHECK(n >= 0, "scale_inplace: n < 0");
  if (n == 0) return;
  scale_inplace_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(a, s, n);
  TH_CUDA_CHECK_LAUNCH();
}

void sum_squares_async(double* result, const float* a, std::int64_t n, bool accumulate, cudaStream_t stream) {
  TH_CHECK(n >= 0 && result, "sum_squares: n < 0 or null result");
  // The block count depends only on n, so the summation order (and the result) is reproducible.
  constexpr int kFinishBlock = 1024;
  const unsigned blocks = std::min<unsigned>(elementwise_grid(n), kFinishBlock);
  Scratch partial(blocks * sizeof(double), stream);
  sum_squares_partial_kernel<<<blocks, kElementwiseBlock, 0, stream>>>(partial.as<double>(), a, n);
  TH_CUDA_CHECK_LAUNCH();
  sum_squares_finish_kernel<<<1, kFinishBlock, 0, stream>>>(result, partial.as<double>(), static_cast<int>(blocks),
                                                            accumulate);
  TH_CUDA_CHECK_LAUNCH();
}

double sum_squares(const float* a, std::int64_t n, cudaStream_t stream) {
  Scratch result(sizeof(double), stream);
  sum_squares_async(result.as<double>(), a, n, false, stream);
  double host = 0.0;
  TH_CUDA_CHECK(cudaMemcpyAsync(&host, result.as<double>(), sizeof(double), cudaMemcpyDeviceToHost, stream));
  TH_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace th::cuda
