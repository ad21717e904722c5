#pragma once
// CPU kernels: the reference implementation that every other backend is tested against.
// Free functions, templated on the compute type T (float for training, double for the
// finite-difference test path). Host loops are Kokkos parallel patterns with names
// ("LayerNorm::forward", ...). GEMMs go through the GEMM engine (th/kernels/gemm_engine.hpp):
// OpenBLAS (Eigen products mapped onto BLAS) or oneDNN, chosen at run time.
//
// Legend: N rows (tokens = B*T), D model width, F FFN width, V vocabulary, B batch, H heads,
// Tq/Tk query/key lengths. All matrices row-major; `ld*` are leading dimensions (row strides).
// Backward kernels that produce parameter gradients ACCUMULATE (+=) into them, so micro-batches,
// tied weights and repeated uses sum up; input gradients are written (=) unless said otherwise.
#include <cstdint>

namespace th::cpu {

enum class Activation { ReLU, GELU };

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc);

// `batch` independent GEMMs C_i = alpha op(A_i) op(B_i) + beta C_i, with A_i = A + i*stride_a
// (elements), likewise B_i, C_i (attention: one per batch row and head). float goes through the
// GEMM engine (oneDNN batched matmul or a loop), double is a loop of OpenBLAS GEMMs.
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                          std::int64_t stride_a, const T* B, int ldb, std::int64_t stride_b, T beta, T* C,
                          int ldc, std::int64_t stride_c, int batch);

// bf16 operands (raw bf16 bits), fp32 accumulation and C: the 2-byte tensors' GEMMs. On oneDNN's
// bf16 matmul where the CPU has bf16 instructions, else widened to fp32 (exact) and multiplied by
// the fp32 provider (th/kernels/gemm_engine.hpp).
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const std::uint16_t* A,
               int lda, const std::uint16_t* B, int ldb, float beta, float* C, int ldc);
void gemm_strided_batched_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                               const std::uint16_t* A, int lda, std::int64_t stride_a, const std::uint16_t* B,
                               int ldb, std::int64_t stride_b, float beta, float* C, int ldc,
                               std::int64_t stride_c, int batch);

// Linear layer, weights [out, in] as in PyTorch: y[N,out] = x[N,in] W^T + b.
template <typename T>
void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out);
// dx[N,in] (= or += per accumulate_dx; skipped if null), dW[out,in] +=, db[out] += (if not null).
template <typename T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N,
                     int in, int out, bool accumulate_dx = false);

// bf16 runs (precision%dtype = 'bf16', where every fp32 GEMM rounds its operands to bf16): the
// linear layer with 16-bit operands handed over directly (raw bf16 bits) instead of fp32 values
// the GEMM would round, one conversion pass fewer each (a saved activation or the 2-byte compute
// copy of a weight is not widened and narrowed again). Each operand comes either in fp32 or as
// bf16 bits (exactly one of x / x16, W / W16, dy / dy16); the results are those of linear_forward /
// linear_backward on the widened values. linear_backward_bf16 needs x or x16 only for dW and W or
// W16 only for dx; with dy16 the GEMMs multiply by alpha, in fp32: dx (=|+=) alpha dy16 W,
// dW += alpha dy16^T x; db needs dy. ldy > 0: dy's (dy16's) row stride, for a block of its
// columns (the output projection by row blocks of its weight; no bias then); 0: out.
void linear_forward_bf16(float* y, const float* x, const std::uint16_t* x16, const float* W, const std::uint16_t* W16,
                         const float* b, std::int64_t N, int in, int out);
void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const std::uint16_t* dy16, float alpha,
                          const float* x, const std::uint16_t* x16, const float* W, const std::uint16_t* W16,
                          std::int64_t N, int in, int out, bool accumulate_dx = false, int ldy = 0);

// bf16 runs: bias_act_backward<float> reading the stored pre-activation as bf16 bits (widened
// exactly on the fly): the same values as on the widened array.
void bias_act_backward_bf16(float* dpre, float* db, const float* dy, const std::uint16_t* pre16, std::int64_t N,
                            int F, Activation act);

// bf16 runs: gemm_strided_batched<float> with each operand given either in fp32 (A / B, rounded
// to bf16 as every GEMM of the run does) or as bf16 bits (A16 / B16, used as they are): exactly
// one of each pair. The same values as gemm_strided_batched<float> on the widened operands.
void gemm_strided_batched_mixed(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                                const std::uint16_t* A16, int lda, std::int64_t stride_a, const float* B,
                                const std::uint16_t* B16, int ldb, std::int64_t stride_b, float beta, float* C,
                                int ldc, std::int64_t stride_c, int batch);

// y[N,D] += b[D] for every row; db[D] += column sums of dy[N,D].
template <typename T> void bias_add(T* y, const T* b, std::int64_t N, int D);
template <typename T> void bias_grad(T* db, const T* dy, std::int64_t N, int D);

// LayerNorm over the last dim: y = (x - mean) * rstd * gamma + beta; saves mean[N], rstd[N].
template <typename T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta,
                       std::int64_t N, int D, T eps);
