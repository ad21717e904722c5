#pragma once
// The compute half of the backend seam (th/backend/backend.hpp): every kernel of
// th/kernels/cpu.hpp as a virtual entry point, for one compute type T (float for training, double
// for the finite-difference gradient checks), plus the strided-batched GEMM of attention.
// Semantics, shapes and the accumulate (+=) / write (=) rules are those of the namesakes in
// th/kernels/cpu.hpp (the CPU backend calls them; every other backend is tested against it).
// Every pointer is in the backend's device memory space, except `tokens`, `targets`, `key_len`
// and `key_begin` (int index arrays from the host batch: a device backend stages them itself)
// and the double / std::int64_t results, which are host values (a device backend synchronizes).
#include <cstdint>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"

namespace th {

template <typename T>
class Kernels {
 public:
  virtual ~Kernels() = default;

  // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                    int ldb, T beta, T* C, int ldc) = 0;
  // `batch` GEMMs as above; matrix i at A + i*stride_a, B + i*stride_b, C + i*stride_c (elements).
  // The argument order of th::cpu::gemm_strided_batched.
  virtual void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                                    std::int64_t stride_a, const T* B, int ldb, std::int64_t stride_b, T beta, T* C,
                                    int ldc, std::int64_t stride_c, int batch) = 0;

  virtual void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out) = 0;
  virtual void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N, int in,
                               int out, bool accumulate_dx = false) = 0;
  virtual void bias_add(T* y, const T* b, std::int64_t N, int D) = 0;
  virtual void bias_grad(T* db, const T* dy, std::int64_t N, int D) = 0;

  virtual void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, std::int64_t N,
                                 int D, T eps) = 0;
  virtual void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                                  const T* rstd, std::int64_t N, int D) = 0;

  virtual void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, cpu::Activation act) = 0;
  virtual void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F,
                                 cpu::Activation act) = 0;

  virtual void add(T* out, const T* a, const T* b, std::int64_t n) = 0;
  virtual void add_inplace(T* a, const T* b, std::int64_t n) = 0;
  virtual void scale_inplace(T* a, T s, std::int64_t n) = 0;
  virtual double sum_squares(const T* a, std::int64_t n) = 0;  // host value
  virtual void fill(T* x, T value, std::int64_t n) = 0;

  virtual void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                                         int q_offset, T scale, const int* key_begin = nullptr) = 0;
  virtual void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale) = 0;

  virtual void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D,
                                 T scale) = 0;
  virtual void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale) = 0;
  // The rows [row_begin, row_end) of it alone (th::cpu::embedding_backward_rows): where a 2-byte
  // gradient store takes the table block by block (CPU and emulated backends; optional).
  virtual void embedding_backward_rows(T*, const int*, const T*, std::int64_t, int, T, int, int) {
    unsupported("embedding_backward_rows");
  }
  virtual void sinusoidal_table(T* pe, int L, int D) = 0;
  // Learned positions (model%positions = 'learned'): dpe[t,:] += sum over b of dy[b,t,:].
  virtual void position_backward(T* dpe, const T* dy, int B, int L, int D) = 0;

  // Returns the sum of the losses and sets *count (host values).
  virtual double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N, int V,
                                       T smoothing, int ignore, std::int64_t* count) = 0;
  virtual void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets, std::int64_t N,
                                      int V, T smoothing, int ignore, T dloss) = 0;

  virtual void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed,
                               std::uint64_t stream) = 0;
  virtual void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                           std::uint64_t stream) = 0;

  virtual void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1, double beta2,
                            double eps, double weight_decay, std::int64_t t) = 0;

  // bf16 runs: 16-bit operands handed to the kernels directly (linear_forward_bf16,
  // linear_backward_bf16, bias_act_backward_bf16, gemm_strided_batched_mixed,
  // cross_entropy_forward_grad_bf16, embedding_forward_bf16 of th/kernels/cpu.hpp); activations
  // saved in 2 bytes and the parameters' 2-byte compute copy (ParamStore::value16). Optional: the
  // model uses them only where bf16_operands() says so (the CPU and emulated backends, float),
  // and otherwise widens the saved values and calls the entry points above.
  virtual bool bf16_operands() const { return false; }
  virtual void linear_forward_bf16(T*, const T*, const std::uint16_t*, const T*, const std::uint16_t*, const T*,
                                   std::int64_t, int, int) {
    unsupported("linear_forward_bf16");
  }
  virtual void linear_backward_bf16(T*, T*, T*, const T*, const std::uint16_t*, float, const T*,
                                    const std::uint16_t*, const T*, const std::uint16_t*, std::int64_t, int, int,
                                    bool = false, int /*ldy*/ = 0) {
    unsupported("linear_backward_bf16");
  }
  virtual void embedding_forward_bf16(T*, const int*, const std::uint16_t*, const T*, int, int, int, T) {
    unsupported("embedding_forward_bf16");
  }
  virtual void bias_act_backward_bf16(T*, T*, const T*, const std::uint16_t*, std::int64_t, int, cpu::Activation) {
    unsupported("bias_act_backward_bf16");
  }
  virtual void gemm_strided_batched_mixed(bool, bool, int, int, int, float, const T*, const std::uint16_t*, int,
                                          std::int64_t, const T*, const std::uint16_t*, int, std::int64_t, float, T*,
                                          int, std::int64_t, int) {
    unsupported("gemm_strided_batched_mixed");
  }
  virtual double cross_entropy_forward_grad_bf16(T*, T*, std::uint16_t*, const T*, const int*, std::int64_t, int, T,
                                                 int, std::int64_t*) {
    unsupported("cross_entropy_forward_grad_bf16");
    return 0;
  }

 private:
  [[noreturn]] static void unsupported(const char* name) {
    throw Error(std::string(name) + ": this backend takes no bf16 operands (check bf16_operands() first)");
  }
};

}  // namespace th
