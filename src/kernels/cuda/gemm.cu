// GEMMs through cuBLASLt (cublasGemmEx where it offers no algorithm) and the linear layer built
// on them.
//
// Row-major to column-major: a row-major X[r,c] with leading dimension ld is, read column-major,
// X^T[c,r] with the same ld. So the row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T: call cuBLAS with the operands swapped, M and N swapped and each operand's
// transpose flag unchanged. Nothing is copied.
#include <cublasLt.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

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
// bf16 (kBf16) or fp16 into a compact array (ld = cols, batch stride rows*cols), round to nearest
// even: the CPU's rounding rule (th/core/half.hpp).
template <bool kBf16>
__global__ void pack_16_kernel(std::uint16_t* out, const float* in, std::int64_t rows, std::int64_t cols,
                               std::int64_t ld, std::int64_t stride, std::int64_t batch) {
  const std::int64_t total = batch * rows * cols;
  for (std::int64_t i = global_thread_index(); i < total; i += grid_stride()) {
    const std::int64_t b = i / (rows * cols), r = (i / cols) % rows, c = i % cols;
    const float x = in[b * stride + r * ld + c];
    out[i] = kBf16 ? th::half::to_bf16(x) : th::half::to_fp16(x);
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

// ---- cuBLASLt ---------------------------------------------------------------------------------
//
// Every GEMM goes through cublasLtMatmul: one matmul descriptor and three matrix layouts per
// problem (types, transposes, sizes, leading dimensions, batch strides and pointer alignments),
// built once and cached per thread with the algorithm the heuristic picks for it, and a
// workspace per (device, stream). Where the heuristic offers no algorithm (an unusual alignment
// or layout) the same product runs on cublasGemmEx / cublasGemmStridedBatchedEx instead; the
// counters say how often each ran (gemm_counts()).

constexpr std::size_t kLtWorkspaceBytes = 32u << 20;  // NVIDIA's recommendation for Hopper

std::atomic<std::int64_t> g_lt_calls{0}, g_fallback_calls{0};

// The alignment of a pointer in bytes, up to 256 (cuBLASLt's default assumption).
std::uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

cublasLtHandle_t lt_handle() {
  thread_local std::vector<cublasLtHandle_t> handles;  // per device, never destroyed (as cublas_handle)
  int device = 0;
  TH_CUDA_CHECK(cudaGetDevice(&device));
  if (static_cast<std::size_t>(device) >= handles.size()) handles.resize(static_cast<std::size_t>(device) + 1, nullptr);
  cublasLtHandle_t& h = handles[static_cast<std::size_t>(device)];
  if (!h) TH_CUBLAS_CHECK(cublasLtCreate(&h));
  return h;
}

// The workspace of one (device, stream): GEMMs of one stream run in order, so they share it.
void* lt_workspace(cudaStream_t stream) {
  static std::mutex mutex;
  static std::map<std::pair<int, cudaStream_t>, void*> spaces;  // never freed (process lifetime)
  int device = 0;
  TH_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  void*& w = spaces[{device, stream}];
  if (!w) TH_CUDA_CHECK(cudaMalloc(&w, kLtWorkspaceBytes));
  return w;
}

// One column-major problem as cuBLAS sees it (after the row-major swap), with everything the
// descriptor, the layouts and the algorithm choice depend on.
struct LtKey {
  cublasOperation_t op_a, op_b;
  int m, n, k, lda, ldb, ldc, batch;
  std::int64_t sa, sb, sc;
  cudaDataType_t a_type, b_type, c_type;
  cublasComputeType_t compute;
  std::uint32_t align_a, align_b, align_c;
  int device;
  auto tie() const {
    return std::tie(op_a, op_b, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, a_type, b_type, c_type, compute, align_a,
                    align_b, align_c, device);
  }
  bool operator<(const LtKey& o) const { return tie() < o.tie(); }
};

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace = 0;
  bool usable = false;  // the heuristic offered an algorithm
};

cublasLtMatrixLayout_t lt_layout(cudaDataType_t type, int rows, int cols, int ld, int batch, std::int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  TH_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<std::uint64_t>(rows),
                                             static_cast<std::uint64_t>(cols), ld));
  if (batch > 1) {
    const std::int32_t count = batch;
    TH_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    TH_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return l;
}

