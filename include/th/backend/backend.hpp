#pragma once
// The backend seam (docs/architecture.md, "Backends"): the one road by which the model, the
// loss, the optimizer and the ZeRO engine reach kernels and memory. A backend has
//   - two memory spaces: Device (where the model's parameters, gradients, activations and
//     optimizer state live and kernels run) and Host (what host-only code reads: metrics,
//     checkpoints, the loss value, the offloaded optimizer). On the CPU backend both are host
//     memory from the same pool; on a CUDA backend (issue #17) Device is GPU memory;
//   - allocation of tensors by MemCategory into a space (per-category accounting of the pool);
//   - copies between the spaces and fill/zero;
//   - a compute stream and a copy stream (offload traffic): operations of a stream run in issue
//     order, the streams are ordered by events (record / stream_wait); sync() waits for both (a
//     no-op on the CPU backend, which runs every call before it returns; cudaStreamSynchronize
//     on CUDA; the worker threads' drain on the emulated device);
//   - the kernels (th/backend/kernels.hpp) for float and double.
// Host code never dereferences Device memory: it reads it through host_view() (an explicit
// device -> host copy into a staging tensor; the CPU backend returns the pointer itself, at no
// cost, but the call marks the place a device backend copies).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/backend/kernels.hpp"
#include "th/core/memory.hpp"
#include "th/core/tensor.hpp"
#include "th/parallel/comm.hpp"

namespace th {

// Pinned: host memory a device copies to and from asynchronously (cudaHostAlloc on CUDA; on the
// emulated device, pages it protects while a copy is in flight). The CPU backend: host memory.
enum class MemorySpace { Host, Device, Pinned };
// run%backend: parsed once (parse_backend_kind), never compared as a string deeper down.
enum class BackendKind { Cpu, Cuda, Emulated, Auto };

// When a Reservation::commit backs host pages. Now: at once, in one call instead of a page fault
// per page (for ranges the work that follows writes whole: a gather, a GEMM's gradient). OnTouch:
// each page at its first touch, so what is never touched costs no memory (an embedding lookup's
// rows of a table; a range written and given back block by block, each block committed Now just
// before it is written). Device backends back every granule at the commit either way.
enum class Backing { Now, OnTouch };

// A reserved range of Device address space with memory behind only the parts in use (CUDA's
// virtual memory management: cuMemAddressReserve, then cuMemCreate / cuMemMap per granule). ZeRO
// stages 2-3 keep their full-size parameter and gradient ranges in one, committing a unit's part
// before it is gathered or its gradients are written and decommitting it after. Offsets and sizes
// in bytes; the unit of backing is granularity() bytes (CPU: a page; CUDA: the driver's minimum
// granularity, 2 MiB on current GPUs; emulated: 64 KiB).
class Reservation {
 public:
  virtual ~Reservation() = default;
  virtual char* data() const = 0;
  virtual std::size_t bytes() const = 0;  // a multiple of granularity()
  virtual std::size_t granularity() const = 0;
  // Backs the granules that overlap [off, off + n) for all work issued from now on, on either
  // stream. A granule backed afresh reads zero.
  virtual void commit(std::size_t off, std::size_t n, Backing backing) = 0;
  // Gives back the granules wholly inside [off, off + n) once the work issued before, on both
  // streams, has finished (no host wait: the release completes later); their contents are lost and
  // using them again needs a commit. With `zero`, the bytes of [off, off + n) on granules that stay
  // backed are zeroed (stream-ordered), so the whole range reads zero afterwards.
  virtual void release(std::size_t off, std::size_t n, bool zero) = 0;
  // Bytes backed now, granules whose release is pending included (the memory report's count).
  virtual std::size_t committed() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "cpu", for the banner

