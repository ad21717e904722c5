#pragma once
// A small tensor: shape, dtype, device, and a block from a caching pool. Contiguous row-major;
// no strides (kernels take leading dimensions where they need views). Copying a Tensor shares
// the block; the block returns to its pool when the last copy goes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/core/memory.hpp"

namespace th {

enum class DType { F32, F64, BF16, F16, I32 };
enum class Device { Host, Cuda };
std::size_t dtype_size(DType t);
const char* to_string(DType t);
DType parse_dtype(const std::string& s);  // "fp32" | "bf16" | "fp16" | "fp64"

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::I32; }

class Tensor {
 public:
  Tensor() = default;
  // `device`: where the pool's memory is (th/backend/backend.hpp allocates through its pools).
  static Tensor empty(std::vector<std::int64_t> shape, DType dtype, MemCategory cat,
                      MemoryPool& pool = host_pool(), Device device = Device::Host);
  static Tensor zeros(std::vector<std::int64_t> shape, DType dtype, MemCategory cat,
                      MemoryPool& pool = host_pool());

  bool defined() const { return static_cast<bool>(block_); }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(static_cast<std::size_t>(i)); }
  std::int64_t numel() const;
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  MemCategory category() const { return cat_; }
  void* raw() const { return block_ ? block_->ptr : nullptr; }
  template <typename T> T* data() const;  // checks dtype
  void reset() { block_.reset(); shape_.clear(); }
  void zero_();  // host memory only (a device tensor is zeroed by its backend)

 private:
  struct Block {
    void* ptr = nullptr;
    MemoryPool* pool = nullptr;
    ~Block();
  };
  std::shared_ptr<Block> block_;
  std::vector<std::int64_t> shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::Host;
  MemCategory cat_ = MemCategory::Workspace;
};

std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace th
