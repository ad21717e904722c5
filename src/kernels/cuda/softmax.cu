// Masked attention softmax over the key axis and its backward: one warp per row of Tk keys.
#include "device_utils.cuh"
#include "th/kernels/cuda.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cuda {

constexpr int kRowsPerBlock = 4;  // warps per block, one row each

// ---- kernels --------------------------------------------------------------------------------

// Row r of P[B,H,Tq,Tk] is (b, h, q) with q = r % Tq, b = r / (H*Tq). Keys [0, valid) take part;
// the rest become 0, and so does a row with none.
__global__ void attention_softmax_forward_kernel(float* P, int B, int H, int Tq, int Tk, const int* key_len,
                                                 bool causal, int q_offset, float scale, const int* key_begin) {
  const std::int64_t rows = static_cast<std::int64_t>(B) * H * Tq;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const int q = static_cast<int>(row % Tq);
  const int b = static_cast<int>(row / (static_cast<std::int64_t>(H) * Tq));
  // The masks (padding, causal, document): th/kernels/element_rules.hpp, the CPU kernel's too.
  const rules::KeyRange keys = rules::attention_keys(key_len, key_begin, causal, b, q, Tq, Tk, q_offset);
  const int valid = keys.end, first = keys.first;
  float* p = P + row * Tk;
  if (valid <= first) {
    for (int k = lane; k < Tk; k += kWarpSize) p[k] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int k = first + lane; k < valid; k += kWarpSize) mx = fmaxf(mx, p[k] * scale);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int k = first + lane; k < valid; k += kWarpSize) {
    const float e = expf(p[k] * scale - mx);
    p[k] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int k = first + lane; k < valid; k += kWarpSize) p[k] *= inv;
  for (int k = lane; k < first; k += kWarpSize) p[k] = 0.0f;
  for (int k = valid + lane; k < Tk; k += kWarpSize) p[k] = 0.0f;
}

// dS = scale * P * (dP - dot(dP, P)) per row; the dot is complete before any write, so dS may
// alias dP.
__global__ void softmax_backward_kernel(float* dS, const float* dP, const float* P, std::int64_t rows, int Tk,
                                        float scale) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* p = P + row * Tk;
  const float* dp = dP + row * Tk;
  float dot = 0.0f;
  for (int k = lane; k < Tk; k += kWarpSize) dot += dp[k] * p[k];
  dot = warp_sum(dot);
  float* ds = dS + row * Tk;
  for (int k = lane; k < Tk; k += kWarpSize) ds[k] = scale * p[k] * (dp[k] - dot);
}

// ---- launchers ------------------------------------------------------------------------------

void attention_softmax_forward(float* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, float scale, cudaStream_t stream) {
  attention_softmax_forward(P, B, H, Tq, Tk, key_len, causal, q_offset, scale, nullptr, stream);
}

void attention_softmax_forward(float* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal,
                               int q_offset, float scale, const int* key_begin, cudaStream_t stream) {
  TH_CHECK(B >= 0 && H >= 0 && Tq >= 0 && Tk > 0, "attention_softmax_forward: bad shape");
  const std::int64_t rows = static_cast<std::int64_t>(B) * H * Tq;
  if (rows == 0) return;
  TH_CHECK(P != nullptr, "attention_softmax_forward: P is null");
  const std::int64_t blocks = ceil_div(rows, kRowsPerBlock);
  TH_CHECK(blocks <= 0x7fffffff, "attention_softmax_forward: too many rows");
  attention_softmax_forward_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * kWarpSize, 0, stream>>>(
      P, B, H, Tq, Tk, key_len, causal, q_offset, scale, key_begin);
  TH_CUDA_CHECK_LAUNCH();
}

void softmax_backward(float* dS, const float* dP, const float* P, std::int64_t rows, int Tk, float scale,
                      cudaStream_t stream) {
  TH_CHECK(rows >= 0 && Tk > 0, "softmax_backward: bad shape");
  if (rows == 0) return;
  TH_CHECK(dS && dP && P, "softmax_backward: null pointer");
  const std::int64_t blocks = ceil_div(rows, kRowsPerBlock);
  TH_CHECK(blocks <= 0x7fffffff, "softmax_backward: too many rows");
  softmax_backward_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * kWarpSize, 0, stream>>>(dS, dP, P, rows,
                                                                                                  Tk, scale);
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
