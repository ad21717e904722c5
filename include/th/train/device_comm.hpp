#pragma once
// Collectives on device buffers (the training's parameters and gradients live in the backend's
// Device space). Where that memory is host memory (Backend::device_is_host(): the CPU backend)
// the communicator works on it in place, as before. On a device backend with a device
// communicator attached (parallel%comm 'auto' or 'nccl': NCCL on CUDA, the emulated device's
// stand-in) that one works on the device buffers. Otherwise (parallel%comm = 'mpi') a StagedComm
// (th/backend/staged_comm.hpp) moves them through pinned buffers to MPI. GradientSync makes the
// same choice for its buckets (grad_sync.hpp).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "th/backend/backend.hpp"
#include "th/parallel/comm.hpp"

namespace th {

// parallel%comm ('auto' | 'nccl' | 'mpi') for `be`: attaches be.make_device_comm(host) where asked
// for and available (Backend::set_device_comm: NcclComm on CUDA, a StagedComm standing in for it
// on the emulated device) and detaches it when destroyed. th::InputError for 'nccl' where the
// backend has no device communicator (the CPU backend). Construct it on every rank alike before
// the ZeRO engine; destroy it after.
class DeviceCommAttachment {
 public:
  DeviceCommAttachment(Backend& be, Comm& host, const std::string& request);
  ~DeviceCommAttachment();
  DeviceCommAttachment(const DeviceCommAttachment&) = delete;
  DeviceCommAttachment& operator=(const DeviceCommAttachment&) = delete;
  // "host buffers (CPU backend)", "NCCL", "MPI through pinned staging buffers": for the banner.
  const char* describe() const;

 private:
  Backend& be_;
  std::unique_ptr<Comm> comm_;
};

// `bytes` of device memory at `data`, rank root's copy to every rank.
void broadcast_device(Backend& be, Comm& comm, void* data, std::size_t bytes, int root);

// Comm::iall_gather on device memory: `count` floats at send from every rank, concatenated by
// rank into recv (send may lie inside recv, at this rank's block). The returned request copies
// the result into recv when it completes (test() true or wait()); until then recv is unchanged.
CommRequestPtr iall_gather_device(Backend& be, Comm& comm, const float* send, float* recv, std::size_t count);
// The same for `count` 2-byte values (bf16 / fp16 bits), carried as 4-byte words of two: count
// even, send and recv 4-byte aligned (a 16-bit ZeRO layout pads its segments to 2N,
// zero::layout_align, so every piece qualifies); th::Error otherwise.
CommRequestPtr iall_gather_device_16bit(Backend& be, Comm& comm, const std::uint16_t* send, std::uint16_t* recv,
                                        std::size_t count);

}  // namespace th