const LtPlan& lt_plan(const LtKey& key) {
  thread_local std::map<LtKey, LtPlan> plans;  // descriptors are never destroyed (process lifetime)
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  LtPlan p;
  TH_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, key.compute, CUDA_R_32F));
  TH_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &key.op_a, sizeof(key.op_a)));
  TH_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &key.op_b, sizeof(key.op_b)));
  // Operands as stored, column-major: op(A) is m x k, op(B) is k x n, C is m x n.
  const bool ta = key.op_a != CUBLAS_OP_N, tb = key.op_b != CUBLAS_OP_N;
  p.a = lt_layout(key.a_type, ta ? key.k : key.m, ta ? key.m : key.k, key.lda, key.batch, key.sa);
  p.b = lt_layout(key.b_type, tb ? key.n : key.k, tb ? key.k : key.n, key.ldb, key.batch, key.sb);
  p.c = lt_layout(key.c_type, key.m, key.n, key.ldc, key.batch, key.sc);
  cublasLtMatmulPreference_t pref = nullptr;
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const std::uint64_t ws = kLtWorkspaceBytes;
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_a,
                                                       sizeof(key.align_a)));
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_b,
                                                       sizeof(key.align_b)));
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_c,
                                                       sizeof(key.align_c)));
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_c,
                                                       sizeof(key.align_c)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  TH_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    p.algo = result.algo;
    p.workspace = result.workspaceSize;
    p.usable = true;
  } else if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_SUCCESS) {
    detail::throw_cublas_error(st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  }
  return plans.emplace(key, p).first->second;
}

// The legacy route (no cuBLASLt algorithm for this problem): cublasGemmEx or its strided-batched
// form with the same column-major arguments.
void legacy_gemm(const LtKey& k, float alpha, const void* A, const void* B, float beta, void* C, cudaStream_t stream) {
  cublasHandle_t h = cublas_handle();
  TH_CUBLAS_CHECK(cublasSetStream(h, stream));
  if (k.batch == 1)
    TH_CUBLAS_CHECK(cublasGemmEx(h, k.op_a, k.op_b, k.m, k.n, k.k, &alpha, A, k.a_type, k.lda, B, k.b_type, k.ldb,
                                 &beta, C, k.c_type, k.ldc, k.compute, CUBLAS_GEMM_DEFAULT));
  else
    TH_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, k.op_a, k.op_b, k.m, k.n, k.k, &alpha, A, k.a_type, k.lda, k.sa, B,
                                               k.b_type, k.ldb, k.sb, &beta, C, k.c_type, k.ldc, k.sc, k.batch,
                                               k.compute, CUBLAS_GEMM_DEFAULT));
  g_fallback_calls.fetch_add(1);
}

// The row-major problem C[M,N] = alpha op(A) op(B) + beta C (strides in elements, batch >= 1) as
// the column-major C^T = op(B)^T op(A)^T: operands swapped, M and N swapped.
void matmul(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, cudaDataType_t a_type, int lda,
            std::int64_t sa, const void* B, cudaDataType_t b_type, int ldb, std::int64_t sb, float beta, void* C,
            cudaDataType_t c_type, int ldc, std::int64_t sc, int batch, cublasComputeType_t compute,
            cudaStream_t stream) {
  LtKey k{};
  k.op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  k.op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  k.m = N;
  k.n = M;
  k.k = K;
  k.lda = ldb;
  k.ldb = lda;
  k.ldc = ldc;
  k.batch = batch;
  k.sa = sb;
  k.sb = sa;
  k.sc = sc;
  k.a_type = b_type;
  k.b_type = a_type;
  k.c_type = c_type;
  k.compute = compute;
  k.align_a = alignment_of(B);
  k.align_b = alignment_of(A);
  k.align_c = alignment_of(C);
  TH_CUDA_CHECK(cudaGetDevice(&k.device));
  const LtPlan& p = lt_plan(k);
  if (!p.usable) {
    legacy_gemm(k, alpha, B, A, beta, C, stream);
    return;
  }
  TH_CUBLAS_CHECK(cublasLtMatmul(lt_handle(), p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo,
                                 p.workspace ? lt_workspace(stream) : nullptr, p.workspace, stream));
  g_lt_calls.fetch_add(1);
}

