// The OpenBLAS provider: GEMM through Eigen; with EIGEN_USE_BLAS (set on the library target)
// Eigen hands these products to the BLAS (OpenBLAS here), keeping strides and transposes, so
// nothing is copied. This is the reference path (the numerics the suite was written against).
#include <Eigen/Core>

#include "cpu/gemm_providers.hpp"

namespace th::cpu::detail {

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
void blas_gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
               T beta, T* C, int ldc) {
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

template void blas_gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
                               float*, int);
template void blas_gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int,
                                double, double*, int);

}  // namespace th::cpu::detail
