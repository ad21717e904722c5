// fp32 <-> bf16 / fp16 storage conversions, round-to-nearest-even, bit-identical to th::cpu
// (src/kernels/cpu/convert.cpp): the same integer rules, written once in th/core/half.hpp, so NaN
// payloads and signs come out as the CPU gives them (the hardware cvt instructions return one
// canonical NaN).
#include "device_utils.cuh"
#include "th/core/half.hpp"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// The rounding rules are th/core/half.hpp's (host-device code), the ones the CPU kernels use.
namespace {
__device__ __forceinline__ std::uint16_t float_to_bf16_bits(float f) { return th::half::to_bf16(f); }
__device__ __forceinline__ std::uint16_t float_to_half_bits(float f) { return th::half::to_fp16(f); }
__device__ __forceinline__ float half_bits_to_float(std::uint16_t h) { return th::half::from_fp16(h); }
}  // namespace

// ---- kernels --------------------------------------------------------------------------------

__global__ void fp32_to_bf16_kernel(__nv_bfloat16* y, const float* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride())
    y[i] = __nv_bfloat16_raw{float_to_bf16_bits(x[i])};
}

__global__ void bf16_to_fp32_kernel(float* y, const __nv_bfloat16* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride())
    y[i] = __uint_as_float(static_cast<std::uint32_t>(static_cast<__nv_bfloat16_raw>(x[i]).x) << 16);
}

__global__ void fp32_to_fp16_kernel(__half* y, const float* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) y[i] = __half_raw{float_to_half_bits(x[i])};
}

__global__ void fp16_to_fp32_kernel(float* y, const __half* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride())
    y[i] = half_bits_to_float(static_cast<__half_raw>(x[i]).x);
}

__global__ void round_to_bf16_kernel(float* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride())
    x[i] = __uint_as_float(static_cast<std::uint32_t>(float_to_bf16_bits(x[i])) << 16);
}

__global__ void round_to_fp16_kernel(float* x, std::int64_t n) {
  for (std::int64_t i = global_thread_index(); i < n; i += grid_stride()) x[i] = half_bits_to_float(float_to_half_bits(x[i]));
}

// ---- launchers ------------------------------------------------------------------------------

namespace {
template <typename Y, typename X>
void launch_convert(void (*kernel)(Y*, const X*, std::int64_t), Y* y, const X* x, std::int64_t n, const char* who,
                    cudaStream_t stream) {
  TH_CHECK(n >= 0, std::string(who) + ": n < 0");
  if (n == 0) return;
  TH_CHECK(y && x, std::string(who) + ": null pointer");
  kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(y, x, n);
  TH_CUDA_CHECK_LAUNCH();
}
}  // namespace

void fp32_to_bf16(__nv_bfloat16* y, const float* x, std::int64_t n, cudaStream_t stream) {
  launch_convert(fp32_to_bf16_kernel, y, x, n, "fp32_to_bf16", stream);
}
void bf16_to_fp32(float* y, const __nv_bfloat16* x, std::int64_t n, cudaStream_t stream) {
  launch_convert(bf16_to_fp32_kernel, y, x, n, "bf16_to_fp32", stream);
}
void fp32_to_fp16(__half* y, const float* x, std::int64_t n, cudaStream_t stream) {
  launch_convert(fp32_to_fp16_kernel, y, x, n, "fp32_to_fp16", stream);
}
void fp16_to_fp32(float* y, const __half* x, std::int64_t n, cudaStream_t stream) {
  launch_convert(fp16_to_fp32_kernel, y, x, n, "fp16_to_fp32", stream);
}

void round_to_bf16(float* x, std::int64_t n, cudaStream_t stream) {
  TH_CHECK(n >= 0 && (n == 0 || x), "round_to_bf16: bad arguments");
  if (n == 0) return;
  round_to_bf16_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(x, n);
  TH_CUDA_CHECK_LAUNCH();
}
void round_to_fp16(float* x, std::int64_t n, cudaStream_t stream) {
  TH_CHECK(n >= 0 && (n == 0 || x), "round_to_fp16: bad arguments");
  if (n == 0) return;
  round_to_fp16_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(x, n);
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
