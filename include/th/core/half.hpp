#pragma once
// The bf16 / fp16 rounding rules, written once: round-to-nearest-even from fp32, exact widening
// back; bf16 NaNs stay quiet NaNs, fp16 overflows to inf from 65520 and has subnormals. A NaN
// keeps its sign and the top of its payload and comes out quiet in both directions, as x86's F16C
// instructions (vcvtps2ph / vcvtph2ps, which the CPU kernels use where they can) do it, so that the
// scalar rules, the F16C loops and the CUDA kernels agree bit for bit on every input. Used by
// the CPU conversion kernels (src/kernels/cpu/convert.cpp), the 16-bit reductions of the MPI
// communicator (src/parallel/mpi_comm.cpp) and, being host-device code, CUDA code that includes it.
#include <cstdint>
#include <cstring>

#include "th/core/host_device.hpp"

namespace th::half {

TH_HOST_DEVICE inline std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
TH_HOST_DEVICE inline float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16: the upper half of the fp32 bits, rounded to nearest even; written without branches so
// that array loops over it vectorise.
TH_HOST_DEVICE inline std::uint16_t to_bf16_bits(std::uint32_t x) {
  const std::uint32_t rounded = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
  const std::uint32_t quiet = (x >> 16) | 0x0040u;  // a NaN stays a (quiet) NaN
  return static_cast<std::uint16_t>(static_cast<std::int32_t>(x & 0x7FFFFFFFu) > 0x7F800000 ? quiet : rounded);
}
TH_HOST_DEVICE inline std::uint16_t to_bf16(float f) { return to_bf16_bits(bits_of(f)); }
TH_HOST_DEVICE inline float from_bf16(std::uint16_t h) { return float_of(static_cast<std::uint32_t>(h) << 16); }

TH_HOST_DEVICE inline std::uint16_t to_fp16(float f) {
  std::uint32_t x = bits_of(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7FFFFFFFu;
  if (x > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((x >> 13) & 0x3FFu));  // NaN, quiet
  if (x >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (x < 0x38800000u) {                                                    // below 2^-14: subnormal or zero
    if (x < 0x33000000u) return sign;                                       // <= 2^-25 rounds to zero (tie to even)
    const int e = static_cast<int>(x >> 23);
    const std::uint32_t mant = (x & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - e;  // value / 2^-24 = mant >> shift
    std::uint32_t r = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  const std::uint32_t y = x - 0x38000000u;  // rebias exponent 127 -> 15
  std::uint32_t h = y >> 13;
  const std::uint32_t rem = y & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return static_cast<std::uint16_t>(sign | h);
}

TH_HOST_DEVICE inline float from_fp16(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return float_of(sign | 0x7F800000u | (m ? 0x400000u | (m << 13) : 0u));  // inf; NaN made quiet
  return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace th::half
