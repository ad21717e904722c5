#include <cmath>

#include "buffers.hpp"
#include "weights.hpp"
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
namespace {
using u16 = std::uint16_t;
// One strided-batched GEMM whose operands come in T (A, B) or, in a bf16 run whose backend takes
// bf16 operands, possibly as bf16 (A16, B16; null where the T operand is given).
template <typename T>
void batched(Kernels<T>& k, bool ta, bool tb, int M, int N, int K, const T* A, const u16* A16, int lda,
             std::int64_t sa, const T* B, const u16* B16, int ldb, std::int64_t sb, T* C, int ldc, std::int64_t sc,
             int batch) {
  if (A16 || B16)
    k.gemm_strided_batched_mixed(ta, tb, M, N, K, 1.0f, A16 ? nullptr : A, A16, lda, sa, B16 ? nullptr : B, B16, ldb,
                                 sb, 0.0f, C, ldc, sc, batch);
  else
    k.gemm_strided_batched(ta, tb, M, N, K, T(1), A, lda, sa, B, ldb, sb, T(0), C, ldc, sc, batch);
}
// p + offset, null staying null (the operand of the other precision).
template <typename U> const U* at(const U* p, std::int64_t offset) { return p ? p + offset : nullptr; }
}  // namespace

template <typename T>
void Attention<T>::forward(T* y, const T* x, const StepCtx<T>& ctx) {
  Backend& be = ps_.backend();
  Kernels<T>& k = be.kernels<T>();
  const int D = D_, H = H_, Dh = D / H, B = ctx.self.B, Lq = ctx.self.L;
  const Stream& ks = cross_ ? ctx.memory : ctx.self;
  const int Lk = ks.L;
  const std::int64_t N = ctx.self.rows(), Nk = ks.rows();
  const Weight<T> Wq = weight(ps_, wq_);
  const T* bq = ps_.value(bq_);
  const T *Q, *K, *V;
  int ldq, ldk;
  if (!cross_) {  // one GEMM: [N, 3D] = x [Wq; Wk; Wv]^T
    T* qkv = q_.make(be, N, 3 * D, ctx.store);
    linear_fwd(k, qkv, x, nullptr, Wq, bq, N, D, 3 * D);
    Q = qkv; K = Q + D; V = Q + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    T* q = q_.make(be, N, D, ctx.store);
    T* kv = kv_.make(be, Nk, 2 * D, ctx.store);
    linear_fwd(k, q, x, nullptr, Wq, bq, N, D, D);
    linear_fwd(k, kv, ctx.mem, nullptr, Wq.at(D * D), bq + D, Nk, D, 2 * D);
    Q = q; K = kv; V = K + D;
    ldq = D; ldk = 2 * D;
  }
  // bf16 run on a backend with bf16 operands: Q, K, V are stored first and the stored values are
  // the operands of the head GEMMs (which would round them to those values anyway).
  const bool direct = q_.bf16_storage() && k.bf16_operands();
  const u16 *Q16 = nullptr, *K16 = nullptr, *V16 = nullptr;
  if (direct) {  // converted now, the wide buffers freed where the widening path frees them (below)
    q_.pack(/*keep_wide=*/true);
    kv_.pack(/*keep_wide=*/true);
    Q16 = q_.bf16();
    K16 = cross_ ? kv_.bf16() : Q16 + D;
    V16 = K16 + D;
    Q = K = V = nullptr;
  }
  const std::int64_t prows = static_cast<std::int64_t>(B) * H * Lq;
  T* P = probs_.make(be, prows, Lk, ctx.store);
  const std::int64_t plane = static_cast<std::int64_t>(Lq) * Lk;  // one head's scores
  for (int b = 0; b < B; ++b) {
    const std::int64_t qofs = (std::int64_t)b * Lq * ldq, kofs = (std::int64_t)b * Lk * ldk;
    batched(k, false, true, Lq, Lk, Dh, at(Q, qofs), at(Q16, qofs), ldq, Dh, at(K, kofs), at(K16, kofs), ldk, Dh,
            P + (std::int64_t)b * H * plane, Lk, plane, H);
  }
  k.attention_softmax_forward(P, B, H, Lq, Lk, ks.len, causal_, 0, T(1) / std::sqrt(T(Dh)),
                              cross_ ? nullptr : ctx.self.key_begin);
  Tensor dropped;
  const T* Pd = P;
  const u16* P16 = nullptr;
  if (ctx.train && dropout_ > 0) {
    dropped = scratch_buffer<T>(be, prows, Lk);
    k.dropout_forward(dropped.data<T>(), P, prows * Lk, dropout_, ctx.seed, dropout_stream(site_, ctx.micro));
    Pd = dropped.data<T>();
  } else if (direct) {
    probs_.pack(/*keep_wide=*/true);
    P16 = probs_.bf16();
    Pd = nullptr;
  }
  T* C = ctx_.make(be, N, D, ctx.store);
  for (int b = 0; b < B; ++b) {
    const std::int64_t pofs = (std::int64_t)b * H * plane, kofs = (std::int64_t)b * Lk * ldk;
    batched(k, false, false, Lq, Dh, Lk, at(Pd, pofs), at(P16, pofs), Lk, plane, at(V, kofs), at(V16, kofs), ldk, Dh,
            C + (std::int64_t)b * Lq * D, D, Dh, H);
  }
  probs_.pack();  // 16-bit runs: forward is done with P, Q, K, V
  q_.pack();
  kv_.pack();
  if (ctx_.bf16_storage() && k.bf16_operands()) {  // bf16: the stored context is the GEMM operand
    ctx_.pack();
    linear_fwd(k, y, nullptr, ctx_.bf16(), weight(ps_, wo_), ps_.value(bo_), N, D, D);
    return;
  }
  linear_fwd(k, y, C, nullptr, weight(ps_, wo_), ps_.value(bo_), N, D, D);
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
  // bf16 run on a backend with bf16 operands: the stored Q, K, V (and P without dropout) and the
  // bf16-rounded dC and dP are the head GEMMs' operands (each rounded once, not per GEMM).
  const bool direct = q_.bf16() && k.bf16_operands();
  // Output projection.
  Tensor dctx = scratch_buffer<T>(be, N, D);
  T* dC = dctx.data<T>();
  Tensor wide_ctx, wide_q, wide_kv, wide_p;  // 16-bit runs: the saved values widened to T
  ps_.writing(wo_, std::int64_t(D) * D);
  ps_.writing(bo_, D);
  if (ctx_.bf16() && k.bf16_operands())
    linear_bwd(k, dC, ps_.grad(wo_), ps_.grad(bo_), dy, nullptr, 1.0f, nullptr, ctx_.bf16(), weight(ps_, wo_), N, D,
               D);
  else
    linear_bwd(k, dC, ps_.grad(wo_), ps_.grad(bo_), dy, nullptr, 1.0f, ctx_.widen(wide_ctx), nullptr, weight(ps_, wo_), N,
               D, D);
  wide_ctx.reset();
  ps_.written(wo_, std::int64_t(D) * D);
  ps_.written(bo_, D);
  // Gradients of the projections land in one buffer laid out like the forward's.
  Tensor dq = scratch_buffer<T>(be, N, cross_ ? D : 3 * D), dkv;
  T *dQ = dq.data<T>(), *dK, *dV;
  const T *Q = nullptr, *K = nullptr, *V = nullptr;
  const u16 *Q16 = nullptr, *K16 = nullptr, *V16 = nullptr;
  if (direct) {
    Q16 = q_.bf16();
    K16 = cross_ ? kv_.bf16() : Q16 + D;
    V16 = K16 + D;
  } else {
    Q = q_.widen(wide_q);
    K = cross_ ? kv_.widen(wide_kv) : Q + D;
    V = K + D;
  }
  int ldq, ldk;
  if (!cross_) {
    dK = dQ + D; dV = dQ + 2 * D;
    ldq = ldk = 3 * D;
  } else {
    dkv = scratch_buffer<T>(be, Nk, 2 * D);
    dK = dkv.data<T>(); dV = dK + D;
    ldq = D; ldk = 2 * D;
  }
  const std::int64_t prows = probs_.dim(0);
  const T* P = probs_.widen(wide_p);  // softmax_backward reads P in T
  const bool drop = ctx.train && dropout_ > 0;
  const std::uint64_t stream = dropout_stream(site_, ctx.micro);
  Tensor dropped;
  const T* Pd = P;
  const u16* P16 = nullptr;
  if (drop) {  // the same mask again (counter-based RNG), instead of a stored copy
    dropped = scratch_buffer<T>(be, prows, Lk);
    k.dropout_forward(dropped.data<T>(), P, prows * Lk, dropout_, ctx.seed, stream);
    Pd = dropped.data<T>();
  } else if (direct) {
    P16 = probs_.bf16();
    Pd = nullptr;
  }
  // The bf16 rounding of a T gradient, once for the two GEMMs that read it (direct runs).
  auto rounded = [&](Tensor& t, const T* v, std::int64_t rows, std::int64_t cols) -> const u16* {
    if (!direct) return nullptr;
    t = be.empty({rows, cols}, DType::BF16, MemCategory::Workspace);
    be.fp32_to_bf16(static_cast<u16*>(t.raw()), reinterpret_cast<const float*>(v), rows * cols);
    return static_cast<const u16*>(t.raw());
  };
  Tensor dC16t, dP16t;
  const u16* dC16 = rounded(dC16t, dC, N, D);
  const T* dCt = direct ? nullptr : dC;
  Tensor dprobs = scratch_buffer<T>(be, prows, Lk);
  T* dP = dprobs.data<T>();
  // Per batch row, the H heads as strided batches; every GEMM writes its own slice, so the
  // order (all dP, then all dV) gives the same values as head by head.
  const std::int64_t plane = static_cast<std::int64_t>(Lq) * Lk;
  for (int b = 0; b < B; ++b) {
    const std::int64_t pofs = (std::int64_t)b * H * plane, kofs = (std::int64_t)b * Lk * ldk,
                       cofs = (std::int64_t)b * Lq * D;
    batched(k, false, true, Lq, Lk, Dh, at(dCt, cofs), at(dC16, cofs), D, Dh, at(V, kofs), at(V16, kofs), ldk, Dh,
            dP + pofs, Lk, plane, H);
    batched(k, true, false, Lk, Dh, Lq, at(Pd, pofs), at(P16, pofs), Lk, plane, at(dCt, cofs), at(dC16, cofs), D, Dh,
            dV + kofs, ldk, Dh, H);
  }
  dC16t.reset();
  // Dropout's backward is its forward (same mask and scale) applied to the gradient.
  if (drop) k.dropout_forward(dP, dP, dprobs.numel(), dropout_, ctx.seed, stream);
  k.softmax_backward(dP, dP, P, dprobs.dim(0), Lk, T(1) / std::sqrt(T(Dh)));
  const u16* dP16 = rounded(dP16t, dP, prows, Lk);
  const T* dPt = direct ? nullptr : dP;
  for (int b = 0; b < B; ++b) {
    const std::int64_t pofs = (std::int64_t)b * H * plane;
    const std::int64_t qofs = (std::int64_t)b * Lq * ldq, kofs = (std::int64_t)b * Lk * ldk;
    batched(k, false, false, Lq, Dh, Lk, at(dPt, pofs), at(dP16, pofs), Lk, plane, at(K, kofs), at(K16, kofs), ldk, Dh,
            dQ + qofs, ldq, Dh, H);
    batched(k, true, false, Lk, Dh, Lq, at(dPt, pofs), at(dP16, pofs), Lk, plane, at(Q, qofs), at(Q16, qofs), ldq, Dh,
            dK + kofs, ldk, Dh, H);
  }
  ps_.writing(wq_, std::int64_t(3) * D * D);
  ps_.writing(bq_, std::int64_t(3) * D);
  if (!cross_) {
    linear_bwd(k, dx, ps_.grad(wq_), ps_.grad(bq_), dQ, nullptr, 1.0f, x, nullptr, weight(ps_, wq_), N, D, 3 * D);
  } else {
    linear_bwd(k, dx, ps_.grad(wq_), ps_.grad(bq_), dQ, nullptr, 1.0f, x, nullptr, weight(ps_, wq_), N, D, D);
    linear_bwd(k, ctx.dmem, ps_.grad(wq_) + D * D, ps_.grad(bq_) + D, dkv.data<T>(), nullptr, 1.0f, ctx.mem, nullptr,
               weight(ps_, wq_).at(D * D), Nk, D, 2 * D, /*accumulate_dx=*/true);
  }
  ps_.written(wq_, std::int64_t(3) * D * D);  // q, k, v (declared one after the other)
  ps_.written(bq_, std::int64_t(3) * D);
}

template <typename T> void Attention<T>::release() {
  q_.reset(); kv_.reset(); probs_.reset(); ctx_.reset();
}

template class Attention<float>;
template class Attention<double>;

}  // namespace th
