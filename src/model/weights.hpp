#pragma once
// A weight as the layers hand it to the linear kernels: the parameters' 2-byte compute copy where
// there is one (ParamStore::value16(): bf16 and fp16 runs with 2-byte values), else the fp32
// values. bf16 bits go to the kernels as they are; fp16 bits (no CPU kernel multiplies fp16) are
// widened exactly into a Workspace tensor right before the kernel, as many elements as it reads
// (a fused Q/K/V GEMM reads three parameters in a row), and freed after it: the GEMM sees the
// values fp32 storage would hold. The two helpers pick the kernel entry point that takes what
// they are given (16-bit operands: the *_bf16 entry points of th/backend/kernels.hpp; all fp32:
// linear_forward / linear_backward).
#include <cstdint>
#include <type_traits>

#include "th/backend/kernels.hpp"
#include "th/core/error.hpp"
#include "th/model/params.hpp"

namespace th {

template <typename T>
struct Weight {
  const T* f = nullptr;                      // fp32 values, or
  const std::uint16_t* h = nullptr;          // bf16 bits, or
  const std::uint16_t* fp16_bits = nullptr;  // fp16 bits (widened by fp32(), on `be`)
  Backend* be = nullptr;
  Weight at(std::int64_t offset) const {
    return {f ? f + offset : nullptr, h ? h + offset : nullptr, fp16_bits ? fp16_bits + offset : nullptr, be};
  }
  // n elements as a kernel takes them: fp16 bits widened into `keep` (Workspace), else itself.
  Weight fp32(std::int64_t n, Tensor& keep) const {
    if (!fp16_bits) return *this;
    keep = be->empty({n}, dtype_of<T>(), MemCategory::Workspace);
    if constexpr (std::is_same_v<T, float>) be->fp16_to_fp32(keep.data<T>(), fp16_bits, n);
    return {keep.data<T>(), nullptr, nullptr, nullptr};
  }
};

template <typename T> Weight<T> weight(const ParamStore<T>& ps, std::int64_t offset) {
  const std::uint16_t* h = ps.value16(offset);
  if (!h) return {ps.value(offset), nullptr, nullptr, nullptr};
  if (ps.values16_type() == DType::F16) return {nullptr, nullptr, h, &ps.backend()};
  return {nullptr, h, nullptr, nullptr};
}

// Pointers that may be given as nullptr: T comes from the kernels alone (a non-deduced context).
template <typename T> using In = const typename std::common_type<T>::type*;
template <typename T> using Out = typename std::common_type<T>::type*;

// y[N,out] = x W^T + b, x given in fp32 (x) or as bf16 bits (x16).
template <typename T>
void linear_fwd(Kernels<T>& k, Out<T> y, In<T> x, const std::uint16_t* x16, Weight<T> W, In<T> b, std::int64_t N,
                int in, int out) {
  Tensor keep;
  W = W.fp32(static_cast<std::int64_t>(in) * out, keep);
  if (W.h || x16) k.linear_forward_bf16(y, x16 ? nullptr : x, x16, W.f, W.h, b, N, in, out);
  else k.linear_forward(y, x, W.f, b, N, in, out);
}

// linear_backward with each of dy, x given in fp32 or as bf16 bits (alpha scales a bf16 dy16).
template <typename T>
void linear_bwd(Kernels<T>& k, Out<T> dx, Out<T> dW, Out<T> db, In<T> dy, const std::uint16_t* dy16, float alpha,
                In<T> x, const std::uint16_t* x16, Weight<T> W, std::int64_t N, int in, int out,
                bool accumulate_dx = false) {
  Tensor keep;
  if (dx) W = W.fp32(static_cast<std::int64_t>(in) * out, keep);  // only dx reads W
  if (W.h || x16 || dy16) {
    k.linear_backward_bf16(dx, dW, db, dy16 ? nullptr : dy, dy16, alpha, x16 ? nullptr : x, x16, dx ? W.f : nullptr,
                           dx ? W.h : nullptr, N, in, out, accumulate_dx);
    return;
  }
  TH_CHECK(alpha == 1.0f, "linear_bwd: alpha != 1 needs a bf16 dy");
  k.linear_backward(dx, dW, db, dy, x, W.f, N, in, out, accumulate_dx);
}

}  // namespace th
