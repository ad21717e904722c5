// The CPU backend: the reference implementation of the seam (th/backend/backend.hpp). Every
// kernel is its namesake in th::cpu, called with the same arguments, so a model run through this
// backend computes bit for bit what the direct calls computed. Device memory is host memory from
// the process-wide pool: copies are memmove, host_view() aliases, sync() has nothing to wait for.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/error.hpp"

namespace th {

namespace {

// Anonymous address space (MAP_NORESERVE): commit() backs the pages (on kernels before 5.14 the
// first touch does), release() gives them back with madvise(MADV_DONTNEED), after which they read
// zero; committed() counts the resident pages (mincore). Huge pages are off, so commits and
// releases are page-sized.
class CpuReservation final : public Reservation {
 public:
  explicit CpuReservation(std::size_t bytes) : page_(static_cast<std::size_t>(sysconf(_SC_PAGESIZE))) {
    bytes_ = (std::max<std::size_t>(bytes, 1) + page_ - 1) / page_ * page_;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error("cannot reserve " + std::to_string(bytes_) + " bytes of address space: " + std::strerror(errno));
    base_ = static_cast<char*>(p);
    madvise(base_, bytes_, MADV_NOHUGEPAGE);
    resident_.resize(bytes_ / page_);
  }
  ~CpuReservation() override { munmap(base_, bytes_); }
  char* data() const override { return base_; }
  std::size_t bytes() const override { return bytes_; }
  std::size_t granularity() const override { return page_; }
  // Backing::Now: backs the pages now, in one call (MADV_POPULATE_WRITE, Linux 5.14+), instead of
  // a page fault per page on first touch, two where the first touch is a read (the zero page, then
  // copy on write): under some hypervisors a fault costs microseconds, and a bf16 step releases
  // and recommits its gradient window unit by unit. Backing::OnTouch, or a kernel without it: the
  // first touch backs each page.
  void commit(std::size_t off, std::size_t n, Backing backing) override {
    if (backing == Backing::OnTouch || !populate_ || n == 0 || off >= bytes_) return;
    const std::size_t lo = off / page_ * page_, hi = std::min(bytes_, (off + n + page_ - 1) / page_ * page_);
    while (madvise(base_ + lo, hi - lo, kPopulateWrite) != 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ENOMEM || errno == EFAULT)
        throw Error("cannot back " + std::to_string(hi - lo) + " bytes of memory (madvise(MADV_POPULATE_WRITE): " +
                    std::strerror(errno) + ")");
      populate_ = false;  // an older kernel (EINVAL) or one that refuses it: pages are backed on first touch
      return;
    }
  }
  void release(std::size_t off, std::size_t n, bool zero) override {
    n = std::min(off + n, bytes_) - std::min(off, bytes_);
    const std::size_t end = off + n;
    const std::size_t lo = (off + page_ - 1) / page_ * page_, hi = end / page_ * page_;
    if (hi > lo) {
      if (madvise(base_ + lo, hi - lo, MADV_DONTNEED) != 0)
        throw Error(std::string("madvise(MADV_DONTNEED) failed: ") + std::strerror(errno));
      if (zero) {
        std::memset(base_ + off, 0, lo - off);
        std::memset(base_ + hi, 0, end - hi);
      }
    } else if (zero && n) {
      std::memset(base_ + off, 0, n);
    }
  }
  std::size_t committed() override {
    if (mincore(base_, bytes_, resident_.data()) != 0) throw Error(std::string("mincore failed: ") + std::strerror(errno));
    std::size_t n = 0;
    for (unsigned char c : resident_) n += c & 1;
    return n * page_;
  }

