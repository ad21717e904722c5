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
// heads are column slices, so no transposes or copies are needed around the batched GEMMs. For
// each batch row, the H heads are one strided-batched GEMM (head stride Dh in Q, K, V and the
// context, Lq*Lk in the probabilities).
template <typename T>
void Attention<T>::forward(T* y, const T* x, const StepCtx<T>& ctx) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  const int D = D_, H = H_, Dh = D / H, B = ctx.self.B, Lq = ctx.self.L;
  const Stream& ks = cross_ ? ctx.memory : ctx.self;
  const int Lk = ks.L;
  const std::int64_t N = ctx.self.rows(), Nk = ks.rows();
  const T* Wq = ps_.value(wq_);
  const T* bq = ps_.value(bq_);
  const T *Q, *K, *V;
  int ldq, ldk;
  if (!cross_) {  // one GEMM: [N, 3D] = x [Wq; Wk; Wv]^T
    T* qkv = q_.make(be, N, 3 * D, ctx.store);
    k.linear_forward(qkv, x, Wq, bq, N, D, 3 * D);
    Q = qkv; K = Q + D; V = Q + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    T* q = q_.make(be, N, D, ctx.store);
    T* kv = kv_.make(be, Nk, 2 * D, ctx.store);
    k.linear_forward(q, x, Wq, bq, N, D, D);
    k.linear_forward(kv, ctx.mem, Wq + D * D, bq + D, Nk, D, 2 * D);
    Q = q; K = kv; V = K + D;
    ldq = D; ldk = 2 * D;
  }
  const std::int64_t prows = static_cast<std::int64_t>(B) * H * Lq;
  T* P = probs_.make(be, prows, Lk, ctx.store);
  const std::int64_t plane = static_cast<std::int64_t>(Lq) * Lk;  // one head's scores
  for (int b = 0; b < B; ++b)
    k.gemm_strided_batched(false, true, Lq, Lk, Dh, T(1), Q + (std::int64_t)b * Lq * ldq, ldq, Dh,
                           K + (std::int64_t)b * Lk * ldk, ldk, Dh, T(0), P + (std::int64_t)b * H * plane, Lk, plane,
                           H);
  k.attention_softmax_forward(P, B, H, Lq, Lk, ks.len, causal_, 0, T(1) / std::sqrt(T(Dh)),
                              cross_ ? nullptr : ctx.self.key_begin);
  Tensor dropped;
  const T* Pd = P;
  if (ctx.train && dropout_ > 0) {
    dropped = scratch_buffer<T>(be, prows, Lk);
    k.dropout_forward(dropped.data<T>(), P, prows * Lk, dropout_, ctx.seed, dropout_stream(site_, ctx.micro));
    Pd = dropped.data<T>();
  }
  T* C = ctx_.make(be, N, D, ctx.store);
  for (int b = 0; b < B; ++b)
    k.gemm_strided_batched(false, false, Lq, Dh, Lk, T(1), Pd + (std::int64_t)b * H * plane, Lk, plane,
                           V + (std::int64_t)b * Lk * ldk, ldk, Dh, T(0), C + (std::int64_t)b * Lq * D, D, Dh, H);
  probs_.pack();  // 16-bit runs: forward is done with P, Q, K, V
  q_.pack();
  kv_.pack();
  if (ctx_.bf16_storage() && k.bf16_operands()) {  // bf16: the stored context is the GEMM operand
    ctx_.pack();
    k.linear_forward_bf16(y, ctx_.bf16(), ps_.value(wo_), ps_.value(bo_), N, D, D);
    return;
  }
  k.linear_forward(y, C, ps_.value(wo_), ps_.value(bo_), N, D, D);
  ctx_.pack();
}