  // ---- kernels
  virtual Kernels<float>& f32() = 0;
  virtual Kernels<double>& f64() = 0;
  template <typename T> Kernels<T>& kernels();
  // Mixed precision on fp32 storage: round in place to the nearest bf16 / fp16 value.
  virtual void round_to_bf16(float* x, std::int64_t n) = 0;
  virtual void round_to_fp16(float* x, std::int64_t n) = 0;
  // Storage conversions (round-to-nearest-even), both pointers in Device memory.
  virtual void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) = 0;
  virtual void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) = 0;
  virtual void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) = 0;
  virtual void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) = 0;
  // The same by 16-bit type (BF16 or F16): 2-byte storage of that type (compute copies, gradients).
  void narrow_16bit(DType type, std::uint16_t* y, const float* x, std::int64_t n) {
    if (type == DType::F16) fp32_to_fp16(y, x, n);
    else fp32_to_bf16(y, x, n);
  }
  void widen_16bit(DType type, float* y, const std::uint16_t* x, std::int64_t n) {
    if (type == DType::F16) fp16_to_fp32(y, x, n);
    else bf16_to_fp32(y, x, n);
  }

  // ---- memory
  // The pool of a space (its live / peak bytes per category are the memory report's).
  virtual MemoryPool& pool(MemorySpace space) = 0;
  // The Tensor::device() of a tensor allocated in `space` (CPU backend: Device::Host for both).
  virtual Device device_of(MemorySpace space) const = 0;
  Tensor empty(std::vector<std::int64_t> shape, DType dtype, MemCategory cat,
               MemorySpace space = MemorySpace::Device) {
    return Tensor::empty(std::move(shape), dtype, cat, pool(space), device_of(space));
  }
  Tensor zeros(std::vector<std::int64_t> shape, DType dtype, MemCategory cat,
               MemorySpace space = MemorySpace::Device) {
    Tensor t = empty(std::move(shape), dtype, cat, space);
    zero(t.raw(), t.bytes(), space);
    return t;
  }

  // ---- copies (bytes; ranges may overlap only for device_to_device) and fill
  virtual void host_to_device(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void device_to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void device_to_device(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void zero(void* dst, std::size_t bytes, MemorySpace space) = 0;
  // Host read of Device memory: a host pointer to the same `bytes`, valid while `staging` lives
  // and until the next operation on the source. A device backend allocates `staging` (Host
  // space, Workspace), copies device -> host and synchronizes; the CPU backend returns `src`.
  virtual const void* host_view(const void* src, std::size_t bytes, Tensor& staging) = 0;
  // Host write of Device memory: a host buffer of `bytes` to fill, then host_to_device(dst, it,
  // bytes) puts it in place. A device backend allocates `staging` (Host space); the CPU backend
  // returns `dst` itself (the copy is then a no-op).
  virtual void* host_target(void* dst, std::size_t bytes, Tensor& staging) = 0;

  // ---- asynchronous copies through pinned host memory (a device backend's staging)
  // Queued on stream `s` after everything issued before on it; `pinned` must come from
  // pool(MemorySpace::Pinned). The host may not read a pinned destination, nor write a pinned
  // source, until it has waited for an event recorded on `s` after the copy (or sync()): on the
  // emulated device such an access faults. CPU backend: an immediate memmove.
  // Stream::Copy is the offload traffic's own stream (parameters and optimizer state moving
  // between host and device), so those copies overlap the compute stream's kernels; the two
  // streams are ordered only by stream_wait().
  enum class Stream { Compute, Copy };
  virtual void copy_to_host_async(void* pinned_dst, const void* device_src, std::size_t bytes,
                                  Stream s = Stream::Compute) = 0;
  virtual void copy_to_device_async(void* device_dst, const void* pinned_src, std::size_t bytes,
                                    Stream s = Stream::Compute) = 0;

  // ---- streams
  // A point in a stream: everything issued on `s` before record() (cudaEventRecord); wait(e)
  // returns when all of it has finished (cudaEventSynchronize); stream_wait(s, e) makes work
  // issued later on stream `s` start after it, without blocking the host (cudaStreamWaitEvent).
  // sync() waits for both streams. The CPU backend: 0, and nothing to wait for.
  using Event = std::uint64_t;
  virtual Event record(Stream s = Stream::Compute) = 0;
  virtual void wait(Event e) = 0;
  virtual bool query(Event e) = 0;  // has everything up to e finished? (never blocks; cudaEventQuery)
  virtual void stream_wait(Stream s, Event e) = 0;
  virtual void sync() = 0;
  // ---- reserved ranges
  // `bytes` of Device address space (rounded up to the granularity), nothing backed yet. The CPU
  // backend's pages are backed by commit(Backing::Now) or at their first touch (a touch without
  // a commit is not an error there); a device backend needs the commit before any kernel or copy
  // touches the memory (the emulated device faults).
  virtual std::unique_ptr<Reservation> reserve(std::size_t bytes) = 0;

  // True where host code may dereference Device memory (the CPU backend): communication and I/O
  // may then use it in place instead of staging it through pinned buffers.
  virtual bool device_is_host() const = 0;

  // How the fp32 GEMMs of a run multiply (run_backend() calls it from the deck): `operands` is
  // precision%dtype's type (F32, BF16 or F16): a 16-bit type rounds the GEMM operands to it first
  // (the GEMM sees what a 2-byte tensor would hold) and multiplies with fp32 accumulation;
  // allow_tf32 lets fp32 GEMMs use TF32 tensor cores. The CPU and emulated backends take these
  // from the GEMM engine's plan, which the driver sets (th/kernels/gemm_engine.hpp; the CPU
  // computes fp16 GEMMs in fp32); the CUDA backend here (cuBLASLt, tensor cores for both 16-bit
  // types).
  virtual void configure_gemms(DType /*operands*/, bool /*allow_tf32*/) {}

  // ---- collectives on Device buffers
  // A communicator whose buffers are this backend's Device memory (NCCL on CUDA), collective over
  // bootstrap's ranks; null where the backend has none (then device buffers are staged through
  // pinned memory to the host communicator, th/train/device_comm.hpp).
  virtual std::unique_ptr<Comm> make_device_comm(Comm& /*bootstrap*/) { return nullptr; }
  // The one in use for this run (set by attach_device_comm, th/train/device_comm.hpp), or null.
  Comm* device_comm() const { return device_comm_; }
  void set_device_comm(Comm* c) { device_comm_ = c; }

 private:
  Comm* device_comm_ = nullptr;
};

template <> inline Kernels<float>& Backend::kernels<float>() { return f32(); }
template <> inline Kernels<double>& Backend::kernels<double>() { return f64(); }

// Typed shorthands (n elements).
template <typename T> void copy_device(Backend& be, T* dst, const T* src, std::int64_t n) {
  be.device_to_device(dst, src, sizeof(T) * static_cast<std::size_t>(n));
}
template <typename T> const T* host_view(Backend& be, const T* src, std::int64_t n, Tensor& staging) {
  return static_cast<const T*>(be.host_view(src, sizeof(T) * static_cast<std::size_t>(n), staging));
}
template <typename T> T* host_target(Backend& be, T* dst, std::int64_t n, Tensor& staging) {
  return static_cast<T*>(be.host_target(dst, sizeof(T) * static_cast<std::size_t>(n), staging));
}
template <typename T> void copy_to_device(Backend& be, T* dst, const T* src, std::int64_t n) {
  be.host_to_device(dst, src, sizeof(T) * static_cast<std::size_t>(n));
}
template <typename T> void copy_to_host(Backend& be, T* dst, const T* src, std::int64_t n) {
  be.device_to_host(dst, src, sizeof(T) * static_cast<std::size_t>(n));
}

// The reference backend: th::cpu kernels, the process-wide host pool (th/core/memory.hpp).
Backend& cpu_backend();
// The emulated device (run%backend = 'emulated'; th/backend/emulated.hpp): the CPU kernels on a
// worker thread, device memory the host cannot touch.
Backend& emulated_backend();

// The CUDA backend (src/backend/cuda_backend.cpp, built where nvcc was found): th::cuda kernels
// and cuBLAS on one stream, cudaMalloc'd device memory, cudaHostAlloc'd pinned memory; the GPU is
// the local rank's (set_backend_local_rank) modulo the visible devices. Throws th::Error where
// the build has no CUDA or no device is visible; cuda_backend_available() says which.
Backend& cuda_backend();
bool cuda_backend_available();
// The rank's index among the ranks of its node (MPI's shared-memory split; the driver sets it
// before any backend is made). Default 0.
void set_backend_local_rank(int local_rank);
int backend_local_rank();

// run%backend ('cpu' | 'cuda' | 'emulated' | 'auto'); anything else throws th::InputError.
BackendKind parse_backend_kind(const std::string& value);
// The backend of a run. Cpu gives cpu_backend(), Emulated emulated_backend(), Cuda
// cuda_backend() (th::InputError where this build has no CUDA or no GPU is visible), Auto the
// CUDA backend where it can run and the CPU backend elsewhere.
Backend& backend_for(BackendKind kind);

}  // namespace th
