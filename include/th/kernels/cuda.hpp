#pragma once
// CUDA kernels: the GPU backend. Every function has the semantics of its namesake in th::cpu
// (include/th/kernels/cpu.hpp), with the same argument order, so tests compare them 1:1; the
// only additions are a trailing `cudaStream_t stream` and, where the CPU kernel returns a host
// value, a blocking variant (it synchronises `stream`) beside an asynchronous one that writes to
// device memory.
//
// All pointers are device pointers to fp32 unless said otherwise (`key_len`, `tokens`,
// `targets` are device int arrays too); everything is enqueued on `stream` and returns without
// waiting. Reductions accumulate in fp32 (double where the CPU returns a double) and are
// deterministic run to run, except embedding_backward, which scatters with atomicAdd.
//
// Legend as in cpu.hpp: N rows (tokens = B*T), D model width, F FFN width, V vocabulary, B batch,
// H heads, Tq/Tk query/key lengths; row-major; parameter gradients ACCUMULATE (+=), input
// gradients are written (=) unless said otherwise.
//
// Errors: launchers check their arguments (th::Error via TH_CHECK) and every CUDA/cuBLAS call
// through TH_CUDA_CHECK / TH_CUBLAS_CHECK, which throw th::Error naming the call, file, line,
// rank and the CUDA error. Errors of kernels that already run asynchronously surface at the next
// checked call, as usual with CUDA.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"

namespace th::cuda {

using Activation = th::cpu::Activation;

// True when at least one CUDA device is visible. Never aborts: without a driver, or with
// CUDA_VISIBLE_DEVICES="" it returns false (and clears the CUDA error state).
bool device_available();

namespace detail {
// Throw th::Error "file:line: CUDA error on rank R: `call` returned NAME (description)".
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
}  // namespace detail

// cuBLAS handle of the calling thread for the current device, created on first use (handles
// are not thread-safe to share; one per thread and device avoids locking).
cublasHandle_t cublas_handle();

// fp32 GEMMs may use TF32 tensor cores (10-bit mantissa inputs, fp32 accumulate) when allowed;
// off by default so results match the CPU to fp32 rounding. Process-wide, like PyTorch's
// torch.backends.cuda.matmul.allow_tf32.
void set_allow_tf32(bool allow);
bool allow_tf32();

// ---- GEMM (cuBLASLt; the row-major problem is the column-major C^T = op(B)^T op(A)^T) ----------

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (beta == 0: C is not read).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream);
// `batch` GEMMs as above; matrix i at A + i*stride_a, B + i*stride_b, C + i*stride_c (elements;
// th::cpu::gemm_strided_batched's argument order). One batched cublasLtMatmul.
void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                          std::int64_t stride_a, const float* B, int ldb, std::int64_t stride_b, float beta, float* C,
                          int ldc, std::int64_t stride_c, int batch, cudaStream_t stream);
// The operands of the fp32 GEMMs above (and the linear layers on them): F32 multiplies them as
// they are (TF32 where allowed); BF16 (precision%dtype = 'bf16', the CPU GEMM engine's
// fp32_as_bf16) and F16 (precision%dtype = 'fp16') round them to 16 bits into stream-ordered
// scratch and multiply on the tensor cores with fp32 accumulation and fp32 output. BF16 forms the
// products the CPU's bf16 path forms, summed in another order; F16 is PyTorch's fp16 autocast
// (the CPU computes its fp16 GEMMs in fp32). Process-wide, like set_allow_tf32; F32 by default.
enum class GemmOperands { F32, BF16, F16 };
void set_gemm_operands(GemmOperands type);
GemmOperands gemm_operands();
// GEMMs issued since the process started: through cublasLtMatmul, and through cublasGemmEx
// where the cuBLASLt heuristic offered no algorithm for the problem.
struct GemmCounts {
  std::int64_t lt = 0, fallback = 0;
};
GemmCounts gemm_counts();
// bf16 operands, fp32 accumulation (tensor cores), fp32 or bf16 C.
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16* A,
               int lda, const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc,
               cudaStream_t stream);
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16* A,
               int lda, const __nv_bfloat16* B, int ldb, float beta, __nv_bfloat16* C, int ldc,
               cudaStream_t stream);

// y[N,out] = x[N,in] W^T + b, W[out,in]; b may be null.
void linear_forward(float* y, const float* x, const float* W, const float* b, std::int64_t N, int in,
                    int out, cudaStream_t stream);
// dx[N,in] (= or += per accumulate_dx; skipped if null), dW[out,in] +=, db[out] += (if not null).
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                     std::int64_t N, int in, int out, bool accumulate_dx, cudaStream_t stream);

