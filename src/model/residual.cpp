#include "buffers.hpp"
#include "th/core/profiler.hpp"
#include "th/core/error.hpp"
#include "th/model/layers.hpp"

namespace th {

template <typename T>
LayerNorm<T>::LayerNorm(ParamStore<T>& ps, const std::string& prefix, int D) : ps_(ps), D_(D) {
  w_ = ps.declare(prefix + "/weight", {D}, ParamInit::Ones);
  b_ = ps.declare(prefix + "/bias", {D}, ParamInit::Zeros);
}

template <typename T> void LayerNorm<T>::forward(T* y, const T* x, std::int64_t N) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  mean_ = saved_buffer<T>(be, N, 1);
  rstd_ = saved_buffer<T>(be, N, 1);
  k.layernorm_forward(y, mean_.data<T>(), rstd_.data<T>(), x, ps_.value(w_), ps_.value(b_), N, D_, T(1e-5));
}

template <typename T> void LayerNorm<T>::backward(T* dx, const T* dy, const T* x, std::int64_t N) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  TH_CHECK(mean_.defined(), "LayerNorm backward without a saved forward");
  ps_.writing(w_, D_);
  ps_.writing(b_, D_);
  k.layernorm_backward(dx, ps_.grad(w_), ps_.grad(b_), dy, x, ps_.value(w_), mean_.data<T>(),
                          rstd_.data<T>(), N, D_);
  ps_.written(w_, D_);
  ps_.written(b_, D_);
}

template <typename T> void LayerNorm<T>::release() {
  mean_.reset();
  rstd_.reset();
}

template <typename T>
Residual<T>::Residual(ParamStore<T>& ps, const std::string& norm_prefix, std::unique_ptr<Sublayer<T>> f,
                      int D, bool pre_norm, float dropout, std::uint64_t site)
    : be_(ps.backend()), f_(std::move(f)), norm_(ps, norm_prefix, D), D_(D), pre_norm_(pre_norm), dropout_(dropout),
      site_(site) {}

template <typename T>
void Residual<T>::forward(T* out, const T* x, const StepCtx<T>& ctx) {
  Backend& be = be_;
  Kernels<T>& k = be.kernels<T>();
  const std::int64_t N = ctx.self.rows(), n = N * D_;
  const float p = ctx.train ? dropout_ : 0.0f;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor fx = scratch_buffer<T>(be, N, D_);
  T* s = saved_.make(be, N, D_, ctx.store);
  if (pre_norm_) {
    norm_.forward(s, x, N);
    f_->forward(fx.data<T>(), s, ctx);
    saved_.pack();
    k.dropout_add(out, x, fx.data<T>(), n, p, ctx.seed, stream);
  } else {
    f_->forward(fx.data<T>(), x, ctx);
    k.dropout_add(s, x, fx.data<T>(), n, p, ctx.seed, stream);
    norm_.forward(out, s, N);
    saved_.pack();
  }
}

template <typename T>
void Residual<T>::backward(T* dx, const T* dout, const T* x, const StepCtx<T>& ctx) {
  Backend& be = be_;
  Kernels<T>& k = be.kernels<T>();
  const std::int64_t N = ctx.self.rows(), n = N * D_;
  const float p = ctx.train ? dropout_ : 0.0f;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor dfx = scratch_buffer<T>(be, N, D_), tmp = scratch_buffer<T>(be, N, D_), wide;
  if (pre_norm_) {
    // out = x + drop(f(n)), n = LN(x):  dx = dout + LN'(f'(drop'(dout)))
    k.dropout_forward(dfx.data<T>(), dout, n, p, ctx.seed, stream);
    f_->backward(tmp.data<T>(), dfx.data<T>(), saved_.widen(wide), ctx);
    norm_.backward(dx, tmp.data<T>(), x, N);
    k.add_inplace(dx, dout, n);
  } else {
    // out = LN(r), r = x + drop(f(x)):  dr = LN'(dout);  dx = dr + f'(drop'(dr))
    norm_.backward(tmp.data<T>(), dout, saved_.widen(wide), N);
    wide.reset();
    k.dropout_forward(dfx.data<T>(), tmp.data<T>(), n, p, ctx.seed, stream);
    f_->backward(dx, dfx.data<T>(), x, ctx);
    k.add_inplace(dx, tmp.data<T>(), n);
  }
}

template <typename T> void Residual<T>::release() {
  f_->release();
  norm_.release();
  saved_.reset();
}

template <typename T>
Block<T>::Block(std::vector<std::unique_ptr<Residual<T>>> parts, int D, bool checkpoint, const std::string& name)
    : parts_(std::move(parts)), D_(D), checkpoint_(checkpoint), fwd_name_("forward/" + name),
      bwd_name_("backward/" + name), recompute_name_("recompute/" + name) {}

template <typename T>
void Block<T>::run_forward(T* out, const T* x, const StepCtx<T>& ctx) {
  Backend& be = backend();
  const std::int64_t N = ctx.self.rows();
  inner_.assign(parts_.size() - 1, Saved<T>());
  const T* in = x;
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    T* o = i + 1 < parts_.size() ? inner_[i].make(be, N, D_, ctx.store) : out;
    parts_[i]->forward(o, in, ctx);
    if (i > 0) inner_[i - 1].pack();  // its last reader has run
    in = o;
  }
  saved_ = true;
}

template <typename T>
void Block<T>::forward(T* out, const T* x, const StepCtx<T>& ctx) {
  ProfileScope scope(profiler(), fwd_name_, Category::Compute);
  run_forward(out, x, ctx);
  if (checkpoint_) release();  // keep only the block input (the caller's buffer)
}

template <typename T>
void Block<T>::backward(T* dx, const T* dout, const T* x, const StepCtx<T>& ctx) {
  Backend& be = backend();
  const std::int64_t N = ctx.self.rows();
  ProfileScope scope(profiler(), bwd_name_, Category::Compute);
  if (!saved_) {  // activation checkpointing: recompute this block, bit for bit the same
    ProfileScope recompute(profiler(), recompute_name_, Category::Compute);
    Tensor out = scratch_buffer<T>(be, N, D_);
    run_forward(out.data<T>(), x, ctx);
  }
  Tensor g = scratch_buffer<T>(be, N, D_), g2 = scratch_buffer<T>(be, N, D_);
  const T* grad_out = dout;
  for (std::size_t i = parts_.size(); i-- > 0;) {
    Tensor wide;  // 16-bit runs: the part's input widened to T
    const T* in = i == 0 ? x : inner_[i - 1].widen(wide);
    T* gin = i == 0 ? dx : (grad_out == g.data<T>() ? g2.data<T>() : g.data<T>());
    parts_[i]->backward(gin, grad_out, in, ctx);
    grad_out = gin;
  }
  release();
}

template <typename T> void Block<T>::release() {
  for (auto& p : parts_) p->release();
  inner_.clear();
  saved_ = false;
}

template class LayerNorm<float>;
template class LayerNorm<double>;
template class Residual<float>;
template class Residual<double>;
template class Block<float>;
template class Block<double>;

}  // namespace th