// dx[N,D] = (written); dgamma, dbeta += .
template <typename T>
void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                        const T* mean, const T* rstd, std::int64_t N, int D);

// Activation in place after a bias: pre[N,F] += b; y = act(pre) (pre kept for backward).
template <typename T>
void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, Activation act);
// dpre[N,F] = dy * act'(pre) (written; may alias dy); db[F] += column sums of dpre.
template <typename T>
void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F, Activation act);

// out = a + b (out may alias a or b); a += b.
template <typename T> void add(T* out, const T* a, const T* b, std::int64_t n);
template <typename T> void add_inplace(T* a, const T* b, std::int64_t n);
template <typename T> void scale_inplace(T* a, T s, std::int64_t n);
// Sum of squares, accumulated in double (for gradient norms).
template <typename T> double sum_squares(const T* a, std::int64_t n);

// Attention probabilities in place over the key axis of P[B,H,Tq,Tk] (holds raw scores on
// entry): P = softmax(scale * S) with key k of batch row b masked when k >= key_len[b] or, if
// causal, k > q + q_offset, or (document mask, key_begin not null) k < key_begin[b*Tq + q].
// A row with every key masked becomes all zeros. Masked probabilities are exact zeros, so
// softmax_backward gives them exact zero gradients: the backward needs no mask of its own.
template <typename T>
void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, T scale, const int* key_begin = nullptr);
// dS = scale * P * (dP - sum_k dP*P) over each row of length Tk; dS may alias dP.
template <typename T>
void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale);

// Token embedding + positional table: y[b,t,:] = table[tok[b,t],:] * scale + pe[t,:].
template <typename T>
void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D, T scale);
// The same with the table's 2-byte compute copy (bf16 bits, widened exactly): embedding_forward's
// values on the widened table.
void embedding_forward_bf16(float* y, const int* tokens, const std::uint16_t* table16, const float* pe, int B, int L,
                            int D, float scale);
// dtable[tok,:] += scale * dy[n,:] (scatter-add; parallel over columns, so no two threads
// write the same element).
template <typename T>
void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale);
// Only the rows [row_begin, row_end) of the table (tokens outside are skipped): a row's sum in
// the same order as embedding_backward's, so the row blocks together give its bits.
template <typename T>
void embedding_backward_rows(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale, int row_begin,
                             int row_end);
// The positional table's gradient (learned positions): dpe[t,:] += sum_b dy[b,t,:] for t < L
// (parallel over positions, so no two threads write the same row; summed in b order).
template <typename T>
void position_backward(T* dpe, const T* dy, int B, int L, int D);
// Sinusoidal table pe[L,D]: pe[p,2i] = sin(p / 10000^(2i/D)), pe[p,2i+1] = cos(...).
template <typename T> void sinusoidal_table(T* pe, int L, int D);

// Label-smoothed cross-entropy over logits[N,V]; rows with target == ignore give 0.
// loss_n = lse - (1-eps) z_y - (eps/V) sum_v z_v. Writes losses[N], lse[N]; returns the sum of
// losses (double) and sets *count to the number of rows not ignored.
template <typename T>
double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N,
                             int V, T smoothing, int ignore, std::int64_t* count);
// dlogits = dloss * (softmax - ((1-eps) onehot + eps/V)), zero rows for ignored targets.
// dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets,
                            std::int64_t N, int V, T smoothing, int ignore, T dloss);
// bf16 training: cross_entropy_forward, and in the same pass over each row the gradient of that
// row's loss (cross_entropy_backward with dloss = 1) rounded to bf16 into grad16[N,V]. The
// output projection's backward then takes grad16 with alpha = loss_scale / count
// (linear_backward_bf16), so the logits are neither stored nor read again.
double cross_entropy_forward_grad_bf16(float* losses, float* lse, std::uint16_t* grad16, const float* logits,
                                       const int* targets, std::int64_t N, int V, float smoothing, int ignore,
                                       std::int64_t* count);

// Dropout with a counter-based RNG: element i of stream `stream` is kept iff
// uniform(seed, stream, i) >= p, kept values scaled by 1/(1-p). The same (seed, stream) gives the
// same mask, so recompute in backward and activation checkpointing need no stored mask.
// y may alias x. p == 0 copies.
template <typename T>
void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream);
// y = x + dropout(f) (the residual form; y may alias x).
template <typename T>
void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                 std::uint64_t stream);
float dropout_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i);

// AdamW (decoupled weight decay, PyTorch semantics) on flat buffers, step t >= 1:
// p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, std::int64_t t);

// Storage conversions, round-to-nearest-even; NaN stays NaN, overflow goes to inf.
void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n);
void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n);
void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n);
void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n);
std::uint16_t float_to_bf16(float f);
float bf16_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);
float half_to_float(std::uint16_t h);
// Mixed-precision emulation: rounds fp32 values in place to the nearest bf16 / fp16 value (the
// conversions above there and back), so fp32 storage holds exactly the 16-bit numbers.
// fp16: magnitudes from 65520 up become inf (overflow), like a real fp16 store.
void round_to_bf16(float* x, std::int64_t n);
void round_to_fp16(float* x, std::int64_t n);

}  // namespace th::cpu
