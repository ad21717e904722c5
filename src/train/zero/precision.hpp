#pragma once
// Mixed precision (ZeroOptions::compute = BF16 / F16): values of the 16-bit compute copy are kept
// in fp32 storage, rounded to the compute type (the CPU backend has no 16-bit GEMM).
#include <cstdint>

#include "th/core/tensor.hpp"
#include "th/kernels/cpu.hpp"

namespace th::zero {

inline void round_to_compute(DType compute, float* x, std::int64_t n) {
  if (compute == DType::BF16) cpu::round_to_bf16(x, n);
  if (compute == DType::F16) cpu::round_to_fp16(x, n);
}

}  // namespace th::zero