std::atomic<GemmOperands> g_operands{GemmOperands::F32};

// Rounds one operand (stored rows x cols) to the 16-bit type into `out` (batch * rows * cols values).
void pack_16(Scratch& out, GemmOperands type, const float* in, int rows, int cols, int ld, std::int64_t stride,
             int batch, cudaStream_t stream) {
  const std::int64_t n = static_cast<std::int64_t>(batch) * rows * cols;
  if (type == GemmOperands::BF16)
    pack_16_kernel<true><<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(out.as<std::uint16_t>(), in, rows,
                                                                               cols, ld, stride, batch);
  else
    pack_16_kernel<false><<<elementwise_grid(n), kElementwiseBlock, 0, stream>>>(out.as<std::uint16_t>(), in, rows,
                                                                                cols, ld, stride, batch);
  TH_CUDA_CHECK_LAUNCH();
}

// The fp32 entry points' one body: fp32 (TF32 if allowed) operands as they are, or bf16 / fp16
// rounded copies per set_gemm_operands(); fp32 accumulation and output in every case.
void gemm_any(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, std::int64_t sa,
              const float* B, int ldb, std::int64_t sb, float beta, float* C, int ldc, std::int64_t sc, int batch,
              cudaStream_t stream) {
  const GemmOperands type = g_operands.load();
  if (type == GemmOperands::F32) {
    const cublasComputeType_t compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    matmul(ta, tb, M, N, K, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, beta, C, CUDA_R_32F, ldc, sc, batch,
           compute, stream);
    return;
  }
  const cudaDataType_t t16 = type == GemmOperands::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  const std::int64_t a_block = static_cast<std::int64_t>(a_rows) * a_cols, b_block = static_cast<std::int64_t>(b_rows) * b_cols;
  Scratch a16(sizeof(std::uint16_t) * static_cast<std::size_t>(a_block * batch), stream);
  Scratch b16(sizeof(std::uint16_t) * static_cast<std::size_t>(b_block * batch), stream);
  pack_16(a16, type, A, a_rows, a_cols, lda, sa, batch, stream);
  pack_16(b16, type, B, b_rows, b_cols, ldb, sb, batch, stream);
  matmul(ta, tb, M, N, K, alpha, a16.as<std::uint16_t>(), t16, a_cols, a_block, b16.as<std::uint16_t>(), t16, b_cols,
         b_block, beta, C, CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F, stream);
}

}  // namespace

void set_gemm_operands(GemmOperands type) { g_operands.store(type); }
GemmOperands gemm_operands() { return g_operands.load(); }
GemmCounts gemm_counts() { return {g_lt_calls.load(), g_fallback_calls.load()}; }

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
  matmul(ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, 0, B, CUDA_R_16BF, ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1,
         CUBLAS_COMPUTE_32F, stream);
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, float beta, __nv_bfloat16* C, int ldc, cudaStream_t stream) {
  if (!check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc)) {
    if (M > 0 && N > 0) scale_c(gemm_scale_c_bf16_kernel, C, M, N, ldc, beta, stream);
    return;
  }
  matmul(ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, 0, B, CUDA_R_16BF, ldb, 0, beta, C, CUDA_R_16BF, ldc, 0, 1,
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
