// The emulated device's kernels: every kernel of th/backend/kernels.hpp with its pointer arguments
// translated to the worker's aliases when the call is issued (an argument outside device memory
// is an error then and there), host index arrays copied, the th::cpu namesake queued on the
// device's compute stream (emulated_backend.cpp owns the device; emulated_kernels.hpp says what
// the kernels need of it).
#include "emulated_kernels.hpp"

#include <memory>
#include <type_traits>
#include <vector>

#include "th/kernels/cpu.hpp"

namespace th::emulated {

namespace {

template <typename T>
class EmulatedKernels final : public Kernels<T> {
 public:
  explicit EmulatedKernels(KernelQueue& q) : q_(q) {}
  void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
            int ldc) override {
    auto a = d(A), b = d(B);
    auto c = d(C);
    q_.queue([=] { cpu::gemm<T>(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, std::int64_t sa,
                            const T* B, int ldb, std::int64_t sb, T beta, T* C, int ldc, std::int64_t sc,
                            int batch) override {
    auto a = d(A), b = d(B);
    auto c = d(C);
    q_.queue([=] { cpu::gemm_strided_batched<T>(ta, tb, M, N, K, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch); });
  }
  void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out) override {
    auto yd = d(y);
    auto xd = d(x), Wd = d(W), bd = d(b);
    q_.queue([=] { cpu::linear_forward<T>(yd, xd, Wd, bd, N, in, out); });
  }
  void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N, int in, int out,
                       bool acc) override {
    auto dxd = d(dx), dWd = d(dW), dbd = d(db);
    auto dyd = d(dy), xd = d(x), Wd = d(W);
    q_.queue([=] { cpu::linear_backward<T>(dxd, dWd, dbd, dyd, xd, Wd, N, in, out, acc); });
  }
  bool bf16_operands() const override { return std::is_same_v<T, float>; }
  void linear_forward_bf16(T* y, const T* x, const std::uint16_t* x16, const T* W, const std::uint16_t* W16,
                           const T* b, std::int64_t N, int in, int out) override {
    if constexpr (std::is_same_v<T, float>) {
      auto yd = d(y);
      auto xd = d(x), Wd = d(W), bd = d(b);
      auto x16d = d(x16), W16d = d(W16);
      q_.queue([=] { cpu::linear_forward_bf16(yd, xd, x16d, Wd, W16d, bd, N, in, out); });
    } else {
      Kernels<T>::linear_forward_bf16(y, x, x16, W, W16, b, N, in, out);
    }
  }
  void linear_backward_bf16(T* dx, T* dW, T* db, const T* dy, const std::uint16_t* dy16, float alpha, const T* x,
                            const std::uint16_t* x16, const T* W, const std::uint16_t* W16, std::int64_t N, int in,
                            int out, bool acc, int ldy) override {
    if constexpr (std::is_same_v<T, float>) {
      auto dxd = d(dx), dWd = d(dW), dbd = d(db);
      auto dyd = d(dy), xd = d(x), Wd = d(W);
      auto dy16d = d(dy16), x16d = d(x16), W16d = d(W16);
      q_.queue([=] {
        cpu::linear_backward_bf16(dxd, dWd, dbd, dyd, dy16d, alpha, xd, x16d, Wd, W16d, N, in, out, acc, ldy);
      });
    } else {
      Kernels<T>::linear_backward_bf16(dx, dW, db, dy, dy16, alpha, x, x16, W, W16, N, in, out, acc, ldy);
    }
  }
  void embedding_forward_bf16(T* y, const int* tokens, const std::uint16_t* table16, const T* pe, int B, int L, int D,
                              T scale) override {
    if constexpr (std::is_same_v<T, float>) {
      auto yd = d(y), pd = d(pe);
      auto td = d(table16);
      auto tk = staged(tokens, static_cast<std::int64_t>(B) * L);
      q_.queue([=] { cpu::embedding_forward_bf16(yd, ptr(tk), td, pd, B, L, D, scale); });
    } else {
      Kernels<T>::embedding_forward_bf16(y, tokens, table16, pe, B, L, D, scale);
    }
  }
  void bias_act_backward_bf16(T* dpre, T* db, const T* dy, const std::uint16_t* pre16, std::int64_t N, int F,
                              cpu::Activation act) override {
    if constexpr (std::is_same_v<T, float>) {
      auto dd = d(dpre), dbd = d(db);
      auto dyd = d(dy);
      auto pd = d(pre16);
      q_.queue([=] { cpu::bias_act_backward_bf16(dd, dbd, dyd, pd, N, F, act); });
    } else {
      Kernels<T>::bias_act_backward_bf16(dpre, db, dy, pre16, N, F, act);
    }
  }
  void gemm_strided_batched_mixed(bool ta, bool tb, int M, int N, int K, float alpha, const T* A,
                                  const std::uint16_t* A16, int lda, std::int64_t sa, const T* B,
                                  const std::uint16_t* B16, int ldb, std::int64_t sb, float beta, T* C, int ldc,
                                  std::int64_t sc, int batch) override {
    if constexpr (std::is_same_v<T, float>) {
      auto a = d(A), b = d(B);
      auto a16 = d(A16), b16 = d(B16);
      auto c = d(C);
      q_.queue([=] {
        cpu::gemm_strided_batched_mixed(ta, tb, M, N, K, alpha, a, a16, lda, sa, b, b16, ldb, sb, beta, c, ldc, sc, batch);
      });
    } else {
      Kernels<T>::gemm_strided_batched_mixed(ta, tb, M, N, K, alpha, A, A16, lda, sa, B, B16, ldb, sb, beta, C, ldc,
                                             sc, batch);
    }
  }
  double cross_entropy_forward_grad_bf16(T* losses, T* lse, std::uint16_t* grad16, const T* logits, const int* targets,
                                         std::int64_t N, int V, T smoothing, int ignore, std::int64_t* count) override {
    if constexpr (std::is_same_v<T, float>) {
      auto ld = d(losses), sd = d(lse);
      auto gd = d(grad16);
      auto lg = d(logits);
      auto tg = staged(targets, N);
      double r = 0;
      std::int64_t c = 0;
      q_.queue_and_wait([=, &r, &c] {
        r = cpu::cross_entropy_forward_grad_bf16(ld, sd, gd, lg, ptr(tg), N, V, smoothing, ignore, &c);
      });
      if (count) *count = c;
      return r;
    } else {
      return Kernels<T>::cross_entropy_forward_grad_bf16(losses, lse, grad16, logits, targets, N, V, smoothing, ignore,
                                                         count);
    }
  }
  void bias_add(T* y, const T* b, std::int64_t N, int D) override {
    auto yd = d(y);
    auto bd = d(b);
    q_.queue([=] { cpu::bias_add<T>(yd, bd, N, D); });
  }
  void bias_grad(T* db, const T* dy, std::int64_t N, int D) override {
    auto dbd = d(db);
    auto dyd = d(dy);
    q_.queue([=] { cpu::bias_grad<T>(dbd, dyd, N, D); });
  }
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, std::int64_t N, int D,
                         T eps) override {
    auto yd = d(y), md = d(mean), rd = d(rstd);
    auto xd = d(x), gd = d(g), bd = d(b);
    q_.queue([=] { cpu::layernorm_forward<T>(yd, md, rd, xd, gd, bd, N, D, eps); });
  }
  void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* g, const T* mean, const T* rstd,
                          std::int64_t N, int D) override {
    auto dxd = d(dx), dgd = d(dg), dbd = d(db);
    auto dyd = d(dy), xd = d(x), gd = d(g), md = d(mean), rd = d(rstd);
    q_.queue([=] { cpu::layernorm_backward<T>(dxd, dgd, dbd, dyd, xd, gd, md, rd, N, D); });
  }
  void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, cpu::Activation act) override {
    auto yd = d(y), pd = d(pre);
    auto bd = d(b);
    q_.queue([=] { cpu::bias_act_forward<T>(yd, pd, bd, N, F, act); });
  }
  void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F,
                         cpu::Activation act) override {
    auto dpd = d(dpre), dbd = d(db);
    auto dyd = d(dy), pd = d(pre);
    q_.queue([=] { cpu::bias_act_backward<T>(dpd, dbd, dyd, pd, N, F, act); });
  }
  void add(T* out, const T* a, const T* b, std::int64_t n) override {
    auto od = d(out);
    auto ad = d(a), bd = d(b);
    q_.queue([=] { cpu::add<T>(od, ad, bd, n); });
  }
  void add_inplace(T* a, const T* b, std::int64_t n) override {
    auto ad = d(a);
    auto bd = d(b);
    q_.queue([=] { cpu::add_inplace<T>(ad, bd, n); });
  }
  void scale_inplace(T* a, T s, std::int64_t n) override {
    auto ad = d(a);
    q_.queue([=] { cpu::scale_inplace<T>(ad, s, n); });
  }
  double sum_squares(const T* a, std::int64_t n) override {
    auto ad = d(a);
    double r = 0;
    q_.queue_and_wait([ad, n, &r] { r = cpu::sum_squares<T>(ad, n); });
    return r;
  }
  void fill(T* x, T value, std::int64_t n) override {
    auto xd = d(x);
    q_.queue([=] { std::fill_n(xd, n, value); });
  }
  void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal, int q_offset,
                                 T scale, const int* key_begin) override {
    auto Pd = d(P);
    auto len = staged(key_len, B), begin = staged(key_begin, static_cast<std::int64_t>(B) * Tq);
    q_.queue([=] {
      cpu::attention_softmax_forward<T>(Pd, B, H, Tq, Tk, ptr(len), causal, q_offset, scale, ptr(begin));
    });
  }
  void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale) override {
    auto dSd = d(dS);
    auto dPd = d(dP), Pd = d(P);
    q_.queue([=] { cpu::softmax_backward<T>(dSd, dPd, Pd, rows, Tk, scale); });
  }
  void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D,
                         T scale) override {
    auto yd = d(y);
    auto td = d(table), ped = d(pe);
    auto tok = staged(tokens, static_cast<std::int64_t>(B) * L);
    q_.queue([=] { cpu::embedding_forward<T>(yd, ptr(tok), td, ped, B, L, D, scale); });
  }
  void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale) override {
    auto dtd = d(dtable);
    auto dyd = d(dy);
    auto tok = staged(tokens, N);
    q_.queue([=] { cpu::embedding_backward<T>(dtd, ptr(tok), dyd, N, D, scale); });
  }
  void embedding_backward_rows(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale, int r0,
                               int r1) override {
    auto dtd = d(dtable);
    auto dyd = d(dy);
    auto tok = staged(tokens, N);
    q_.queue([=] { cpu::embedding_backward_rows<T>(dtd, ptr(tok), dyd, N, D, scale, r0, r1); });
  }
  void sinusoidal_table(T* pe, int L, int D) override {
    auto ped = d(pe);
    q_.queue([=] { cpu::sinusoidal_table<T>(ped, L, D); });
  }
  void position_backward(T* dpe, const T* dy, int B, int L, int D) override {
    auto dped = d(dpe);
    auto dyd = d(dy);
    q_.queue([=] { cpu::position_backward<T>(dped, dyd, B, L, D); });
  }
  double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N, int V,
                               T smoothing, int ignore, std::int64_t* count) override {
    auto ld = d(losses), sd = d(lse);
    auto lg = d(logits);
    auto tg = staged(targets, N);
    double r = 0;
    std::int64_t c = 0;
    q_.queue_and_wait([=, &r, &c] { r = cpu::cross_entropy_forward<T>(ld, sd, lg, ptr(tg), N, V, smoothing, ignore, &c); });
    if (count) *count = c;
    return r;
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets, std::int64_t N, int V,
                              T smoothing, int ignore, T dloss) override {
    auto dl = d(dlogits);
    auto lg = d(logits), sd = d(lse);
    auto tg = staged(targets, N);
    q_.queue([=] { cpu::cross_entropy_backward<T>(dl, lg, sd, ptr(tg), N, V, smoothing, ignore, dloss); });
  }
  void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream) override {
    auto yd = d(y);
    auto xd = d(x);
    q_.queue([=] { cpu::dropout_forward<T>(yd, xd, n, p, seed, stream); });
  }
  void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                   std::uint64_t stream) override {
    auto yd = d(y);
    auto xd = d(x), fd = d(f);
    q_.queue([=] { cpu::dropout_add<T>(yd, xd, fd, n, p, seed, stream); });
  }
  void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1, double beta2, double eps,
                    double weight_decay, std::int64_t t) override {
    auto pd = d(p), md = d(m), vd = d(v);
    auto gd = d(g);
    q_.queue([=] { cpu::adamw_update<T>(pd, gd, md, vd, n, lr, beta1, beta2, eps, weight_decay, t); });
  }

 private:
  template <typename P>
  P* d(P* p) const {
    return device_alias(q_.device(), p, "emulated kernel");
  }
  // A host index array as the stream will see it: copied now (null stays null). Index arrays
  // already in device memory are used in place.
  using Staged = std::shared_ptr<const std::vector<int>>;
  struct Ints {
    Staged copy;
    const int* device = nullptr;
  };
  Ints staged(const int* p, std::int64_t n) const {
    if (!p) return {};
    if (q_.device().contains(p)) return {nullptr, device_alias(q_.device(), p, "emulated kernel")};
    return {std::make_shared<const std::vector<int>>(p, p + n), nullptr};
  }
  static const int* ptr(const Ints& s) { return s.copy ? s.copy->data() : s.device; }
  KernelQueue& q_;
};

}  // namespace

template <typename T> std::unique_ptr<Kernels<T>> make_kernels(KernelQueue& q) {
  return std::make_unique<EmulatedKernels<T>>(q);
}
template std::unique_ptr<Kernels<float>> make_kernels<float>(KernelQueue&);
template std::unique_ptr<Kernels<double>> make_kernels<double>(KernelQueue&);

}  // namespace th::emulated