 private:
#ifdef MADV_POPULATE_WRITE
  static constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
  static constexpr int kPopulateWrite = 23;  // Linux 5.14's value, for older C library headers
#endif
  std::size_t page_, bytes_ = 0;
  char* base_ = nullptr;
  bool populate_ = true;
  std::vector<unsigned char> resident_;
};

template <typename T>
class CpuKernels final : public Kernels<T> {
 public:
  void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
            int ldc) override {
    cpu::gemm<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  // The GEMM engine's batched kernel (a loop of single GEMMs on OpenBLAS; one 3-D matmul on oneDNN).
  void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, std::int64_t sa,
                            const T* B, int ldb, std::int64_t sb, T beta, T* C, int ldc, std::int64_t sc,
                            int batch) override {
    cpu::gemm_strided_batched<T>(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
  void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out) override {
    cpu::linear_forward<T>(y, x, W, b, N, in, out);
  }
  void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N, int in, int out,
                       bool accumulate_dx) override {
    cpu::linear_backward<T>(dx, dW, db, dy, x, W, N, in, out, accumulate_dx);
  }
  bool bf16_operands() const override { return std::is_same_v<T, float>; }
  void linear_forward_bf16(T* y, const T* x, const std::uint16_t* x16, const T* W, const std::uint16_t* W16,
                           const T* b, std::int64_t N, int in, int out) override {
    if constexpr (std::is_same_v<T, float>) cpu::linear_forward_bf16(y, x, x16, W, W16, b, N, in, out);
    else Kernels<T>::linear_forward_bf16(y, x, x16, W, W16, b, N, in, out);
  }
  void linear_backward_bf16(T* dx, T* dW, T* db, const T* dy, const std::uint16_t* dy16, float alpha, const T* x,
                            const std::uint16_t* x16, const T* W, const std::uint16_t* W16, std::int64_t N, int in,
                            int out, bool acc, int ldy) override {
    if constexpr (std::is_same_v<T, float>)
      cpu::linear_backward_bf16(dx, dW, db, dy, dy16, alpha, x, x16, W, W16, N, in, out, acc, ldy);
    else
      Kernels<T>::linear_backward_bf16(dx, dW, db, dy, dy16, alpha, x, x16, W, W16, N, in, out, acc, ldy);
  }
  void embedding_forward_bf16(T* y, const int* tokens, const std::uint16_t* table16, const T* pe, int B, int L, int D,
                              T scale) override {
    if constexpr (std::is_same_v<T, float>) cpu::embedding_forward_bf16(y, tokens, table16, pe, B, L, D, scale);
    else Kernels<T>::embedding_forward_bf16(y, tokens, table16, pe, B, L, D, scale);
  }
  void bias_act_backward_bf16(T* dpre, T* db, const T* dy, const std::uint16_t* pre16, std::int64_t N, int F,
                              cpu::Activation act) override {
    if constexpr (std::is_same_v<T, float>) cpu::bias_act_backward_bf16(dpre, db, dy, pre16, N, F, act);
    else Kernels<T>::bias_act_backward_bf16(dpre, db, dy, pre16, N, F, act);
  }
  void gemm_strided_batched_mixed(bool ta, bool tb, int M, int N, int K, float alpha, const T* A,
                                  const std::uint16_t* A16, int lda, std::int64_t sa, const T* B,
                                  const std::uint16_t* B16, int ldb, std::int64_t sb, float beta, T* C, int ldc,
                                  std::int64_t sc, int batch) override {
    if constexpr (std::is_same_v<T, float>)
      cpu::gemm_strided_batched_mixed(ta, tb, M, N, K, alpha, A, A16, lda, sa, B, B16, ldb, sb, beta, C, ldc, sc, batch);
    else
      Kernels<T>::gemm_strided_batched_mixed(ta, tb, M, N, K, alpha, A, A16, lda, sa, B, B16, ldb, sb, beta, C, ldc,
                                             sc, batch);
  }
  double cross_entropy_forward_grad_bf16(T* losses, T* lse, std::uint16_t* grad16, const T* logits, const int* targets,
                                         std::int64_t N, int V, T smoothing, int ignore, std::int64_t* count) override {
    if constexpr (std::is_same_v<T, float>)
      return cpu::cross_entropy_forward_grad_bf16(losses, lse, grad16, logits, targets, N, V, smoothing, ignore, count);
    else
      return Kernels<T>::cross_entropy_forward_grad_bf16(losses, lse, grad16, logits, targets, N, V, smoothing, ignore,
                                                         count);
  }
  void bias_add(T* y, const T* b, std::int64_t N, int D) override { cpu::bias_add<T>(y, b, N, D); }
  void bias_grad(T* db, const T* dy, std::int64_t N, int D) override { cpu::bias_grad<T>(db, dy, N, D); }
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, std::int64_t N, int D,
                         T eps) override {
    cpu::layernorm_forward<T>(y, mean, rstd, x, gamma, beta, N, D, eps);
  }
  void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                          const T* rstd, std::int64_t N, int D) override {
    cpu::layernorm_backward<T>(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, D);
  }
  void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, cpu::Activation act) override {
    cpu::bias_act_forward<T>(y, pre, b, N, F, act);
  }
  void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F,
                         cpu::Activation act) override {
    cpu::bias_act_backward<T>(dpre, db, dy, pre, N, F, act);
  }
  void add(T* out, const T* a, const T* b, std::int64_t n) override { cpu::add<T>(out, a, b, n); }
  void add_inplace(T* a, const T* b, std::int64_t n) override { cpu::add_inplace<T>(a, b, n); }
  void scale_inplace(T* a, T s, std::int64_t n) override { cpu::scale_inplace<T>(a, s, n); }
  double sum_squares(const T* a, std::int64_t n) override { return cpu::sum_squares<T>(a, n); }
  void fill(T* x, T value, std::int64_t n) override { std::fill_n(x, n, value); }
  void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal, int q_offset,
                                 T scale, const int* key_begin) override {
    cpu::attention_softmax_forward<T>(P, B, H, Tq, Tk, key_len, causal, q_offset, scale, key_begin);
  }
  void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale) override {
    cpu::softmax_backward<T>(dS, dP, P, rows, Tk, scale);
  }
  void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D,
                         T scale) override {
    cpu::embedding_forward<T>(y, tokens, table, pe, B, L, D, scale);
  }
  void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale) override {
    cpu::embedding_backward<T>(dtable, tokens, dy, N, D, scale);
  }
  void embedding_backward_rows(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale, int r0,
                               int r1) override {
    cpu::embedding_backward_rows<T>(dtable, tokens, dy, N, D, scale, r0, r1);
  }
  void position_backward(T* dpe, const T* dy, int B, int L, int D) override {
    cpu::position_backward<T>(dpe, dy, B, L, D);
  }
  void sinusoidal_table(T* pe, int L, int D) override { cpu::sinusoidal_table<T>(pe, L, D); }
  double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N, int V,
                               T smoothing, int ignore, std::int64_t* count) override {
    return cpu::cross_entropy_forward<T>(losses, lse, logits, targets, N, V, smoothing, ignore, count);
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets, std::int64_t N, int V,
                              T smoothing, int ignore, T dloss) override {
    cpu::cross_entropy_backward<T>(dlogits, logits, lse, targets, N, V, smoothing, ignore, dloss);
  }
  void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream) override {
    cpu::dropout_forward<T>(y, x, n, p, seed, stream);
  }
  void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                   std::uint64_t stream) override {
    cpu::dropout_add<T>(y, x, f, n, p, seed, stream);
  }
  void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1, double beta2, double eps,
                    double weight_decay, std::int64_t t) override {
    cpu::adamw_update<T>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
  }
};

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Kernels<float>& f32() override { return f32_; }
  Kernels<double>& f64() override { return f64_; }
  void round_to_bf16(float* x, std::int64_t n) override { cpu::round_to_bf16(x, n); }
  void round_to_fp16(float* x, std::int64_t n) override { cpu::round_to_fp16(x, n); }
  void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) override { cpu::fp32_to_bf16(y, x, n); }
  void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { cpu::bf16_to_fp32(y, x, n); }
  void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) override { cpu::fp32_to_fp16(y, x, n); }
  void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { cpu::fp16_to_fp32(y, x, n); }

  MemoryPool& pool(MemorySpace) override { return host_pool(); }
  Device device_of(MemorySpace) const override { return Device::Host; }
  void host_to_device(void* dst, const void* src, std::size_t bytes) override { move(dst, src, bytes); }
  void device_to_host(void* dst, const void* src, std::size_t bytes) override { move(dst, src, bytes); }
  void device_to_device(void* dst, const void* src, std::size_t bytes) override { move(dst, src, bytes); }
  void zero(void* dst, std::size_t bytes, MemorySpace) override {
    if (bytes) std::memset(dst, 0, bytes);
  }
  const void* host_view(const void* src, std::size_t, Tensor&) override { return src; }
  void* host_target(void* dst, std::size_t, Tensor&) override { return dst; }
  void copy_to_host_async(void* dst, const void* src, std::size_t bytes, Stream = Stream::Compute) override {
    move(dst, src, bytes);
  }
  void copy_to_device_async(void* dst, const void* src, std::size_t bytes, Stream = Stream::Compute) override {
    move(dst, src, bytes);
  }
  Event record(Stream = Stream::Compute) override { return 0; }
  void wait(Event) override {}
  bool query(Event) override { return true; }
  void stream_wait(Stream, Event) override {}
  void sync() override {}
  bool device_is_host() const override { return true; }
  std::unique_ptr<Reservation> reserve(std::size_t bytes) override { return std::make_unique<CpuReservation>(bytes); }

 private:
  static void move(void* dst, const void* src, std::size_t bytes) {
    if (bytes && dst != src) std::memmove(dst, src, bytes);
  }
  CpuKernels<float> f32_;
  CpuKernels<double> f64_;
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