template <typename T>
void Attention<T>::backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  const int D = D_, H = H_, Dh = D / H, B = ctx.self.B, Lq = ctx.self.L;
  const Stream& ks = cross_ ? ctx.memory : ctx.self;
  const int Lk = ks.L;
  const std::int64_t N = ctx.self.rows(), Nk = ks.rows();
  TH_CHECK(probs_.defined(), "attention backward without a saved forward");
  // Output projection.
  Tensor dctx = scratch_buffer<T>(be, N, D);
  T* dC = dctx.data<T>();
  Tensor wide_ctx, wide_q, wide_kv, wide_p;  // 16-bit runs: the saved values widened to T
  if (ctx_.bf16() && k.bf16_operands())
    k.linear_backward_bf16(dC, ps_.grad(wo_), ps_.grad(bo_), dy, nullptr, 1.0f, nullptr, ctx_.bf16(), ps_.value(wo_),
                           N, D, D);
  else
    k.linear_backward(dC, ps_.grad(wo_), ps_.grad(bo_), dy, ctx_.widen(wide_ctx), ps_.value(wo_), N, D, D);
  wide_ctx.reset();
  // Gradients of the projections land in one buffer laid out like the forward's.
  Tensor dq = scratch_buffer<T>(be, N, cross_ ? D : 3 * D), dkv;
  T *dQ = dq.data<T>(), *dK, *dV;
  const T *Q = q_.widen(wide_q), *K, *V;
  int ldq, ldk;
  if (!cross_) {
    K = Q + D; V = Q + 2 * D; dK = dQ + D; dV = dQ + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    dkv = scratch_buffer<T>(be, Nk, 2 * D);
    K = kv_.widen(wide_kv); V = K + D; dK = dkv.data<T>(); dV = dK + D;
    ldq = D; ldk = 2 * D;
  }
  const std::int64_t prows = probs_.dim(0);
  const T* P = probs_.widen(wide_p);
  const bool drop = ctx.train && dropout_ > 0;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor dropped;
  const T* Pd = P;
  if (drop) {  // the same mask again (counter-based RNG), instead of a stored copy
    dropped = scratch_buffer<T>(be, prows, Lk);
    k.dropout_forward(dropped.data<T>(), P, prows * Lk, dropout_, ctx.seed, stream);
    Pd = dropped.data<T>();
  }
  Tensor dprobs = scratch_buffer<T>(be, prows, Lk);
  T* dP = dprobs.data<T>();
  // Per batch row, the H heads as strided batches; every GEMM writes its own slice, so the
  // order (all dP, then all dV) gives the same values as head by head.
  const std::int64_t plane = static_cast<std::int64_t>(Lq) * Lk;
  for (int b = 0; b < B; ++b) {
    const std::int64_t pofs = (std::int64_t)b * H * plane, kofs = (std::int64_t)b * Lk * ldk;
    const T* dCb = dC + (std::int64_t)b * Lq * D;
    k.gemm_strided_batched(false, true, Lq, Lk, Dh, T(1), dCb, D, Dh, V + kofs, ldk, Dh, T(0), dP + pofs, Lk, plane, H);
    k.gemm_strided_batched(true, false, Lk, Dh, Lq, T(1), Pd + pofs, Lk, plane, dCb, D, Dh, T(0), dV + kofs, ldk, Dh,
                           H);
  }
  // Dropout's backward is its forward (same mask and scale) applied to the gradient.
  if (drop) k.dropout_forward(dP, dP, dprobs.numel(), dropout_, ctx.seed, stream);
  k.softmax_backward(dP, dP, P, dprobs.dim(0), Lk, T(1) / std::sqrt(T(Dh)));
  for (int b = 0; b < B; ++b) {
    const std::int64_t pofs = (std::int64_t)b * H * plane;
    const std::int64_t qofs = (std::int64_t)b * Lq * ldq, kofs = (std::int64_t)b * Lk * ldk;
    k.gemm_strided_batched(false, false, Lq, Dh, Lk, T(1), dP + pofs, Lk, plane, K + kofs, ldk, Dh, T(0), dQ + qofs,
                           ldq, Dh, H);
    k.gemm_strided_batched(true, false, Lk, Dh, Lq, T(1), dP + pofs, Lk, plane, Q + qofs, ldq, Dh, T(0), dK + kofs,
                           ldk, Dh, H);
  }
  if (!cross_) {
    k.linear_backward(dx, ps_.grad(wq_), ps_.grad(bq_), dQ, x, ps_.value(wq_), N, D, 3 * D);
  } else {
    k.linear_backward(dx, ps_.grad(wq_), ps_.grad(bq_), dQ, x, ps_.value(wq_), N, D, D);
    k.linear_backward(ctx.dmem, ps_.grad(wq_) + D * D, ps_.grad(bq_) + D, dkv.data<T>(), ctx.mem,
                      ps_.value(wq_) + D * D, Nk, D, 2 * D, /*accumulate_dx=*/true);
  }
}

template <typename T> void Attention<T>::release() {
  q_.reset(); kv_.reset(); probs_.reset(); ctx_.reset();
}

template class Attention<float>;
template class Attention<double>;

}  // namespace th
