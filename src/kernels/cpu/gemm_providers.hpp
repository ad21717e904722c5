#pragma once
// The GEMM providers behind the engine (gemm_engine.cpp), private to the kernels layer.
// Row-major throughout: C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, ld* are row strides,
// stride_* the element offset between batch entries.
#include <cstdint>
#include <string>

namespace th::cpu::detail {

// OpenBLAS through Eigen's BLAS mapping (today's reference path, unchanged numerics).
// Requires M, N > 0; K == 0 scales C by beta.
template <typename T>
void blas_gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
               T beta, T* C, int ldc);

// oneDNN matmul. `bf16` selects bf16 operands (A, B are uint16 bf16 bits) instead of fp32; C is
// fp32 either way. Returns false, having done nothing, when oneDNN cannot run this GEMM (not
// built, or the primitive cannot be created for this shape/type/ISA): the caller then uses
// another provider. Requires M, N, K, batch > 0.
bool onednn_gemm(bool bf16, bool ta, bool tb, int M, int N, int K, float alpha, const void* A, int lda,
                 std::int64_t stride_a, const void* B, int ldb, std::int64_t stride_b, float beta, float* C,
                 int ldc, std::int64_t stride_c, int batch);

struct OnednnProbe {
  bool built = false;
  std::string version, isa;
  bool bf16_native = false;
  bool fp32 = false, bf16 = false;          // a 64^3 matmul primitive was created
  std::string fp32_impl, bf16_impl;         // oneDNN's implementation names
};
// Creates the two probe primitives; call once (gemm_capabilities() caches the answer).
OnednnProbe onednn_probe();

}  // namespace th::cpu::detail
