#pragma once
// A saved activation: what forward keeps for backward. In the compute type (fp32 / fp64) it is
// one tensor of category Activations, written and read in place. In a 16-bit run
// (ModelSpec::compute = BF16 / F16, float models) forward writes and reads a wide fp32 buffer
// (category Workspace, short-lived), then pack() keeps a 2-byte copy (category Activations,
// round-to-nearest-even) and frees the wide one; backward widens it again into a scratch buffer
// (widen()). So the activations held between forward and backward take 2 bytes per value, as in
// PyTorch autocast, and every kernel still computes in fp32 (docs/architecture.md,
// "Mixed precision").
#include <cstdint>
#include <type_traits>

#include "th/backend/backend.hpp"
#include "th/core/error.hpp"
#include "th/core/tensor.hpp"

namespace th {

// The storage type of saved activations for a model of compute type T and ModelSpec::compute.
template <typename T> DType activation_storage(DType compute) {
  if (std::is_same_v<T, float> && (compute == DType::BF16 || compute == DType::F16)) return compute;
  return dtype_of<T>();
}

template <typename T>
class Saved {
 public:
  // A wide [rows, cols] buffer for forward to write; `storage` is activation_storage<T>(...).
  T* make(Backend& be, std::int64_t rows, std::int64_t cols, DType storage) {
    be_ = &be;
    narrow_.reset();
    storage_ = storage;
    wide_ = be.empty({rows, cols}, dtype_of<T>(), packs() ? MemCategory::Workspace : MemCategory::Activations);
    return wide_.data<T>();
  }
  // Forward no longer reads the wide values: a 16-bit store converts them and frees the wide buffer.
  // keep_wide: convert now but free the wide buffer only at the next pack() (which then converts
  // nothing), so that buffers are freed in the order of the widening path (the memory pool reuses
  // a freed block for a request of half its size and counts it whole).
  void pack(bool keep_wide = false) {
    if (!packs() || !wide_.defined()) return;
    if (narrow_.defined()) {  // converted by an earlier pack(true)
      wide_.reset();
      return;
    }
    narrow_ = be_->empty(wide_.shape(), storage_, MemCategory::Activations);
    auto* dst = static_cast<std::uint16_t*>(narrow_.raw());
    const auto* src = reinterpret_cast<const float*>(wide_.data<T>());
    if (storage_ == DType::BF16) be_->fp32_to_bf16(dst, src, wide_.numel());
    else be_->fp32_to_fp16(dst, src, wide_.numel());
    if (!keep_wide) wide_.reset();
  }
  // The wide values: the buffer itself before pack() (or when nothing packs), else widened into
  // `scratch` (category Workspace; valid while `scratch` lives). Writable: backward may reuse them
  // in place (the logits become their gradient).
  T* widen(Tensor& scratch) const {
    if (wide_.defined()) return wide_.data<T>();
    TH_CHECK(narrow_.defined(), "a saved activation read before forward wrote it");
    scratch = be_->empty(narrow_.shape(), dtype_of<T>(), MemCategory::Workspace);
    auto* dst = reinterpret_cast<float*>(scratch.data<T>());
    const auto* src = static_cast<const std::uint16_t*>(narrow_.raw());
    if (storage_ == DType::BF16) be_->bf16_to_fp32(dst, src, narrow_.numel());
    else be_->fp16_to_fp32(dst, src, narrow_.numel());
    return scratch.data<T>();
  }
  // Whether pack() keeps bf16 values (a bf16 run's float model).
  bool bf16_storage() const { return storage_ == DType::BF16; }
  // The bf16 values after pack() (raw bits, device memory), else null: for GEMMs that take bf16
  // operands directly (Kernels::bf16_operands()), instead of widen().
  const std::uint16_t* bf16() const {
    return storage_ == DType::BF16 && narrow_.defined() ? static_cast<const std::uint16_t*>(narrow_.raw()) : nullptr;
  }
  // Forward's buffer (valid until pack()).
  T* wide() const {
    TH_CHECK(wide_.defined(), "a saved activation's wide buffer used after pack()");
    return wide_.data<T>();
  }
  const Tensor& wide_tensor() const { return wide_; }
  bool defined() const { return wide_.defined() || narrow_.defined(); }
  std::int64_t dim(int i) const { return (wide_.defined() ? wide_ : narrow_).dim(i); }
  std::int64_t numel() const { return (wide_.defined() ? wide_ : narrow_).numel(); }
  void reset() {
    wide_.reset();
    narrow_.reset();
  }

 private:
  bool packs() const { return storage_ == DType::BF16 || storage_ == DType::F16; }
  Backend* be_ = nullptr;
  DType storage_ = DType::F32;
  Tensor wide_, narrow_;
};

}  // namespace th
