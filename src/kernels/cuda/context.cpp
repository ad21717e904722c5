// Host-side CUDA plumbing: device detection, the error path of TH_CUDA_CHECK / TH_CUBLAS_CHECK,
// per-thread cuBLAS handles, the TF32 switch and stream-ordered scratch memory.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "scratch.hpp"
#include "th/core/error.hpp"
#include "th/kernels/cuda.hpp"
#include "th/parallel/runtime.hpp"

namespace th::cuda {

bool device_available() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error for the caller
    return false;
  }
  return count > 0;
}

namespace detail {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so the next checked call starts clean
  throw_error(file, line,
              "CUDA error on rank " + std::to_string(world_rank()) + ": `" + call + "` returned " +
                  cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw_error(file, line,
              "cuBLAS error on rank " + std::to_string(world_rank()) + ": `" + call + "` returned " +
                  cublasGetStatusName(status) + " (" + cublasGetStatusString(status) + ")");
}

}  // namespace detail

cublasHandle_t cublas_handle() {
  // One handle per (thread, device). They are deliberately never destroyed: destroying them
  // from thread_local/static destructors can run after the CUDA runtime has shut down.
  thread_local std::vector<cublasHandle_t> handles;
  int device = 0;
  TH_CUDA_CHECK(cudaGetDevice(&device));
  if (static_cast<std::size_t>(device) >= handles.size())
    handles.resize(static_cast<std::size_t>(device) + 1, nullptr);
  cublasHandle_t& h = handles[static_cast<std::size_t>(device)];
  if (!h) TH_CUBLAS_CHECK(cublasCreate(&h));
  return h;
}

namespace {
std::atomic<bool> g_allow_tf32{false};

// Keep freed blocks in the default pool of `device` (once per device per process).
void keep_pool_memory(int device) {
  static std::mutex mutex;
  static std::vector<bool> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<std::size_t>(device) >= done.size()) done.resize(static_cast<std::size_t>(device) + 1, false);
  if (done[static_cast<std::size_t>(device)]) return;
  cudaMemPool_t pool = nullptr;
  TH_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  unsigned long long threshold = ~0ULL;
  TH_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  done[static_cast<std::size_t>(device)] = true;
}
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

Scratch::Scratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
  if (bytes == 0) return;
  int device = 0;
  TH_CUDA_CHECK(cudaGetDevice(&device));
  keep_pool_memory(device);
  TH_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
}

Scratch::~Scratch() {
  if (!ptr_) return;
  const cudaError_t err = cudaFreeAsync(ptr_, stream_);
  if (err != cudaSuccess) {  // destructors must not throw; say so and clear the error
    (void)cudaGetLastError();
    std::fprintf(stderr, "[rank %d] torch-handle: warning: cudaFreeAsync failed: %s\n", world_rank(),
                 cudaGetErrorString(err));
  }
}

}  // namespace th::cuda
