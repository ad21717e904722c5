#include "buffers.hpp"
#include "weights.hpp"
#include "th/model/layers.hpp"

namespace th {

template <typename T>
FeedForward<T>::FeedForward(ParamStore<T>& ps, const std::string& prefix, int D, int F,
                            cpu::Activation act, float dropout, std::uint64_t site)
    : ps_(ps), D_(D), F_(F), act_(act), dropout_(dropout), site_(site) {
  w1_ = ps.declare(prefix + "/fc1/weight", {F, D}, ParamInit::XavierUniform);
  b1_ = ps.declare(prefix + "/fc1/bias", {F}, ParamInit::Zeros);
  w2_ = ps.declare(prefix + "/fc2/weight", {D, F}, ParamInit::XavierUniform);
  b2_ = ps.declare(prefix + "/fc2/bias", {D}, ParamInit::Zeros);
}

template <typename T>
void FeedForward<T>::forward(T* y, const T* x, const StepCtx<T>& ctx) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  const std::int64_t N = ctx.self.rows();
  T* pre = pre_.make(be, N, F_, ctx.store);
  T* h = h_.make(be, N, F_, ctx.store);
  linear_fwd(k, pre, x, nullptr, weight(ps_, w1_), nullptr, N, D_, F_);
  k.bias_act_forward(h, pre, ps_.value(b1_), N, F_, act_);
  pre_.pack();  // 16-bit runs: stored as 2-byte values from here on
  if (!(ctx.train && dropout_ > 0) && h_.bf16_storage() && k.bf16_operands()) {
    // bf16: store h first and give the stored values to the GEMM (it would round h to them anyway).
    h_.pack();
    linear_fwd(k, y, nullptr, h_.bf16(), weight(ps_, w2_), ps_.value(b2_), N, F_, D_);
    return;
  }
  const T* hd = h;
  Tensor dropped;
  if (ctx.train && dropout_ > 0) {
    dropped = scratch_buffer<T>(be, N, F_);
    k.dropout_forward(dropped.data<T>(), hd, N * F_, dropout_, ctx.seed, dropout_stream(site_, ctx.micro));
    hd = dropped.data<T>();
  }
  linear_fwd(k, y, hd, nullptr, weight(ps_, w2_), ps_.value(b2_), N, F_, D_);
  h_.pack();
}

template <typename T>
void FeedForward<T>::backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  const std::int64_t N = ctx.self.rows();
  const bool drop = ctx.train && dropout_ > 0;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor dh = scratch_buffer<T>(be, N, F_), dropped, wide_h, wide_pre;
  ps_.writing(w2_, std::int64_t(D_) * F_);
  ps_.writing(b2_, D_);
  if (!drop && h_.bf16() && k.bf16_operands()) {  // bf16: the stored h is the GEMM operand
    linear_bwd(k, dh.data<T>(), ps_.grad(w2_), ps_.grad(b2_), dy, nullptr, 1.0f, nullptr, h_.bf16(),
               weight(ps_, w2_), N, F_, D_);
  } else {
    const T* hd = h_.widen(wide_h);
    if (drop) {
      dropped = scratch_buffer<T>(be, N, F_);
      k.dropout_forward(dropped.data<T>(), hd, N * F_, dropout_, ctx.seed, stream);
      hd = dropped.data<T>();
    }
    linear_bwd(k, dh.data<T>(), ps_.grad(w2_), ps_.grad(b2_), dy, nullptr, 1.0f, hd, nullptr, weight(ps_, w2_), N, F_, D_);
    if (drop) k.dropout_forward(dh.data<T>(), dh.data<T>(), N * F_, dropout_, ctx.seed, stream);
    wide_h.reset();
    dropped.reset();
  }
  ps_.written(w2_, std::int64_t(D_) * F_);
  ps_.written(b2_, D_);
  ps_.writing(b1_, F_);
  if (pre_.bf16() && k.bf16_operands())  // bf16: the stored pre-activation read as it is
    k.bias_act_backward_bf16(dh.data<T>(), ps_.grad(b1_), dh.data<T>(), pre_.bf16(), N, F_, act_);
  else
    k.bias_act_backward(dh.data<T>(), ps_.grad(b1_), dh.data<T>(), pre_.widen(wide_pre), N, F_, act_);
  ps_.written(b1_, F_);
  ps_.writing(w1_, std::int64_t(F_) * D_);
  linear_bwd(k, dx, ps_.grad(w1_), nullptr, dh.data<T>(), nullptr, 1.0f, x, nullptr, weight(ps_, w1_), N, D_, F_);
  ps_.written(w1_, std::int64_t(F_) * D_);
}

template <typename T> void FeedForward<T>::release() {
  pre_.reset();
  h_.reset();
}

template class FeedForward<float>;
template class FeedForward<double>;

}  // namespace th