// ---- bias, activations, elementwise --------------------------------------------------------

// y[N,D] += b[D] for every row; db[D] += column sums of dy[N,D].
void bias_add(float* y, const float* b, std::int64_t N, int D, cudaStream_t stream);
void bias_grad(float* db, const float* dy, std::int64_t N, int D, cudaStream_t stream);

// pre[N,F] += b; y = act(pre) (pre kept for backward). GELU is the exact erf form.
void bias_act_forward(float* y, float* pre, const float* b, std::int64_t N, int F, Activation act,
                      cudaStream_t stream);
// dpre[N,F] = dy * act'(pre) (written; may alias dy); db[F] += column sums of dpre.
void bias_act_backward(float* dpre, float* db, const float* dy, const float* pre, std::int64_t N, int F,
                       Activation act, cudaStream_t stream);

// out = a + b (out may alias a or b); a += b; a *= s.
void add(float* out, const float* a, const float* b, std::int64_t n, cudaStream_t stream);
void add_inplace(float* a, const float* b, std::int64_t n, cudaStream_t stream);
void scale_inplace(float* a, float s, std::int64_t n, cudaStream_t stream);
// Sum of squares accumulated in double. The blocking form synchronises `stream`; the
// asynchronous one writes (=) or adds (+=, per accumulate) to *result (device memory), so the
// squares of many gradient tensors can be summed without a host round trip.
double sum_squares(const float* a, std::int64_t n, cudaStream_t stream);
void sum_squares_async(double* result, const float* a, std::int64_t n, bool accumulate, cudaStream_t stream);

// ---- LayerNorm -----------------------------------------------------------------------------

// y[N,D] = (x - mean) * rstd * gamma + beta over the last dim (biased variance); writes mean[N],
// rstd[N].
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                       const float* beta, std::int64_t N, int D, float eps, cudaStream_t stream);
// dx[N,D] = (written; must not alias dy, as on the CPU); dgamma[D], dbeta[D] +=.
void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* mean, const float* rstd, std::int64_t N, int D,
                        cudaStream_t stream);

// ---- attention softmax ---------------------------------------------------------------------

// In place over the key axis of P[B,H,Tq,Tk] (raw scores on entry): P = softmax(scale * S), key
// k of batch row b masked when k >= key_len[b] (key_len: device int[B], or null for none) or, if
// causal, k > q + q_offset. A row with every key masked becomes all zeros.
void attention_softmax_forward(float* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, float scale, cudaStream_t stream);
// The same with the document mask of packed language-model batches: key k of query row (b, q)
// also masked when k < key_begin[b*Tq + q] (device int[B*Tq]; null: none), as th::cpu does.
void attention_softmax_forward(float* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, float scale, const int* key_begin, cudaStream_t stream);
// dS[rows,Tk] = scale * P * (dP - sum_k dP*P) per row; dS may alias dP.
void softmax_backward(float* dS, const float* dP, const float* P, std::int64_t rows, int Tk, float scale,
                      cudaStream_t stream);

// ---- embeddings ----------------------------------------------------------------------------

// y[b,t,:] = table[tokens[b,t],:] * scale + pe[t,:]; tokens: device int[B*L], table[V,D],
// pe[>=L,D].
void embedding_forward(float* y, const int* tokens, const float* table, const float* pe, int B, int L,
                       int D, float scale, cudaStream_t stream);
// dtable[tokens[n],:] += scale * dy[n,:] (atomicAdd scatter: summation order not fixed).
void embedding_backward(float* dtable, const int* tokens, const float* dy, std::int64_t N, int D,
                        float scale, cudaStream_t stream);
// pe[L,D] sinusoidal table. Built on the host by th::cpu::sinusoidal_table (in double) and
// copied, so it is bit-identical to the CPU backend's on every rank; a one-off at start-up.
void sinusoidal_table(float* pe, int L, int D, cudaStream_t stream);

// Learned positions: dpe[t,:] += sum over b of dy[b,t,:] (dy[B,L,D]); deterministic (no atomics).
void position_backward(float* dpe, const float* dy, int B, int L, int D, cudaStream_t stream);
// x[0, n) = value.
void fill(float* x, float value, std::int64_t n, cudaStream_t stream);
// ---- cross-entropy -------------------------------------------------------------------------

