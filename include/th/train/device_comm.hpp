#pragma once
// Collectives on device buffers (the training's parameters and gradients live in the backend's
// Device space). Where that memory is host memory (Backend::device_is_host(): the CPU backend)
// the communicator works on it in place, as before. On a device backend MPI never sees device
// memory: the data goes device -> pinned host buffer (an asynchronous copy the host waits for),
// through MPI, and pinned -> device (issue #17: the staging a CUDA run without NCCL uses; the
// emulated device runs the same code). GradientSync stages its buckets itself (grad_sync.hpp).
#include <cstddef>

#include "th/backend/backend.hpp"
#include "th/parallel/comm.hpp"

namespace th {

// `bytes` of device memory at `data`, rank root's copy to every rank.
void broadcast_device(Backend& be, Comm& comm, void* data, std::size_t bytes, int root);

// Comm::iall_gather on device memory: `count` floats at send from every rank, concatenated by
// rank into recv (send may lie inside recv, at this rank's block). The returned request copies
// the result into recv when it completes (test() true or wait()); until then recv is unchanged.
CommRequestPtr iall_gather_device(Backend& be, Comm& comm, const float* send, float* recv, std::size_t count);

}  // namespace th
