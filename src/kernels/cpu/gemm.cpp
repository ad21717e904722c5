// GEMM through Eigen; with EIGEN_USE_BLAS (set on the library target) Eigen hands these products
// to the BLAS (OpenBLAS here), keeping strides and transposes, so nothing is copied.
#include <Eigen/Core>

#include "th/kernels/cpu.hpp"

namespace th::cpu {

namespace {
template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <typename T, typename A, typename B>
void accumulate(MutMap<T>& C, T alpha, T beta, const A& a, const B& b) {
  if (beta == T(0)) {
    C.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) C *= beta;
    C.noalias() += alpha * a * b;
  }
}
}  // namespace

template <typename T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K == 0) {
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
  ConstMap<T> a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  ConstMap<T> b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  if (!ta && !tb) accumulate(c, alpha, beta, a, b);
  else if (ta && !tb) accumulate(c, alpha, beta, a.transpose(), b);
  else if (!ta && tb) accumulate(c, alpha, beta, a, b.transpose());
  else accumulate(c, alpha, beta, a.transpose(), b.transpose());
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
  if (dx) gemm<T>(false, false, n, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
  if (dW) gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dW, in);
  if (db) bias_grad(db, dy, N, out);
}

#define TH_INSTANTIATE(T)                                                                          \
  template void gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*, int, T, T*, int);   \
  template void linear_forward<T>(T*, const T*, const T*, const T*, std::int64_t, int, int);       \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, std::int64_t, int, int, bool);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
