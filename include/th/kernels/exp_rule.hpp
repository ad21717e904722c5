#pragma once
// exp() for fp32 written without branches or library calls, so that loops over it vectorise (the
// softmax and cross-entropy rows, ~45% of a bf16 step's non-GEMM time went to libm's scalar expf
// before). Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, 2^n
// put into the exponent bits. Accuracy: within 2 ulp of exp() for -87 <= x <= 88 (checked in
// tests/unit/test_kernels.cpp against double exp over that range). Outside: x < -87 gives 0
// (exp(-87) = 1.6e-38; what it drops is below fp32's normal range), x > 88 gives +inf,
// -inf gives 0, NaN stays NaN. The kernels call it with x <= 0 (a row's values minus its max or
// its log-sum-exp). Double-precision kernels keep std::exp.
#include <cstdint>
#include <cstring>

namespace th::cpu {

inline float exp_rule(float x) {
  const float lo = -87.0f, hi = 88.0f;
  float xc = x >= lo ? x : lo;  // NaN -> lo here; restored at the end
  xc = xc <= hi ? xc : hi;
  // n = round(x / ln2) by the 1.5 * 2^23 trick: an add rounds to an integer in the low bits.
  const float shifter = 12582912.0f;
  const float t = xc * 1.44269504088896341f + shifter;
  std::int32_t tb;
  std::memcpy(&tb, &t, 4);
  const std::int32_t n = tb - 0x4B400000;  // bits of the shifter
  const float fn = t - shifter;
  const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  std::int32_t yb;
  std::memcpy(&yb, &y, 4);
  yb += n * (1 << 23);  // y * 2^n: n in [-126, 127] keeps the exponent field in [1, 254]
  float out;
  std::memcpy(&out, &yb, 4);
  out = x < lo ? 0.0f : out;
  out = x > hi ? __builtin_huge_valf() : out;
  return x != x ? x : out;
}

}  // namespace th::cpu
