// The CUDA backend (run%backend = 'cuda', issue #17): th::cuda kernels and cuBLASLt on the compute
// stream; offload copies on a copy stream of their own, ordered against it by events; device
// memory from cudaMalloc behind the caching pool (the host pool's per-category accounting);
// pinned memory from cudaHostAlloc for the staging the host-side code does (offload, checkpoints,
// collectives with parallel%comm = 'mpi': the same code the emulated device runs in the CPU test
// suite); NCCL on device buffers as the device communicator. Compiled where nvcc is found; not
// yet run on a GPU by the project's CI: tests/gpu/run_gpu_checks.sh checks it against the CPU
// backend on a GPU machine.
#include <cuda.h>  // the driver API types only: its functions are reached through cudart (no libcuda link)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "device_backend.hpp"
#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/kernels/cuda.hpp"
#include "th/kernels/cuda_profile.hpp"
#include "th/kernels/nccl_comm.hpp"

namespace th {

namespace {

class CudaDeviceMemory final : public BlockSource {
 public:
  void* acquire(std::size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      (void)cudaGetLastError();  // out of memory: the pool trims its cache and asks again
      return nullptr;
    }
    return p;
  }
  void give_back(void* p, std::size_t) override { TH_CUDA_CHECK(cudaFree(p)); }
  std::size_t granularity() const override { return 256; }
  const char* name() const override { return "CUDA device"; }
};

class CudaPinnedMemory final : public BlockSource {
 public:
  void* acquire(std::size_t bytes) override {
    void* p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return p;
  }
  void give_back(void* p, std::size_t) override { TH_CUDA_CHECK(cudaFreeHost(p)); }
  std::size_t granularity() const override { return 4096; }
  const char* name() const override { return "CUDA pinned host"; }
};

class CudaBackend;

// The driver's virtual memory management, reached through cudart's entry-point lookup so that the
// executable does not link libcuda (it must start on machines without a GPU driver).
struct DriverVmm {
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&cuMemAddressReserve) reserve = nullptr;
  decltype(&cuMemAddressFree) free = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
};

