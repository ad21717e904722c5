#include "th/core/tensor.hpp"

#include <cstring>

#include "th/core/error.hpp"

namespace th {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

const char* to_string(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::F64: return "fp64";
    case DType::BF16: return "bf16";
    case DType::F16: return "fp16";
    case DType::I32: return "int32";
  }
  return "unknown";
}

DType parse_dtype(const std::string& s) {
  if (s == "fp32") return DType::F32;
  if (s == "fp64") return DType::F64;
  if (s == "bf16") return DType::BF16;
  if (s == "fp16") return DType::F16;
  throw Error("unknown dtype '" + s + "'");
}

Tensor::Block::~Block() {
  if (pool) pool->release(ptr);
}

Tensor Tensor::empty(std::vector<std::int64_t> shape, DType dtype, MemCategory cat, MemoryPool& pool,
                     Device device) {
  Tensor t;
  t.device_ = device;
  t.shape_ = std::move(shape);
  for (auto d : t.shape_) TH_CHECK(d >= 0, "negative dimension in " + shape_string(t.shape_));
  t.dtype_ = dtype;
  t.cat_ = cat;
  t.block_ = std::make_shared<Block>();
  t.block_->ptr = pool.allocate(t.bytes(), cat);
  t.block_->pool = &pool;
  return t;
}

Tensor Tensor::zeros(std::vector<std::int64_t> shape, DType dtype, MemCategory cat, MemoryPool& pool) {
  Tensor t = empty(std::move(shape), dtype, cat, pool);
  t.zero_();
  return t;
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape_) n *= d;
  return shape_.empty() && !block_ ? 0 : n;
}

void Tensor::zero_() {
  TH_CHECK(device_ == Device::Host, "Tensor::zero_() of device memory (its backend zeroes it)");
  if (block_) std::memset(block_->ptr, 0, bytes());
}

template <typename T> T* Tensor::data() const {
  TH_CHECK(dtype_ == dtype_of<T>(), std::string("tensor holds ") + to_string(dtype_) + ", asked for " +
                                        to_string(dtype_of<T>()));
  return static_cast<T*>(raw());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template std::int32_t* Tensor::data<std::int32_t>() const;

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace th
