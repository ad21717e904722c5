#include <cmath>

#include "buffers.hpp"
#include "th/core/error.hpp"
#include "th/model/layers.hpp"

namespace th {

std::uint64_t dropout_stream(std::uint64_t site, std::uint64_t micro) { return (micro << 24) ^ site; }

template <typename T>
Attention<T>::Attention(ParamStore<T>& ps, const std::string& prefix, int D, int H, bool cross,
                        bool causal, float dropout, std::uint64_t site)
    : ps_(ps), D_(D), H_(H), cross_(cross), causal_(causal), dropout_(dropout), site_(site) {
  TH_CHECK(D % H == 0, "n_heads must divide d_model");
  wq_ = ps.declare(prefix + "/q_proj/weight", {D, D}, ParamInit::XavierUniform);
  ps.declare(prefix + "/k_proj/weight", {D, D}, ParamInit::XavierUniform);
  ps.declare(prefix + "/v_proj/weight", {D, D}, ParamInit::XavierUniform);
  bq_ = ps.declare(prefix + "/q_proj/bias", {D}, ParamInit::Zeros);
  ps.declare(prefix + "/k_proj/bias", {D}, ParamInit::Zeros);
  ps.declare(prefix + "/v_proj/bias", {D}, ParamInit::Zeros);
  wo_ = ps.declare(prefix + "/out_proj/weight", {D, D}, ParamInit::XavierUniform);
  bo_ = ps.declare(prefix + "/out_proj/bias", {D}, ParamInit::Zeros);
}

// Q of head h in batch row b starts at Q + b*Lq*ldq + h*Dh with row stride ldq (same for K, V):
// heads are column slices, so no transposes or copies are needed around the batched GEMMs.
template <typename T>
void Attention<T>::forward(T* y, const T* x, const StepCtx<T>& ctx) {
  const int D = D_, H = H_, Dh = D / H, B = ctx.self.B, Lq = ctx.self.L;
  const Stream& ks = cross_ ? ctx.memory : ctx.self;
  const int Lk = ks.L;
  const std::int64_t N = ctx.self.rows(), Nk = ks.rows();
  const T* Wq = ps_.value(wq_);
  const T* bq = ps_.value(bq_);
  const T *Q, *K, *V;
  int ldq, ldk;
  if (!cross_) {  // one GEMM: [N, 3D] = x [Wq; Wk; Wv]^T
    q_ = saved_buffer<T>(N, 3 * D);
    cpu::linear_forward(q_.data<T>(), x, Wq, bq, N, D, 3 * D);
    Q = q_.data<T>(); K = Q + D; V = Q + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    q_ = saved_buffer<T>(N, D);
    kv_ = saved_buffer<T>(Nk, 2 * D);
    cpu::linear_forward(q_.data<T>(), x, Wq, bq, N, D, D);
    cpu::linear_forward(kv_.data<T>(), ctx.mem, Wq + D * D, bq + D, Nk, D, 2 * D);
    Q = q_.data<T>(); K = kv_.data<T>(); V = K + D;
    ldq = D; ldk = 2 * D;
  }
  probs_ = saved_buffer<T>(static_cast<std::int64_t>(B) * H * Lq, Lk);
  T* P = probs_.data<T>();
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      cpu::gemm<T>(false, true, Lq, Lk, Dh, T(1), Q + (std::int64_t)b * Lq * ldq + h * Dh, ldq,
                   K + (std::int64_t)b * Lk * ldk + h * Dh, ldk, T(0),
                   P + ((std::int64_t)b * H + h) * Lq * Lk, Lk);
  cpu::attention_softmax_forward(P, B, H, Lq, Lk, ks.len, causal_, 0, T(1) / std::sqrt(T(Dh)),
                                 cross_ ? nullptr : ctx.self.key_begin);
  Tensor dropped;
  const T* Pd = P;
  if (ctx.train && dropout_ > 0) {
    dropped = scratch_buffer<T>(probs_.dim(0), Lk);
    cpu::dropout_forward(dropped.data<T>(), P, probs_.numel(), dropout_, ctx.seed, dropout_stream(site_, ctx.micro));
    Pd = dropped.data<T>();
  }
  ctx_ = saved_buffer<T>(N, D);
  T* C = ctx_.data<T>();
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      cpu::gemm<T>(false, false, Lq, Dh, Lk, T(1), Pd + ((std::int64_t)b * H + h) * Lq * Lk, Lk,
                   V + (std::int64_t)b * Lk * ldk + h * Dh, ldk, T(0), C + (std::int64_t)b * Lq * D + h * Dh, D);
  cpu::linear_forward(y, C, ps_.value(wo_), ps_.value(bo_), N, D, D);
}

template <typename T>
void Attention<T>::backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) {
  const int D = D_, H = H_, Dh = D / H, B = ctx.self.B, Lq = ctx.self.L;
  const Stream& ks = cross_ ? ctx.memory : ctx.self;
  const int Lk = ks.L;
  const std::int64_t N = ctx.self.rows(), Nk = ks.rows();
  TH_CHECK(probs_.defined(), "attention backward without a saved forward");
  // Output projection.
  Tensor dctx = scratch_buffer<T>(N, D);
  T* dC = dctx.data<T>();
  cpu::linear_backward(dC, ps_.grad(wo_), ps_.grad(bo_), dy, ctx_.data<T>(), ps_.value(wo_), N, D, D);
  // Gradients of the projections land in one buffer laid out like the forward's.
  Tensor dq = scratch_buffer<T>(N, cross_ ? D : 3 * D), dkv;
  T *dQ = dq.data<T>(), *dK, *dV;
  const T *Q = q_.data<T>(), *K, *V;
  int ldq, ldk;
  if (!cross_) {
    K = Q + D; V = Q + 2 * D; dK = dQ + D; dV = dQ + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    dkv = scratch_buffer<T>(Nk, 2 * D);
    K = kv_.data<T>(); V = K + D; dK = dkv.data<T>(); dV = dK + D;
    ldq = D; ldk = 2 * D;
  }
  const T* P = probs_.data<T>();
  const bool drop = ctx.train && dropout_ > 0;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor dropped;
  const T* Pd = P;
  if (drop) {  // the same mask again (counter-based RNG), instead of a stored copy
    dropped = scratch_buffer<T>(probs_.dim(0), Lk);
    cpu::dropout_forward(dropped.data<T>(), P, probs_.numel(), dropout_, ctx.seed, stream);
    Pd = dropped.data<T>();
  }
  Tensor dprobs = scratch_buffer<T>(probs_.dim(0), Lk);
  T* dP = dprobs.data<T>();
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const std::int64_t pofs = ((std::int64_t)b * H + h) * Lq * Lk;
      const T* dCbh = dC + (std::int64_t)b * Lq * D + h * Dh;
      const std::int64_t kofs = (std::int64_t)b * Lk * ldk + h * Dh;
      cpu::gemm<T>(false, true, Lq, Lk, Dh, T(1), dCbh, D, V + kofs, ldk, T(0), dP + pofs, Lk);
      cpu::gemm<T>(true, false, Lk, Dh, Lq, T(1), Pd + pofs, Lk, dCbh, D, T(0), dV + kofs, ldk);
    }
  // Dropout's backward is its forward (same mask and scale) applied to the gradient.
  if (drop) cpu::dropout_forward(dP, dP, dprobs.numel(), dropout_, ctx.seed, stream);
  cpu::softmax_backward(dP, dP, P, dprobs.dim(0), Lk, T(1) / std::sqrt(T(Dh)));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const std::int64_t pofs = ((std::int64_t)b * H + h) * Lq * Lk;
      const std::int64_t qofs = (std::int64_t)b * Lq * ldq + h * Dh, kofs = (std::int64_t)b * Lk * ldk + h * Dh;
      cpu::gemm<T>(false, false, Lq, Dh, Lk, T(1), dP + pofs, Lk, K + kofs, ldk, T(0), dQ + qofs, ldq);
      cpu::gemm<T>(true, false, Lk, Dh, Lq, T(1), dP + pofs, Lk, Q + qofs, ldq, T(0), dK + kofs, ldk);
    }
  if (!cross_) {
    cpu::linear_backward(dx, ps_.grad(wq_), ps_.grad(bq_), dQ, x, ps_.value(wq_), N, D, 3 * D);
  } else {
    cpu::linear_backward(dx, ps_.grad(wq_), ps_.grad(bq_), dQ, x, ps_.value(wq_), N, D, D);
    cpu::linear_backward(ctx.dmem, ps_.grad(wq_) + D * D, ps_.grad(bq_) + D, dkv.data<T>(), ctx.mem,
                         ps_.value(wq_) + D * D, Nk, D, 2 * D, /*accumulate_dx=*/true);
  }
}

template <typename T> void Attention<T>::release() {
  q_.reset(); kv_.reset(); probs_.reset(); ctx_.reset();
}

template class Attention<float>;
template class Attention<double>;

}  // namespace th