const DriverVmm& driver_vmm() {
  static const DriverVmm d = [] {
    DriverVmm v;
    auto get = [](const char* name, auto& fn) {
      void* p = nullptr;
      cudaDriverEntryPointQueryResult q{};
      TH_CUDA_CHECK(cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q));
      TH_CHECK(q == cudaDriverEntryPointSuccess && p, std::string("the CUDA driver has no ") + name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    get("cuMemGetAllocationGranularity", v.granularity);
    get("cuMemAddressReserve", v.reserve);
    get("cuMemAddressFree", v.free);
    get("cuMemCreate", v.create);
    get("cuMemRelease", v.release);
    get("cuMemMap", v.map);
    get("cuMemUnmap", v.unmap);
    get("cuMemSetAccess", v.set_access);
    return v;
  }();
  return d;
}

void check_cu(CUresult r, const char* call) {
  if (r != CUDA_SUCCESS) throw Error(std::string("CUDA driver error: ") + call + " returned " + std::to_string(static_cast<int>(r)));
}

CUmemAllocationProp device_prop(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

// A reserved range of the GPU's address space (cuMemAddressReserve); each granule, when committed,
// gets physical memory (cuMemCreate, or a granule's given back earlier) mapped there (cuMemMap +
// cuMemSetAccess), zeroed on the compute stream, with the copy stream ordered after that zeroing.
// Unmapped (cuMemUnmap) once the work issued before the release has finished (GranuleReservation);
// the physical memory is kept for reuse by this range and released (cuMemRelease) with it. The
// memory report counts mapped granules; the kept ones are this range's cache, like the pool's.
class CudaReservation final : public GranuleReservation {
 public:
  static std::size_t granule(int device) {
    std::size_t g = 0;
    const CUmemAllocationProp prop = device_prop(device);
    check_cu(driver_vmm().granularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "cuMemGetAllocationGranularity");
    return g;
  }
  static std::size_t round(std::size_t bytes, std::size_t g) { return (std::max<std::size_t>(bytes, 1) + g - 1) / g * g; }
  static char* address(std::size_t bytes) {
    CUdeviceptr p = 0;
    check_cu(driver_vmm().reserve(&p, bytes, 0, 0, 0), "cuMemAddressReserve");
    return reinterpret_cast<char*>(static_cast<std::uintptr_t>(p));
  }
  CudaReservation(Backend& be, int device, std::size_t bytes, std::size_t g)
      : GranuleReservation(be, address(round(bytes, g)), round(bytes, g), g), device_(device),
        handles_(round(bytes, g) / g, 0) {}
  ~CudaReservation() override {
    try {
      give_back_all();
      for (CUmemGenericAllocationHandle h : spare_) check_cu(driver_vmm().release(h), "cuMemRelease");
      check_cu(driver_vmm().free(ptr(0), this->bytes()), "cuMemAddressFree");
    } catch (const std::exception& e) {  // a destructor must not throw: say so
      std::fprintf(stderr, "torch-handle: warning: releasing a reserved CUDA range failed: %s\n", e.what());
    }
  }

 private:
  CUdeviceptr ptr(std::size_t k) const {
    return static_cast<CUdeviceptr>(reinterpret_cast<std::uintptr_t>(data() + k * granularity()));
  }
  void map(std::size_t k) override {
    const DriverVmm& d = driver_vmm();
    const CUmemAllocationProp prop = device_prop(device_);
    CUmemGenericAllocationHandle h = 0;
    if (!spare_.empty()) {  // the physical memory of a granule given back earlier
      h = spare_.back();
      spare_.pop_back();
    } else {
      check_cu(d.create(&h, granularity(), &prop, 0), "cuMemCreate");
    }
    check_cu(d.map(ptr(k), granularity(), 0, h, 0), "cuMemMap");
    CUmemAccessDesc access{};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    check_cu(d.set_access(ptr(k), granularity(), &access, 1), "cuMemSetAccess");
    handles_[k] = h;
    be_.zero(data() + k * granularity(), granularity(), MemorySpace::Device);  // fresh memory reads zero
    be_.stream_wait(Backend::Stream::Copy, be_.record(Backend::Stream::Compute));
  }
  // The physical memory is kept for the next granule this range backs (no cuMemCreate /
  // cuMemRelease per unit and step; their number is bounded by the granules backed at once),
  // and released with the range.
  void unmap(std::size_t k) override {
    check_cu(driver_vmm().unmap(ptr(k), granularity()), "cuMemUnmap");
    spare_.push_back(handles_[k]);
    handles_[k] = 0;
  }
  int device_;
  std::vector<CUmemGenericAllocationHandle> handles_;
  std::vector<CUmemGenericAllocationHandle> spare_;  // unmapped physical granules, reused first
};

// Host index arrays (token ids, targets, key lengths, document starts) staged to the device for
// one kernel: a Workspace block of the device pool, filled by a stream-ordered copy from pageable
// memory (the call returns once the host array has been taken). The block returns to the pool
// after the launch; the pool hands it out again only to work issued later on the same stream.
class StagedInts {
 public:
  StagedInts(Backend& be, const int* host, std::int64_t n, cudaStream_t stream) {
    if (!host || n <= 0) return;
    t_ = be.empty({n}, DType::I32, MemCategory::Workspace);
    TH_CUDA_CHECK(cudaMemcpyAsync(t_.raw(), host, sizeof(int) * static_cast<std::size_t>(n), cudaMemcpyHostToDevice,
                                  stream));
  }
  const int* get() const { return t_.defined() ? t_.data<std::int32_t>() : nullptr; }

 private:
  Tensor t_;
};

class CudaKernels final : public Kernels<float> {
 public:
  CudaKernels(Backend& be, cudaStream_t s) : be_(be), s_(s) {}
  void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
            float beta, float* C, int ldc) override {
    cuda::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s_);
  }
  void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                            std::int64_t sa, const float* B, int ldb, std::int64_t sb, float beta, float* C, int ldc,
                            std::int64_t sc, int batch) override {
    cuda::gemm_strided_batched(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch, s_);
  }
  void linear_forward(float* y, const float* x, const float* W, const float* b, std::int64_t N, int in,
                      int out) override {
    cuda::linear_forward(y, x, W, b, N, in, out, s_);
  }
  void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                       std::int64_t N, int in, int out, bool acc) override {
    cuda::linear_backward(dx, dW, db, dy, x, W, N, in, out, acc, s_);
  }
  void bias_add(float* y, const float* b, std::int64_t N, int D) override { cuda::bias_add(y, b, N, D, s_); }
  void bias_grad(float* db, const float* dy, std::int64_t N, int D) override { cuda::bias_grad(db, dy, N, D, s_); }
  void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* g, const float* b,
                         std::int64_t N, int D, float eps) override {
    cuda::layernorm_forward(y, mean, rstd, x, g, b, N, D, eps, s_);
  }
  void layernorm_backward(float* dx, float* dg, float* db, const float* dy, const float* x, const float* g,
                          const float* mean, const float* rstd, std::int64_t N, int D) override {
    cuda::layernorm_backward(dx, dg, db, dy, x, g, mean, rstd, N, D, s_);
  }
  void bias_act_forward(float* y, float* pre, const float* b, std::int64_t N, int F, cpu::Activation act) override {
    cuda::bias_act_forward(y, pre, b, N, F, act, s_);
  }
  void bias_act_backward(float* dpre, float* db, const float* dy, const float* pre, std::int64_t N, int F,
                         cpu::Activation act) override {
    cuda::bias_act_backward(dpre, db, dy, pre, N, F, act, s_);
  }
  void add(float* out, const float* a, const float* b, std::int64_t n) override { cuda::add(out, a, b, n, s_); }
  void add_inplace(float* a, const float* b, std::int64_t n) override { cuda::add_inplace(a, b, n, s_); }
  void scale_inplace(float* a, float s, std::int64_t n) override { cuda::scale_inplace(a, s, n, s_); }
  double sum_squares(const float* a, std::int64_t n) override { return cuda::sum_squares(a, n, s_); }
  void fill(float* x, float value, std::int64_t n) override { cuda::fill(x, value, n, s_); }
  void attention_softmax_forward(float* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                                 int q_offset, float scale, const int* key_begin) override {
    const StagedInts len(be_, key_len, B, s_), begin(be_, key_begin, static_cast<std::int64_t>(B) * Tq, s_);
    cuda::attention_softmax_forward(P, B, H, Tq, Tk, len.get(), causal, q_offset, scale, begin.get(), s_);
  }
  void softmax_backward(float* dS, const float* dP, const float* P, std::int64_t rows, int Tk, float scale) override {
    cuda::softmax_backward(dS, dP, P, rows, Tk, scale, s_);
  }
  void embedding_forward(float* y, const int* tokens, const float* table, const float* pe, int B, int L, int D,
                         float scale) override {
    const StagedInts tok(be_, tokens, static_cast<std::int64_t>(B) * L, s_);
    cuda::embedding_forward(y, tok.get(), table, pe, B, L, D, scale, s_);
  }
  void embedding_backward(float* dtable, const int* tokens, const float* dy, std::int64_t N, int D,
                          float scale) override {
    const StagedInts tok(be_, tokens, N, s_);
    cuda::embedding_backward(dtable, tok.get(), dy, N, D, scale, s_);
  }
  void sinusoidal_table(float* pe, int L, int D) override { cuda::sinusoidal_table(pe, L, D, s_); }
  void position_backward(float* dpe, const float* dy, int B, int L, int D) override {
    cuda::position_backward(dpe, dy, B, L, D, s_);
  }
  double cross_entropy_forward(float* losses, float* lse, const float* logits, const int* targets, std::int64_t N,
                               int V, float smoothing, int ignore, std::int64_t* count) override {
    const StagedInts tg(be_, targets, N, s_);
    return cuda::cross_entropy_forward(losses, lse, logits, tg.get(), N, V, smoothing, ignore, count, s_);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets,
                              std::int64_t N, int V, float smoothing, int ignore, float dloss) override {
    const StagedInts tg(be_, targets, N, s_);
    cuda::cross_entropy_backward(dlogits, logits, lse, tg.get(), N, V, smoothing, ignore, dloss, s_);
  }
  void dropout_forward(float* y, const float* x, std::int64_t n, float p, std::uint64_t seed,
                       std::uint64_t stream) override {
    cuda::dropout_forward(y, x, n, p, seed, stream, s_);
  }
  void dropout_add(float* y, const float* x, const float* f, std::int64_t n, float p, std::uint64_t seed,
                   std::uint64_t stream) override {
    cuda::dropout_add(y, x, f, n, p, seed, stream, s_);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, std::int64_t t) override {
    cuda::adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, t, s_);
  }

 private:
  Backend& be_;
  cudaStream_t s_;
};

