#pragma once
// Stream-ordered scratch memory for kernels that need a workspace (per-block partial sums,
// results on their way to the host). Allocated with cudaMallocAsync on the stream and freed on
// it when the Scratch goes out of scope, so later work on the same stream may still use it and
// no synchronisation is needed. The device's default memory pool is told to keep freed memory
// (release threshold: unlimited), so repeated steps do not go back to the driver.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace th::cuda {

class Scratch {
 public:
  Scratch(std::size_t bytes, cudaStream_t stream);  // bytes == 0: no allocation, get() is null
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <typename T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace th::cuda
