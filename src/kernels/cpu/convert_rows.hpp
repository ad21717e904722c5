#pragma once
// Row conversions between fp32 and bf16 (th/core/half.hpp's rules), compiled once per x86 ISA
// level (AVX-512 / AVX2 / baseline; the loader picks the clone for the CPU it runs on, glibc
// ifunc) so that the vector width follows the CPU while the build stays portable. Results are
// identical on every clone (integer rounding, no floating-point reassociation). Used by the
// array conversions (convert.cpp) and the GEMM engine's operand packing (gemm.cpp).
#include <cstdint>

namespace th::cpu::rows {

void narrow_bf16(std::uint16_t* y, const float* x, std::int64_t n);  // y = bf16(x)
void widen_bf16(float* y, const std::uint16_t* x, std::int64_t n);   // y = float(x), exact
void round_bf16(float* y, const float* x, std::int64_t n);           // y = float(bf16(x)); y may be x

}  // namespace th::cpu::rows
