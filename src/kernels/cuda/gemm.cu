// GEMMs through cuBLAS and the linear layer built on them.
//
// Row-major to column-major: a row-major X[r,c] with leading dimension ld is, read column-major,
// X^T[c,r] with the same ld. So the row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T: call cuBLAS with the operands swapped, M and N swapped and each operand's
// transpose flag unchanged. Nothing is copied.
#include <atomic>
#include <climits>

#include "device_utils.cuh"
#include "scratch.hpp"
#include "th/core/half.hpp"
#include "th/kernels/cuda.hpp"

namespace th::cuda {

// ---- kernels --------------------------------------------------------------------------------

// K == 0: C[M,N] (leading dimension ldc) = beta * C, or 0 when beta == 0 (C not read, as BLAS).
__global__ void gemm_scale_c_kernel(float* C, int M, int N, int ldc, float beta) {
  const std::int64_t total = static_cast<std::int64_t>(M) * N;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    float& c = C[(i / N) * ldc + i % N];
    c = beta == 0.0f ? 0.0f : beta * c;
  }
}
__global__ void gemm_scale_c_bf16_kernel(__nv_bfloat16* C, int M, int N, int ldc, float beta) {
  const std::int64_t total = static_cast<std::int64_t>(M) * N;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    __nv_bfloat16& c = C[(i / N) * ldc + i % N];
    c = __float2bfloat16_rn(beta == 0.0f ? 0.0f : beta * __bfloat162float(c));
  }
}

// An operand as stored (batch blocks of rows x cols, row stride ld, batch stride s) rounded to
// bf16 into a compact array (ld = cols, batch stride rows*cols): the CPU engine's packing rule.
__global__ void pack_bf16_kernel(__nv_bfloat16* out, const float* in, std::int64_t rows, std::int64_t cols,
                                 std::int64_t ld, std::int64_t stride, std::int64_t batch) {
  const std::int64_t total = batch * rows * cols;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    const std::int64_t b = i / (rows * cols), r = (i / cols) % rows, c = i % cols;
    out[i] = __nv_bfloat16_raw{th::half::to_bf16(in[b * stride + r * ld + c])};
  }
}

// ---- launchers ------------------------------------------------------------------------------

namespace {

// Shapes and leading dimensions as the row-major caller sees them; true when there is a product
// to compute (M, N, K > 0).
bool check_gemm_args(bool ta, bool tb, int M, int N, int K, const void* A, int lda, const void* B, int ldb,
                     const void* C, int ldc) {
  TH_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size");
  if (M == 0 || N == 0) return false;
  TH_CHECK(C != nullptr, "gemm: C is null");
  TH_CHECK(ldc >= N, "gemm: ldc < N");
  if (K == 0) return false;
  TH_CHECK(A != nullptr && B != nullptr, "gemm: A or B is null");
  TH_CHECK(lda >= (ta ? M : K), "gemm: lda smaller than a row of A as stored");
  TH_CHECK(ldb >= (tb ? K : N), "gemm: ldb smaller than a row of B as stored");
  return true;
}

template <typename TC, typename ScaleKernel>
void scale_c(ScaleKernel kernel, TC* C, int M, int N, int ldc, float beta, cudaStream_t stream) {
  kernel<<<elementwise_grid(static_cast<std::int64_t>(M) * N), kElementwiseBlock, 0, stream>>>(C, M, N, ldc, beta);
  TH_CUDA_CHECK_LAUNCH();
}

// The swapped cublasGemmEx call shared by every variant.
void gemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, cudaDataType_t a_type,
             int lda, const void* B, cudaDataType_t b_type, int ldb, float beta, void* C,
             cudaDataType_t c_type, int ldc, cublasComputeType_t compute, cudaStream_t stream) {
  cublasHandle_t h = cublas_handle();
  TH_CUBLAS_CHECK(cublasSetStream(h, stream));
  TH_CUBLAS_CHECK(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                               &alpha, B, b_type, ldb, A, a_type, lda, &beta, C, c_type, ldc, compute,
                               CUBLAS_GEMM_DEFAULT));
}

std::atomic<bool> g_bf16_operands{false};

// The swapped cublasGemmStridedBatchedEx call (strides in elements).
void gemm_batched_ex(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, cudaDataType_t a_type,
                     int lda, std::int64_t sa, const void* B, cudaDataType_t b_type, int ldb, std::int64_t sb,
                     float beta, float* C, int ldc, std::int64_t sc, int batch, cublasComputeType_t compute,
                     cudaStream_t stream) {
  cublasHandle_t h = cublas_handle();
  TH_CUBLAS_CHECK(cublasSetStream(h, stream));
  TH_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                                             K, &alpha, B, b_type, ldb, sb, A, a_type, lda, sa, &beta, C, CUDA_R_32F,
                                             ldc, sc, batch, compute, CUBLAS_GEMM_DEFAULT));
}

