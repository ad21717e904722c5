#pragma once
// Mixed precision (ZeroOptions::compute = BF16 / F16): values of the 16-bit compute copy are kept
// in fp32 storage, rounded to the compute type (where no 2-byte storage is used; 2-byte storage
// converts with Backend::narrow_16bit / widen_16bit).
#include <cstdint>

#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"
#include "th/kernels/cpu.hpp"

namespace th::zero {

// x in the backend's device memory (parameters, gradients): the backend's kernel.
inline void round_to_compute(Backend& be, DType compute, float* x, std::int64_t n) {
  if (compute == DType::BF16) be.round_to_bf16(x, n);
  if (compute == DType::F16) be.round_to_fp16(x, n);
}

// x in host memory (a chunk slot of an NVMe file): the host's own kernel, whatever the backend.
inline void round_to_compute_on_host(DType compute, float* x, std::int64_t n) {
  if (compute == DType::BF16) cpu::round_to_bf16(x, n);
  if (compute == DType::F16) cpu::round_to_fp16(x, n);
}

// 2-byte storage in host memory (a host-resident partition, a chunk of an NVMe file): the host's
// conversions, whatever the backend.
inline void narrow_16bit_on_host(DType type, std::uint16_t* y, const float* x, std::int64_t n) {
  if (type == DType::F16) cpu::fp32_to_fp16(y, x, n);
  else cpu::fp32_to_bf16(y, x, n);
}
inline void widen_16bit_on_host(DType type, float* y, const std::uint16_t* x, std::int64_t n) {
  if (type == DType::F16) cpu::fp16_to_fp32(y, x, n);
  else cpu::bf16_to_fp32(y, x, n);
}

}  // namespace th::zero
