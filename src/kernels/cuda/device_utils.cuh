#pragma once
// Small helpers shared by the kernel files (private to src/kernels/cuda). Device functions must be
// visible in every .cu file that uses them (no relocatable device code), hence inline here.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace th::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Elementwise kernels: 256 threads, grid-stride loops over int64 indices, at most this many
// blocks (enough to fill any current GPU several times over).
constexpr int kElementwiseBlock = 256;
constexpr std::int64_t kMaxElementwiseBlocks = 65536;

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

inline unsigned elementwise_grid(std::int64_t n) {
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(ceil_div(n, kElementwiseBlock), kMaxElementwiseBlocks)));
}

__device__ __forceinline__ std::int64_t global_thread_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Block-wide sum / max; blockDim.x a multiple of 32 (at most 1024); `shared` holds 32 values.
// Every thread gets the result. Safe to call repeatedly with the same `shared`.
template <typename T> __device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarpSize) ? shared[lane] : T(0);
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarpSize) ? shared[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace th::cuda
