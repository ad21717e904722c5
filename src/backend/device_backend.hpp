#pragma once
// What the backends with memory of their own (the emulated device, CUDA) share: a Device pool and
// a Pinned pool over their block sources (the per-category accounting of th/core/memory.hpp), the
// process host pool for Host, Device::Cuda as the tensors' device, and host staging buffers
// (pinned: host_view / host_target, and so the checkpoint files, evaluation and the offloaded
// optimizer's gradient copies, move through page-locked memory).
#include <cstddef>

#include "th/backend/backend.hpp"

namespace th {

class DeviceBackend : public Backend {
 public:
  // The sources are members of the derived class: only their addresses are kept here.
  DeviceBackend(BlockSource& device, BlockSource& pinned) : device_pool_(&device), pinned_pool_(&pinned) {}
  MemoryPool& pool(MemorySpace space) override {
    switch (space) {
      case MemorySpace::Device: return device_pool_;
      case MemorySpace::Pinned: return pinned_pool_;
      case MemorySpace::Host: break;
    }
    return host_pool();
  }
  Device device_of(MemorySpace space) const override {
    return space == MemorySpace::Device ? Device::Cuda : Device::Host;
  }
  bool device_is_host() const override { return false; }

 protected:
  // A pinned host buffer of at least `bytes`, Workspace: where host_view copies to and
  // host_target lets the caller write.
  Tensor host_staging(std::size_t bytes) {
    return empty({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  }

 private:
  MemoryPool device_pool_, pinned_pool_;
};

}  // namespace th