// Label-smoothed cross-entropy over logits[N,V]; rows with targets[n] == ignore give 0:
// loss_n = lse - (1-eps) z_y - (eps/V) sum_v z_v. Writes losses[N], lse[N]. The blocking form
// returns the sum of the losses (double) and sets *count (host; may be null) to the number of
// rows not ignored, synchronising `stream`. The asynchronous one writes them to device memory
// (*loss_sum, *count_dev, either may be null). A target outside [0, V) that is not `ignore`
// gives a NaN loss (the CPU would read out of bounds).
double cross_entropy_forward(float* losses, float* lse, const float* logits, const int* targets,
                             std::int64_t N, int V, float smoothing, int ignore, std::int64_t* count,
                             cudaStream_t stream);
void cross_entropy_forward_async(float* losses, float* lse, const float* logits, const int* targets,
                                 std::int64_t N, int V, float smoothing, int ignore, double* loss_sum,
                                 std::int64_t* count_dev, cudaStream_t stream);
// dlogits[N,V] = dloss * (softmax - ((1-eps) onehot + eps/V)); zero rows for ignored targets
// (NaN rows for out-of-range ones). dlogits may alias logits.
void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets,
                            std::int64_t N, int V, float smoothing, int ignore, float dloss,
                            cudaStream_t stream);

// ---- dropout (counter-based: the mask is bit-identical to th::cpu's) --------------------------

// Element i kept iff th::cpu::dropout_uniform(seed, stream_id, i) >= p, kept values scaled by
// 1/(1-p). y may alias x; p == 0 copies. (`stream_id` is the RNG stream, `stream` the CUDA one.)
void dropout_forward(float* y, const float* x, std::int64_t n, float p, std::uint64_t seed,
                     std::uint64_t stream_id, cudaStream_t stream);
// y = x + dropout(f) (y may alias x); rounded as the CPU does (no fused multiply-add), so the
// result is bit-identical too.
void dropout_add(float* y, const float* x, const float* f, std::int64_t n, float p, std::uint64_t seed,
                 std::uint64_t stream_id, cudaStream_t stream);

// ---- optimizer -----------------------------------------------------------------------------

// AdamW (PyTorch semantics) on flat buffers p, g, m, v [n], step t >= 1; constants computed on
// the host exactly as th::cpu::adamw_update<float> does.
void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, std::int64_t t, cudaStream_t stream);

// ---- storage conversions (round-to-nearest-even; NaN stays NaN, overflow -> inf) ------------
// Bit-identical to th::cpu's, NaN payloads included (the hardware cvt would canonicalise NaNs).
void fp32_to_bf16(__nv_bfloat16* y, const float* x, std::int64_t n, cudaStream_t stream);
void bf16_to_fp32(float* y, const __nv_bfloat16* x, std::int64_t n, cudaStream_t stream);
void fp32_to_fp16(__half* y, const float* x, std::int64_t n, cudaStream_t stream);
void fp16_to_fp32(float* y, const __half* x, std::int64_t n, cudaStream_t stream);

// Mixed precision on fp32 storage: x rounded in place to the nearest bf16 / fp16 value
// (th::cpu::round_to_bf16 / round_to_fp16, the same bits).
void round_to_bf16(float* x, std::int64_t n, cudaStream_t stream);
void round_to_fp16(float* x, std::int64_t n, cudaStream_t stream);
// The same on raw 16-bit storage, as th::cpu declares them (Tensor keeps bf16/fp16 as bits).
inline void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n, cudaStream_t stream) {
  fp32_to_bf16(reinterpret_cast<__nv_bfloat16*>(y), x, n, stream);
}
inline void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n, cudaStream_t stream) {
  bf16_to_fp32(y, reinterpret_cast<const __nv_bfloat16*>(x), n, stream);
}
inline void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n, cudaStream_t stream) {
  fp32_to_fp16(reinterpret_cast<__half*>(y), x, n, stream);
}
inline void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n, cudaStream_t stream) {
  fp16_to_fp32(y, reinterpret_cast<const __half*>(x), n, stream);
}

}  // namespace th::cuda

// Checked calls: evaluate `call` once; on failure throw th::Error with the call's text.
#define TH_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t th_cuda_err_ = (call);                                             \
    if (th_cuda_err_ != cudaSuccess)                                                     \
      ::th::cuda::detail::throw_cuda_error(th_cuda_err_, #call, __FILE__, __LINE__);     \
  } while (0)

#define TH_CUBLAS_CHECK(call)                                                            \
  do {                                                                                   \
    const cublasStatus_t th_cublas_st_ = (call);                                         \
    if (th_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::th::cuda::detail::throw_cublas_error(th_cublas_st_, #call, __FILE__, __LINE__);  \
  } while (0)

// After a kernel launch: a bad configuration (grid, shared memory) is reported here; faults
// inside the kernel surface at a later checked call.
#define TH_CUDA_CHECK_LAUNCH() TH_CUDA_CHECK(cudaGetLastError())