// The double kernels are the gradient checks' (CPU backend only).
class NoDoubleKernels final : public Kernels<double> {
 public:
  [[noreturn]] static void no() { throw Error("the CUDA backend has no double kernels (gradient checks run on the CPU)"); }
  void gemm(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*, int) override { no(); }
  void gemm_strided_batched(bool, bool, int, int, int, double, const double*, int, std::int64_t, const double*, int,
                            std::int64_t, double, double*, int, std::int64_t, int) override { no(); }
  void linear_forward(double*, const double*, const double*, const double*, std::int64_t, int, int) override { no(); }
  void linear_backward(double*, double*, double*, const double*, const double*, const double*, std::int64_t, int, int,
                       bool) override { no(); }
  void bias_add(double*, const double*, std::int64_t, int) override { no(); }
  void bias_grad(double*, const double*, std::int64_t, int) override { no(); }
  void layernorm_forward(double*, double*, double*, const double*, const double*, const double*, std::int64_t, int,
                         double) override { no(); }
  void layernorm_backward(double*, double*, double*, const double*, const double*, const double*, const double*,
                          const double*, std::int64_t, int) override { no(); }
  void bias_act_forward(double*, double*, const double*, std::int64_t, int, cpu::Activation) override { no(); }
  void bias_act_backward(double*, double*, const double*, const double*, std::int64_t, int, cpu::Activation) override {
    no();
  }
  void add(double*, const double*, const double*, std::int64_t) override { no(); }
  void add_inplace(double*, const double*, std::int64_t) override { no(); }
  void scale_inplace(double*, double, std::int64_t) override { no(); }
  double sum_squares(const double*, std::int64_t) override { no(); }
  void fill(double*, double, std::int64_t) override { no(); }
  void attention_softmax_forward(double*, int, int, int, int, const int*, bool, int, double, const int*) override { no(); }
  void softmax_backward(double*, const double*, const double*, std::int64_t, int, double) override { no(); }
  void embedding_forward(double*, const int*, const double*, const double*, int, int, int, double) override { no(); }
  void embedding_backward(double*, const int*, const double*, std::int64_t, int, double) override { no(); }
  void sinusoidal_table(double*, int, int) override { no(); }
  void position_backward(double*, const double*, int, int, int) override { no(); }
  double cross_entropy_forward(double*, double*, const double*, const int*, std::int64_t, int, double, int,
                               std::int64_t*) override { no(); }
  void cross_entropy_backward(double*, const double*, const double*, const int*, std::int64_t, int, double, int,
                              double) override { no(); }
  void dropout_forward(double*, const double*, std::int64_t, float, std::uint64_t, std::uint64_t) override { no(); }
  void dropout_add(double*, const double*, const double*, std::int64_t, float, std::uint64_t, std::uint64_t) override {
    no();
  }
  void adamw_update(double*, const double*, double*, double*, std::int64_t, double, double, double, double, double,
                    std::int64_t) override { no(); }
};

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(int device) : DeviceBackend(device_mem_, pinned_mem_), device_(device) {
    TH_CUDA_CHECK(cudaSetDevice(device));
    granule_ = CudaReservation::granule(device);
    TH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    TH_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    f32_ = std::make_unique<CudaKernels>(*this, stream_);
  }
  const char* name() const override { return "cuda"; }
  Kernels<float>& f32() override { return *f32_; }
  Kernels<double>& f64() override { return f64_; }
  void round_to_bf16(float* x, std::int64_t n) override { cuda::round_to_bf16(x, n, stream_); }
  void round_to_fp16(float* x, std::int64_t n) override { cuda::round_to_fp16(x, n, stream_); }
  void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) override { cuda::fp32_to_bf16(y, x, n, stream_); }
  void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { cuda::bf16_to_fp32(y, x, n, stream_); }
  void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) override { cuda::fp32_to_fp16(y, x, n, stream_); }
  void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { cuda::fp16_to_fp32(y, x, n, stream_); }

  // From pageable memory: returns once the source has been taken (stream-ordered on the device).
  void host_to_device(void* dst, const void* src, std::size_t bytes) override {
    if (bytes) TH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void device_to_host(void* dst, const void* src, std::size_t bytes) override {
    if (!bytes) return;
    TH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    TH_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void device_to_device(void* dst, const void* src, std::size_t bytes) override {
    if (bytes && dst != src) TH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void zero(void* dst, std::size_t bytes, MemorySpace space) override {
    if (!bytes) return;
    if (space == MemorySpace::Device) TH_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
    else std::memset(dst, 0, bytes);
  }
  const void* host_view(const void* src, std::size_t bytes, Tensor& staging) override {
    if (!bytes) return src;
    staging = host_staging(bytes);
    device_to_host(staging.raw(), src, bytes);
    return staging.raw();
  }
  void* host_target(void* dst, std::size_t bytes, Tensor& staging) override {
    if (!bytes) return dst;
    staging = host_staging(bytes);
    return staging.raw();
  }
  void copy_to_host_async(void* pinned_dst, const void* device_src, std::size_t bytes,
                          Stream s = Stream::Compute) override {
    copy_async(pinned_dst, device_src, bytes, cudaMemcpyDeviceToHost, s, "copy/device_to_host");
  }
  void copy_to_device_async(void* device_dst, const void* pinned_src, std::size_t bytes,
                            Stream s = Stream::Compute) override {
    copy_async(device_dst, pinned_src, bytes, cudaMemcpyHostToDevice, s, "copy/host_to_device");
  }
  // Events: a pool of cudaEvent_t; an Event number is the (seq, stream) of a record, seq * 2 plus
  // 1 on the copy stream. Each stream's recorded events are recycled once one at or after them
  // on the same stream has been waited for, or has completed when record() looks.
  Event record(Stream s = Stream::Compute) override {
    recycle_completed();
    cudaEvent_t ev = nullptr;
    if (free_events_.empty()) {
      TH_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    } else {
      ev = free_events_.back();
      free_events_.pop_back();
    }
    TH_CUDA_CHECK(cudaEventRecord(ev, stream(s)));
    const Event e = ++seq_ * 2 + (s == Stream::Copy ? 1 : 0);
    events_[index(s)].emplace(e, ev);
    return e;
  }
  void wait(Event e) override {
    auto& recorded = events_[e & 1];
    auto it = recorded.find(e);
    if (it != recorded.end()) TH_CUDA_CHECK(cudaEventSynchronize(it->second));
    // Everything recorded on that stream up to e is complete now (the stream is in order).
    for (auto i = recorded.begin(); i != recorded.end() && i->first <= e;) {
      free_events_.push_back(i->second);
      i = recorded.erase(i);
    }
  }
  bool query(Event e) override {
    auto& recorded = events_[e & 1];
    auto it = recorded.find(e);
    if (it == recorded.end()) return true;  // recycled: complete
    const cudaError_t q = cudaEventQuery(it->second);
    if (q == cudaErrorNotReady) return false;
    TH_CUDA_CHECK(q);
    return true;
  }
  std::unique_ptr<Reservation> reserve(std::size_t bytes) override {
    return std::make_unique<CudaReservation>(*this, device_, bytes, granule_);
  }
  void stream_wait(Stream s, Event e) override {
    if ((e & 1) == static_cast<Event>(index(s))) return;  // the same stream: in order already
    auto& recorded = events_[e & 1];
    auto it = recorded.find(e);
    if (it != recorded.end()) TH_CUDA_CHECK(cudaStreamWaitEvent(stream(s), it->second, 0));
    // Not found: recycled, so complete; nothing to wait for.
  }
  void sync() override {
    TH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    TH_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    copy_timeline_.collect(false);
  }
  // NCCL over the bootstrap's ranks, its own stream ordered after this compute stream.
  std::unique_ptr<Comm> make_device_comm(Comm& bootstrap) override {
    auto c = std::make_unique<NcclComm>(bootstrap);
    c->set_compute_stream(stream_);
    return c;
  }
  void configure_gemms(DType operands, bool allow_tf32) override {
    cuda::set_gemm_operands(operands == DType::BF16  ? cuda::GemmOperands::BF16
                            : operands == DType::F16 ? cuda::GemmOperands::F16
                                                     : cuda::GemmOperands::F32);
    cuda::set_allow_tf32(allow_tf32);
  }

 private:
  CudaDeviceMemory device_mem_;
  CudaPinnedMemory pinned_mem_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaKernels> f32_;
  NoDoubleKernels f64_;
  cudaStream_t stream(Stream s) const { return s == Stream::Copy ? copy_stream_ : stream_; }
  // Copies on the copy stream appear on the profiler's device timeline (track "device: copy"),
  // so trace.json shows them beside the compute stream's work they overlap.
  void copy_async(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, Stream s, const char* name) {
    if (!bytes) return;
    std::int64_t ev = -1;
    if (s == Stream::Copy) {
      copy_timeline_.collect(false);
      ev = copy_timeline_.begin(copy_stream_, name, Category::Offload, {{"bytes", static_cast<std::int64_t>(bytes)}});
    }
    TH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream(s)));
    if (s == Stream::Copy) copy_timeline_.end(ev, copy_stream_);
  }
  static int index(Stream s) { return s == Stream::Copy ? 1 : 0; }
  // Returns to the pool the oldest events of each stream that have completed.
  void recycle_completed() {
    for (auto& recorded : events_)
      while (!recorded.empty()) {
        const cudaError_t q = cudaEventQuery(recorded.begin()->second);
        if (q == cudaErrorNotReady) break;
        TH_CUDA_CHECK(q);
        free_events_.push_back(recorded.begin()->second);
        recorded.erase(recorded.begin());
      }
  }
  cudaStream_t copy_stream_ = nullptr;  // offload traffic (Stream::Copy)
  int device_ = 0;
  std::size_t granule_ = 0;
  cuda::DeviceTimeline copy_timeline_{profiler(), "device: copy"};  // the driver's minimum granularity for reserved ranges
  std::map<Event, cudaEvent_t> events_[2];  // per stream, by Event number
  std::vector<cudaEvent_t> free_events_;
  Event seq_ = 0;
};

}  // namespace

bool cuda_backend_available() { return cuda::device_available(); }

Backend& cuda_backend() {
  static CudaBackend* be = [] {
    int count = 0;
    TH_CUDA_CHECK(cudaGetDeviceCount(&count));
    TH_CHECK(count > 0, "no CUDA device visible");
    return new CudaBackend(backend_local_rank() % count);  // one local rank per GPU; never destroyed
  }();
  return *be;
}

}  // namespace th