BackendKind parse_backend_kind(const std::string& value) {
  if (value == "cpu") return BackendKind::Cpu;
  if (value == "cuda") return BackendKind::Cuda;
  if (value == "emulated") return BackendKind::Emulated;
  if (value == "auto") return BackendKind::Auto;
  throw InputError("run%backend = '" + value + "': expected 'cpu', 'cuda', 'emulated' or 'auto'");
}

namespace {
int g_local_rank = 0;
}  // namespace

void set_backend_local_rank(int local_rank) { g_local_rank = local_rank; }
int backend_local_rank() { return g_local_rank; }

#ifndef TH_HAVE_CUDA
bool cuda_backend_available() { return false; }
Backend& cuda_backend() { throw Error("this build has no CUDA backend (nvcc was not found when it was configured)"); }
#endif

Backend& backend_for(BackendKind kind) {
  switch (kind) {
    case BackendKind::Cuda:
#ifndef TH_HAVE_CUDA
      throw InputError("run%backend = 'cuda': this build has no CUDA backend (nvcc was not found when it was "
                       "configured); use 'cpu'");
#else
      if (!cuda_backend_available())
        throw InputError("run%backend = 'cuda': no GPU is visible to this process (CUDA_VISIBLE_DEVICES, driver); "
                         "use 'cpu'");
      return cuda_backend();
#endif
    case BackendKind::Emulated:
      return emulated_backend();
    case BackendKind::Auto:  // the deck contract: cuda when a GPU is visible (and built), else the CPU
      if (cuda_backend_available()) return cuda_backend();
      break;
    case BackendKind::Cpu:
      break;
  }
  return cpu_backend();
}

}  // namespace th