// Rounds one operand (stored rows x cols) to bf16 into `out` (batch * rows * cols values).
void pack_bf16(Scratch& out, const float* in, int rows, int cols, int ld, std::int64_t stride, int batch,
               cudaStream_t stream) {
  const std::int64_t n = static_cast<std::int64_t>(batch) * rows * cols;
  pack_bf16_kernel<<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(out.as<__nv_bfloat16>(), in, rows, cols, ld,
                                                                          stride, batch);
  TH_CUDA_CHECK_LAUNCH();
}

// The fp32 entry points' one body: fp32 (TF32 if allowed) operands as they are, or bf16-rounded
// copies when set_bf16_operands(true).
void gemm_any(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, std::int64_t sa,
              const float* B, int ldb, std::int64_t sb, float beta, float* C, int ldc, std::int64_t sc, int batch,
              cudaStream_t stream) {
  if (!g_bf16_operands.load()) {
    const cublasComputeType_t compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (batch == 1)
      gemm_ex(ta, tb, M, N, K, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc, compute,
              stream);
    else
      gemm_batched_ex(ta, tb, M, N, K, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, beta, C, ldc, sc, batch,
                      compute, stream);
    return;
  }
  const int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  const std::int64_t a_block = static_cast<std::int64_t>(a_rows) * a_cols, b_block = static_cast<std::int64_t>(b_rows) * b_cols;
  Scratch a16(sizeof(__nv_bfloat16) * static_cast<std::size_t>(a_block * batch), stream);
  Scratch b16(sizeof(__nv_bfloat16) * static_cast<std::size_t>(b_block * batch), stream);
  pack_bf16(a16, A, a_rows, a_cols, lda, sa, batch, stream);
  pack_bf16(b16, B, b_rows, b_cols, ldb, sb, batch, stream);
  gemm_batched_ex(ta, tb, M, N, K, alpha, a16.as<__nv_bfloat16>(), CUDA_R_16BF, a_cols, a_block,
                  b16.as<__nv_bfloat16>(), CUDA_R_16BF, b_cols, b_block, beta, C, ldc, sc, batch, CUBLAS_COMPUTE_32F,
                  stream);
}

}  // namespace

void set_bf16_operands(bool on) { g_bf16_operands.store(on); }
bool bf16_operands() { return g_bf16_operands.load(); }

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc, cudaStream_t stream) {
  if (!check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc)) {
    if (M > 0 && N > 0) scale_c(gemm_scale_c_kernel, C, M, N, ldc, beta, stream);
    return;
  }
  gemm_any(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream);
}

void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                          std::int64_t sa, const float* B, int ldb, std::int64_t sb, float beta, float* C, int ldc,
                          std::int64_t sc, int batch, cudaStream_t stream) {
  TH_CHECK(batch >= 0, "gemm_strided_batched: batch < 0");
  if (batch == 0) return;
  if (!check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc)) {
    if (M > 0 && N > 0)
      for (int i = 0; i < batch; ++i) scale_c(gemm_scale_c_kernel, C + i * sc, M, N, ldc, beta, stream);
    return;
  }
  gemm_any(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch, stream);
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream) {
  if (!check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc)) {
    if (M > 0 && N > 0) scale_c(gemm_scale_c_kernel, C, M, N, ldc, beta, stream);
    return;
  }
  gemm_ex(ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, beta, C, CUDA_R_32F, ldc,
          CUBLAS_COMPUTE_32F, stream);
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, float beta, __nv_bfloat16* C, int ldc, cudaStream_t stream) {
  if (!check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc)) {
    if (M > 0 && N > 0) scale_c(gemm_scale_c_bf16_kernel, C, M, N, ldc, beta, stream);
    return;
  }
  gemm_ex(ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, beta, C, CUDA_R_16BF, ldc,
          CUBLAS_COMPUTE_32F, stream);
}

void linear_forward(float* y, const float* x, const float* W, const float* b, std::int64_t N, int in, int out,
                    cudaStream_t stream) {
  TH_CHECK(N >= 0 && N <= INT_MAX, "linear_forward: N out of int range (cuBLAS dimensions are int)");
  TH_CHECK(in > 0 && out > 0, "linear_forward: in and out must be positive");
  gemm(false, true, static_cast<int>(N), out, in, 1.0f, x, in, W, in, 0.0f, y, out, stream);
  if (b) bias_add(y, b, N, out, stream);
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                     std::int64_t N, int in, int out, bool accumulate_dx, cudaStream_t stream) {
  TH_CHECK(N >= 0 && N <= INT_MAX, "linear_backward: N out of int range (cuBLAS dimensions are int)");
  TH_CHECK(in > 0 && out > 0, "linear_backward: in and out must be positive");
  const int n = static_cast<int>(N);
  // dx[N,in] = dy[N,out] W[out,in]; dW[out,in] += dy^T[out,N] x[N,in].
  if (dx) gemm(false, false, n, in, out, 1.0f, dy, out, W, in, accumulate_dx ? 1.0f : 0.0f, dx, in, stream);
  if (dW) gemm(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dW, in, stream);
  if (db) bias_grad(db, dy, N, out, stream);
}

}  // namespace th::cuda
