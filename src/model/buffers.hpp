#pragma once
// Shorthands for the model's buffers: saved activations vs. scratch that dies within a call.
#include "th/core/tensor.hpp"

namespace th {

template <typename T> Tensor saved_buffer(std::int64_t rows, std::int64_t cols) {
  return Tensor::empty({rows, cols}, dtype_of<T>(), MemCategory::Activations);
}
template <typename T> Tensor scratch_buffer(std::int64_t rows, std::int64_t cols) {
  return Tensor::empty({rows, cols}, dtype_of<T>(), MemCategory::Workspace);
}

}  // namespace th
