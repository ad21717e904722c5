// fp32 <-> bf16 / fp16 storage conversions, round-to-nearest-even, bit-identical to th::cpu
// (src/kernels/cpu/convert.cpp): the same integer algorithms, so NaN payloads and signs come out
// as the CPU gives them (the hardware cvt instructions return one canonical NaN).
#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

namespace {
__device__ __forceinline__ std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = __float_as_uint(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  const std::uint32_t bias = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + bias) >> 16);
}

__device__ __forceinline__ std::uint16_t float_to_half_bits(float f) {
  std::uint32_t x = __float_as_uint(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00u;   // NaN
  if (x >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to inf
  if (x < 0x38800000u) {                        // below 2^-14: subnormal half or zero
    if (x < 0x33000000u) return sign;           // <= 2^-25 rounds to zero (tie to even)
    const int e = static_cast<int>(x >> 23);
    const std::uint32_t mant = (x & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - e;                  // value / 2^-24 = mant >> shift
    std::uint32_t r = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  const std::uint32_t y = x - 0x38000000u;      // rebias exponent 127 -> 15
  std::uint32_t h = y >> 13;
  const std::uint32_t rem = y & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return static_cast<std::uint16_t>(sign | h);
}

__device__ __forceinline__ float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return __uint_as_float(sign | 0x7F800000u | (m << 13));
  return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}
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

}  // namespace th::cuda
