#pragma once
// Shorthands for the model's buffers, in the backend's device memory: saved activations vs.
// scratch that dies within a call.
#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"

namespace th {

template <typename T> Tensor saved_buffer(Backend& be, std::int64_t rows, std::int64_t cols) {
  return be.empty({rows, cols}, dtype_of<T>(), MemCategory::Activations);
}
template <typename T> Tensor scratch_buffer(Backend& be, std::int64_t rows, std::int64_t cols) {
  return be.empty({rows, cols}, dtype_of<T>(), MemCategory::Workspace);
}

}  // namespace th
