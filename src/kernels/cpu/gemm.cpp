// GEMM entry points: each call goes to the provider the engine's plan names (gemm_engine.hpp).
// fp32: OpenBLAS or oneDNN; bf16 operands: oneDNN's bf16 matmul, or widened to fp32 (exact) for
// the fp32 provider; fp32 operands in a bf16 run (plan.fp32_as_bf16): rounded to bf16 first, then
// the bf16 path. double: always OpenBLAS (gradient checks). A oneDNN call that cannot be created
// for a shape falls back: batched -> entry by entry -> OpenBLAS.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/gemm_engine.hpp"
#include "th/kernels/host_loop.hpp"
#include "cpu/convert_rows.hpp"
#include "cpu/gemm_providers.hpp"

namespace th::cpu {

namespace {
using u16 = std::uint16_t;

// An operand as stored: `batch` row-major [rows, cols] blocks, row stride ld, batch stride s.
template <typename U>
struct Operand {
  const U* p;
  int rows, cols, ld;
  std::int64_t s;
};
template <typename U>
Operand<U> operand(const U* p, bool trans, int op_rows, int op_cols, int ld, std::int64_t s) {
  return trans ? Operand<U>{p, op_cols, op_rows, ld, s} : Operand<U>{p, op_rows, op_cols, ld, s};
}

// Per-thread scratch for converted operands, grown as needed: a workspace outside the memory
// pool, at most the two operands of the largest GEMM of a bf16 run (slots 0, 1), the output
// gradient that linear_backward's two products share (slot 2; bf16 or, on the fp32 provider,
// fp32 holding bf16 values) and operands converted for an fp32 provider (slots 3, 4).
template <typename U>
U* scratch(int slot, std::size_t n) {
  thread_local std::vector<U> buffers[5];
  if (buffers[slot].size() < n) buffers[slot].resize(n);
  return buffers[slot].data();
}

// Copies the operand into a compact array (ld = cols, batch stride rows*cols), a row at a time
// through convert(dst, src, cols): the ISA-cloned row conversions of convert_rows.hpp (an
// out-of-line call per element here once took a quarter of a bf16 step).
template <typename Out, typename In, typename F>
Out* pack(int slot, const Operand<In>& x, int batch, const char* name, F convert) {
  const std::int64_t rows = x.rows, cols = x.cols, block = rows * cols;
  Out* out = scratch<Out>(slot, static_cast<std::size_t>(block * batch));
  const Operand<In> in = x;
  host_for(name, rows * batch, [=](std::int64_t i) {
    const std::int64_t b = i / rows, r = i % rows;
    convert(out + b * block + r * cols, in.p + b * in.s + r * in.ld, cols);
  });
  return out;
}

struct Call {  // the shape of one (batched) GEMM; operands passed beside it
  bool ta, tb;
  int M, N, K;
  float alpha, beta;
  float* C;
  int ldc;
  std::int64_t sc;
  int batch;
  Call single(int i) const { Call c = *this; c.C = C + i * sc; c.batch = 1; return c; }
};

void run_fp32(GemmProvider p, const Call& g, const Operand<float>& a, const Operand<float>& b) {
  if (p == GemmProvider::OneDNN) {
    if (detail::onednn_gemm(false, g.ta, g.tb, g.M, g.N, g.K, g.alpha, a.p, a.ld, a.s, b.p, b.ld, b.s, g.beta,
                            g.C, g.ldc, g.sc, g.batch))
      return;
    if (g.batch > 1) {  // no batched primitive for these strides: one GEMM at a time
      for (int i = 0; i < g.batch; ++i)
        run_fp32(p, g.single(i), {a.p + i * a.s, a.rows, a.cols, a.ld, 0}, {b.p + i * b.s, b.rows, b.cols, b.ld, 0});
      return;
    }
  }
  for (int i = 0; i < g.batch; ++i)
    detail::blas_gemm<float>(g.ta, g.tb, g.M, g.N, g.K, g.alpha, a.p + i * a.s, a.ld, b.p + i * b.s, b.ld, g.beta,
                             g.C + i * g.sc, g.ldc);
}

void run_bf16(const GemmPlan& plan, const Call& g, const Operand<u16>& a, const Operand<u16>& b) {
  if (plan.bf16_onednn) {
    if (detail::onednn_gemm(true, g.ta, g.tb, g.M, g.N, g.K, g.alpha, a.p, a.ld, a.s, b.p, b.ld, b.s, g.beta,
                            g.C, g.ldc, g.sc, g.batch))
      return;
    if (g.batch > 1) {
      for (int i = 0; i < g.batch; ++i)
        run_bf16(plan, g.single(i), {a.p + i * a.s, a.rows, a.cols, a.ld, 0}, {b.p + i * b.s, b.rows, b.cols, b.ld, 0});
      return;
    }
  }
  // Widening bf16 to fp32 is exact, and so are the products of two bf16 values in fp32: the
  // fp32 provider gives what a bf16 matmul with fp32 accumulation gives, up to summation order.
  const auto widen = rows::widen_bf16;
  const float* a32 = pack<float>(0, a, g.batch, "GEMM::widen_bf16", widen);
  const float* b32 = pack<float>(1, b, g.batch, "GEMM::widen_bf16", widen);
  run_fp32(plan.fp32, g, {a32, a.rows, a.cols, a.cols, std::int64_t(a.rows) * a.cols},
           {b32, b.rows, b.cols, b.cols, std::int64_t(b.rows) * b.cols});
}

// An operand of a bf16 run converted once for the fp32 provider: given as 16-bit values (o16.p
// set: widened, exact) or fp32 (o: rounded to bf16 values); compact in float scratch `slot`.
Operand<float> bf16_valued(int slot, const Operand<float>& o, const Operand<u16>& o16, int batch) {
  const int nr = o16.p ? o16.rows : o.rows, nc = o16.p ? o16.cols : o.cols;
  const float* p = o16.p ? pack<float>(slot, o16, batch, "GEMM::widen_bf16", rows::widen_bf16)
                         : pack<float>(slot, o, batch, "GEMM::round_to_bf16", rows::round_bf16);
  return {p, nr, nc, nc, std::int64_t(nr) * nc};
}

void run_fp32_as_bf16(const GemmPlan& plan, const Call& g, const Operand<float>& a, const Operand<float>& b) {
  if (plan.bf16_onednn) {
    const auto narrow = rows::narrow_bf16;
    const u16* a16 = pack<u16>(0, a, g.batch, "GEMM::round_to_bf16", narrow);
    const u16* b16 = pack<u16>(1, b, g.batch, "GEMM::round_to_bf16", narrow);
    run_bf16(plan, g, {a16, a.rows, a.cols, a.cols, std::int64_t(a.rows) * a.cols},
             {b16, b.rows, b.cols, b.cols, std::int64_t(b.rows) * b.cols});
    return;
  }
  run_fp32(plan.fp32, g, bf16_valued(0, a, Operand<u16>{}, g.batch), bf16_valued(1, b, Operand<u16>{}, g.batch));
}

// K == 0: C = beta C (the product is empty).
void scale_only(const Call& g) {
  for (int i = 0; i < g.batch; ++i)
    detail::blas_gemm<float>(false, false, g.M, g.N, 0, 0.f, nullptr, 1, nullptr, 1, g.beta, g.C + i * g.sc, g.ldc);
}

template <typename T>
void dispatch(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, std::int64_t sa, const T* B,
              int ldb, std::int64_t sb, T beta, T* C, int ldc, std::int64_t sc, int batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if constexpr (std::is_same_v<T, double>) {
    for (int i = 0; i < batch; ++i)
      detail::blas_gemm<double>(ta, tb, M, N, K, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
  } else {
    const Call g{ta, tb, M, N, K, alpha, beta, C, ldc, sc, batch};
    if (K <= 0) return scale_only(g);
    const GemmPlan& plan = gemm_plan();
    const auto a = operand(A, ta, M, K, lda, sa), b = operand(B, tb, K, N, ldb, sb);
    if (plan.fp32_as_bf16) run_fp32_as_bf16(plan, g, a, b);
    else run_fp32(plan.fp32, g, a, b);
  }
}
}  // namespace

template <typename T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
          int ldc) {
  dispatch<T>(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

template <typename T>
void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, std::int64_t sa,
                          const T* B, int ldb, std::int64_t sb, T beta, T* C, int ldc, std::int64_t sc, int batch) {
  dispatch<T>(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}

void gemm_strided_batched_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const u16* A, int lda,
                               std::int64_t sa, const u16* B, int ldb, std::int64_t sb, float beta, float* C,
                               int ldc, std::int64_t sc, int batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  const Call g{ta, tb, M, N, K, alpha, beta, C, ldc, sc, batch};
  if (K <= 0) return scale_only(g);
  run_bf16(gemm_plan(), g, operand(A, ta, M, K, lda, sa), operand(B, tb, K, N, ldb, sb));
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const u16* A, int lda, const u16* B, int ldb,
               float beta, float* C, int ldc) {
  gemm_strided_batched_bf16(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

template <typename T>
void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out) {
  gemm<T>(false, true, static_cast<int>(N), out, in, T(1), x, in, W, in, T(0), y, out);
  if (b) bias_add(y, b, N, out);
}

template <typename T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N,
                     int in, int out, bool accumulate_dx) {
  const int n = static_cast<int>(N);
  if constexpr (std::is_same_v<T, float>) {
    // bf16 run on oneDNN: dy is rounded to bf16 once for both products (the same operands and
    // products as two separate calls, one conversion pass fewer).
    if (gemm_plan().fp32_as_bf16)
      return linear_backward_bf16(dx, dW, db, dy, nullptr, 1.0f, x, nullptr, W, nullptr, N, in, out, accumulate_dx);
  }
  if (dx) gemm<T>(false, false, n, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
  if (dW) gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dW, in);
  if (db) bias_grad(db, dy, N, out);
}

void gemm_strided_batched_mixed(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const u16* A16,
                                int lda, std::int64_t sa, const float* B, const u16* B16, int ldb, std::int64_t sb,
                                float beta, float* C, int ldc, std::int64_t sc, int batch) {
  TH_CHECK((A == nullptr) != (A16 == nullptr) && (B == nullptr) != (B16 == nullptr),
           "gemm_strided_batched_mixed: give exactly one of A / A16 and of B / B16");
  if (M <= 0 || N <= 0 || batch <= 0) return;
  const Call g{ta, tb, M, N, K, alpha, beta, C, ldc, sc, batch};
  if (K <= 0) return scale_only(g);
  const GemmPlan& plan = gemm_plan();
  if (plan.fp32_as_bf16 && plan.bf16_onednn) {
    auto as_bf16 = [&](int slot, const float* p, const u16* p16, bool trans, int nr, int nc, int ld,
                       std::int64_t s) -> Operand<u16> {
      if (p16) return operand(p16, trans, nr, nc, ld, s);
      const Operand<float> o = operand(p, trans, nr, nc, ld, s);
      return {pack<u16>(slot, o, batch, "GEMM::round_to_bf16", rows::narrow_bf16), o.rows, o.cols, o.cols,
              std::int64_t(o.rows) * o.cols};
    };
    run_bf16(plan, g, as_bf16(0, A, A16, ta, M, K, lda, sa), as_bf16(1, B, B16, tb, K, N, ldb, sb));
    return;
  }
  if (plan.fp32_as_bf16) {
    // A bf16 run on the fp32 provider: each operand converted once (16-bit widened, fp32 rounded),
    // not widened and then rounded again by the fp32 entry point.
    run_fp32(plan.fp32, g, bf16_valued(3, operand(A, ta, M, K, lda, sa), operand(A16, ta, M, K, lda, sa), batch),
             bf16_valued(4, operand(B, tb, K, N, ldb, sb), operand(B16, tb, K, N, ldb, sb), batch));
    return;
  }
  // fp32 plan: widen the 16-bit operands (exact, compact) and take the fp32 entry point.
  auto as_fp32 = [&](int slot, const float* p, const u16* p16, bool trans, int nr, int nc, int& ld,
                     std::int64_t& s) -> const float* {
    if (!p16) return p;
    const Operand<u16> o = operand(p16, trans, nr, nc, ld, s);
    ld = o.cols, s = std::int64_t(o.rows) * o.cols;
    return pack<float>(slot, o, batch, "GEMM::widen_bf16", rows::widen_bf16);
  };
  const float* a = as_fp32(3, A, A16, ta, M, K, lda, sa);
  const float* b = as_fp32(4, B, B16, tb, K, N, ldb, sb);
  dispatch<float>(ta, tb, M, N, K, alpha, a, lda, sa, b, ldb, sb, beta, C, ldc, sc, batch);
}

void linear_forward_bf16(float* y, const float* x, const u16* x16, const float* W, const u16* W16, const float* b,
                         std::int64_t N, int in, int out) {
  TH_CHECK((x == nullptr) != (x16 == nullptr) && (W == nullptr) != (W16 == nullptr),
           "linear_forward_bf16: give exactly one of x / x16 and of W / W16");
  const int n = static_cast<int>(N);
  if (n <= 0 || out <= 0) return;
  gemm_strided_batched_mixed(false, true, n, out, in, 1.0f, x, x16, in, 0, W, W16, in, 0, 0.0f, y, out, 0, 1);
  if (b) bias_add(y, b, N, out);
}

void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const u16* dy16, float alpha,
                          const float* x, const u16* x16, const float* W, const u16* W16, std::int64_t N, int in,
                          int out, bool accumulate_dx, int ldy) {
  TH_CHECK((dy == nullptr) != (dy16 == nullptr) && (!dW || (x == nullptr) != (x16 == nullptr)) &&
               (!dx || (W == nullptr) != (W16 == nullptr)),
           "linear_backward_bf16: give exactly one of dy / dy16, (for dW) of x / x16 and (for dx) of W / W16");
  TH_CHECK(!db || dy, "linear_backward_bf16: the bias gradient needs the fp32 dy");
  const int ld = ldy > 0 ? ldy : out;  // dy's row stride
  TH_CHECK(ld >= out && (!db || ld == out), "linear_backward_bf16: dy's row stride is below its width, or strided with a bias");
  const int n = static_cast<int>(N);
  const GemmPlan& plan = gemm_plan();
  if (plan.fp32_as_bf16 && plan.bf16_onednn && n > 0 && in > 0 && out > 0) {
    // dy rounded once (slot 2) for both products.
    const u16* dyp = dy16 ? dy16 : pack<u16>(2, operand(dy, false, n, out, ld, 0), 1, "GEMM::round_to_bf16",
                                             rows::narrow_bf16);
    const Operand<u16> dyo{dyp, n, out, dy16 ? ld : out, 0};
    if (dx) {
      const u16* Wp = W16 ? W16 : pack<u16>(1, operand(W, false, out, in, in, 0), 1, "GEMM::round_to_bf16",
                                            rows::narrow_bf16);
      run_bf16(plan, Call{false, false, n, in, out, alpha, accumulate_dx ? 1.0f : 0.0f, dx, in, 0, 1}, dyo,
               {Wp, out, in, in, 0});
    }
    if (dW) {
      const u16* xp = x16 ? x16 : pack<u16>(1, operand(x, false, n, in, in, 0), 1, "GEMM::round_to_bf16",
                                             rows::narrow_bf16);
      run_bf16(plan, Call{true, false, out, in, n, alpha, 1.0f, dW, in, 0, 1}, dyo, {xp, n, in, in, 0});
    }
  } else if (plan.fp32_as_bf16 && n > 0 && in > 0 && out > 0) {
    // A bf16 run on the fp32 provider: each operand converted once (dy for both products) and
    // multiplied as it is: the values the fp32 entry points would round them to.
    auto stored = [](auto* p, int nr, int nc, int l = 0) { return operand(p, false, nr, nc, l > 0 ? l : nc, 0); };
    const Operand<float> dyo = bf16_valued(2, stored(dy, n, out, ld), stored(dy16, n, out, ld), 1);
    if (dx)
      run_fp32(plan.fp32, Call{false, false, n, in, out, alpha, accumulate_dx ? 1.0f : 0.0f, dx, in, 0, 1}, dyo,
               bf16_valued(3, stored(W, out, in), stored(W16, out, in), 1));
    if (dW)
      run_fp32(plan.fp32, Call{true, false, out, in, n, alpha, 1.0f, dW, in, 0, 1}, dyo,
               bf16_valued(4, stored(x, n, in), stored(x16, n, in), 1));
  } else {
    // fp32 operands (or empty shapes): each product through the mixed entry point, which widens
    // the 16-bit operands (exact).
    if (dx)
      gemm_strided_batched_mixed(false, false, n, in, out, alpha, dy, dy16, ld, 0, W, W16, in, 0,
                                 accumulate_dx ? 1.0f : 0.0f, dx, in, 0, 1);
    if (dW) gemm_strided_batched_mixed(true, false, out, in, n, alpha, dy, dy16, ld, 0, x, x16, in, 0, 1.0f, dW, in, 0, 1);
  }
  if (db) {
    TH_CHECK(alpha == 1.0f, "linear_backward_bf16: a bias gradient with alpha != 1");
    bias_grad(db, dy, N, out);
  }
}

#define TH_INSTANTIATE(T)                                                                          \
  template void gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*, int, T, T*, int);   \
  template void gemm_strided_batched<T>(bool, bool, int, int, int, T, const T*, int, std::int64_t, \
                                        const T*, int, std::int64_t, T, T*, int, std::int64_t, int); \
  template void linear_forward<T>(T*, const T*, const T*, const T*, std::int64_t, int, int);       \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, std::int64_t, int, int, bool);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
