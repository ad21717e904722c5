#pragma once
// The emulated device's kernels (emulated_kernels.cpp) and the two things they need of the device
// (emulated_backend.cpp): the arena their pointer arguments must lie in, and the compute stream
// that runs them.
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "emulated_memory.hpp"
#include "th/backend/kernels.hpp"
#include "th/core/error.hpp"

namespace th::emulated {

class KernelQueue {
 public:
  virtual void queue(std::function<void()> op) = 0;           // on the compute stream
  virtual void queue_and_wait(std::function<void()> op) = 0;  // ... and waited for
  virtual const Arena& device() const = 0;

 protected:
  ~KernelQueue() = default;
};

// The worker's address for an argument that must be device memory (null stays null); `what`
// names the call in the error.
template <typename P> P* device_alias(const Arena& device, P* p, const char* what) {
  if (!p) return p;
  if (!device.contains(p)) {
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", static_cast<const void*>(p));
    throw Error(std::string(what) + ": an argument is not emulated device memory (" + addr +
                "); kernels take device pointers, host data goes through host_to_device");
  }
  return reinterpret_cast<P*>(device.alias(p));
}

template <typename T> std::unique_ptr<Kernels<T>> make_kernels(KernelQueue& q);

}  // namespace th::emulated
