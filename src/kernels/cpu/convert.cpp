// fp32 <-> bf16 / fp16 storage conversions, round-to-nearest-even.
#include <algorithm>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "th/core/half.hpp"
#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "cpu/convert_rows.hpp"
#include "cpu/isa_clones.hpp"

namespace th::cpu {

using half::bits_of;
using half::float_of;

std::uint16_t float_to_bf16(float f) { return half::to_bf16(f); }
float bf16_to_float(std::uint16_t h) { return half::from_bf16(h); }
std::uint16_t float_to_half(float f) { return half::to_fp16(f); }
float half_to_float(std::uint16_t h) { return half::from_fp16(h); }

// The array conversions run in chunks of plain loops, with no branch per element, so that the
// compiler vectorises them (bf16: integer rounding on 32-bit lanes); fp16 uses the F16C
// instructions where the CPU has them (same round-to-nearest-even; NaNs stay NaNs), checked at
// run time, and the scalar rules above elsewhere. Tests: tests/unit/test_kernels.cpp
// (Kernels.VectorConversionsMatchScalar).
namespace {
constexpr std::int64_t kChunk = 4096;

template <class F>
void chunked(const char* name, std::int64_t n, const F& f) {
  host_for(name, (n + kChunk - 1) / kChunk, [=](std::int64_t c) {
    const std::int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    f(i0, i1);
  });
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TH_HAVE_F16C_PATH 1
bool cpu_has_f16c() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
__attribute__((target("avx,f16c"))) void to_half_f16c(std::uint16_t* y, const float* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = float_to_half(x[i]);
}
__attribute__((target("avx,f16c"))) void from_half_f16c(float* y, const std::uint16_t* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = half_to_float(x[i]);
}
#endif
}  // namespace

void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) {
  chunked("Convert::fp32_to_bf16", n, [=](std::int64_t i0, std::int64_t i1) { rows::narrow_bf16(y + i0, x + i0, i1 - i0); });
}
void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) {
  chunked("Convert::bf16_to_fp32", n, [=](std::int64_t i0, std::int64_t i1) { rows::widen_bf16(y + i0, x + i0, i1 - i0); });
}
void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) {
#ifdef TH_HAVE_F16C_PATH
  if (cpu_has_f16c()) {
    chunked("Convert::fp32_to_fp16", n, [=](std::int64_t i0, std::int64_t i1) { to_half_f16c(y + i0, x + i0, i1 - i0); });
    return;
  }
#endif
  host_for("Convert::fp32_to_fp16", n, [=](std::int64_t i) { y[i] = float_to_half(x[i]); });
}
void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) {
#ifdef TH_HAVE_F16C_PATH
  if (cpu_has_f16c()) {
    chunked("Convert::fp16_to_fp32", n, [=](std::int64_t i0, std::int64_t i1) { from_half_f16c(y + i0, x + i0, i1 - i0); });
    return;
  }
#endif
  host_for("Convert::fp16_to_fp32", n, [=](std::int64_t i) { y[i] = half_to_float(x[i]); });
}

void round_to_bf16(float* x, std::int64_t n) {
  chunked("Convert::round_to_bf16", n, [=](std::int64_t i0, std::int64_t i1) { rows::round_bf16(x + i0, x + i0, i1 - i0); });
}
void round_to_fp16(float* x, std::int64_t n) {
#ifdef TH_HAVE_F16C_PATH
  if (cpu_has_f16c()) {
    chunked("Convert::round_to_fp16", n, [=](std::int64_t i0, std::int64_t i1) {
      std::uint16_t h[kChunk];
      to_half_f16c(h, x + i0, i1 - i0);
      from_half_f16c(x + i0, h, i1 - i0);
    });
    return;
  }
#endif
  host_for("Convert::round_to_fp16", n, [=](std::int64_t i) { x[i] = half_to_float(float_to_half(x[i])); });
}

}  // namespace th::cpu

// The row loops, one clone per ISA level (GCC on x86-64; elsewhere one plain version).
namespace th::cpu::rows {
TH_ISA_CLONES void narrow_bf16(std::uint16_t* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = half::to_bf16_bits(bits_of(x[i]));
}
TH_ISA_CLONES void widen_bf16(float* y, const std::uint16_t* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = float_of(static_cast<std::uint32_t>(x[i]) << 16);
}
TH_ISA_CLONES void round_bf16(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = float_of(static_cast<std::uint32_t>(half::to_bf16_bits(bits_of(x[i]))) << 16);
}
}  // namespace th::cpu::rows
