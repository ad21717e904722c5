#pragma once
// The per-element and per-row formulas of the kernels, written once for the CPU loops
// (src/kernels/cpu) and the CUDA kernels (src/kernels/cuda), so the CPU tests check the math the
// GPU runs (issue #17). Host-device code (th/core/host_device.hpp). What is here:
//   dropout      the counter RNG's uniform and the keep decision (masks bit-identical everywhere)
//   activations  ReLU and exact-erf GELU, forward and the derivative backward multiplies by
//   cross-entropy  a row's label-smoothed loss from its log-sum-exp, and a logit's gradient
//   LayerNorm    a normalised output element and an input-gradient element from the row sums
//   attention    the keys a query row attends to (padding, causal and document masks)
// Also written once elsewhere: the bf16/fp16 rounding rules (th/core/half.hpp), the AdamW element
// (th/kernels/adamw_element.hpp). The row reductions themselves (max, sums of exponentials, the
// LayerNorm moments) are each backend's own loops: their summation order is what may differ.
//
// Rounding: the CPU builds its kernels with -ffp-contract=off (no fused multiply-add); nvcc fuses
// by default, so the device side of mul()/add() below uses the _rn intrinsics where a result must
// be bit-identical (dropout); elsewhere a fused GPU result differs by an ulp, within the tolerances
// of tests/gpu.
#include <cmath>
#include <cstdint>

#include "th/core/host_device.hpp"
#include "th/core/rng.hpp"

namespace th::rules {

// ---- math the device spells differently
TH_HOST_DEVICE inline float erf_of(float x) {
#if defined(__CUDA_ARCH__)
  return erff(x);
#else
  return std::erf(x);
#endif
}
TH_HOST_DEVICE inline double erf_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::erf(x);
#else
  return std::erf(x);
#endif
}
TH_HOST_DEVICE inline float exp_of(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}
TH_HOST_DEVICE inline double exp_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
TH_HOST_DEVICE inline float sqrt_of(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}
TH_HOST_DEVICE inline double sqrt_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}
// a * b and a + b, each rounded (never fused into one FMA on the device).
TH_HOST_DEVICE inline float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TH_HOST_DEVICE inline float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
TH_HOST_DEVICE inline double mul(double a, double b) { return a * b; }
TH_HOST_DEVICE inline double add(double a, double b) { return a + b; }

// ---- dropout: element i of RNG stream `stream` is kept iff uniform >= p, kept values scaled by
// 1 / (1 - p). The uniform is the top 24 bits of mix64 (exact in float) times 2^-24, in [0, 1).
TH_HOST_DEVICE inline float dropout_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return static_cast<float>(static_cast<std::uint32_t>(mix64(seed, stream, i) >> 40)) * (1.0f / 16777216.0f);
}
TH_HOST_DEVICE inline bool dropout_keep(std::uint64_t seed, std::uint64_t stream, std::uint64_t i, float p) {
  return dropout_uniform(seed, stream, i) >= p;
}
// dropout(x) and x + dropout(f), given the keep decision.
template <typename T> TH_HOST_DEVICE inline T dropout_value(T x, bool keep, T keep_scale) {
  return keep ? mul(x, keep_scale) : T(0);
}
template <typename T> TH_HOST_DEVICE inline T dropout_add_value(T x, T f, bool keep, T keep_scale) {
  return add(x, keep ? mul(f, keep_scale) : T(0));
}

// ---- activations (exact GELU, erf form, as torch.nn.functional.gelu's default)
template <typename T> TH_HOST_DEVICE inline T relu(T x) { return x > T(0) ? x : T(0); }
// dy * relu'(x): a select (both operands loaded, so CPU loops vectorise).
template <typename T> TH_HOST_DEVICE inline T relu_backward(T dy, T x) { return x > T(0) ? dy : T(0); }
template <typename T> TH_HOST_DEVICE inline T gelu(T x) {
  return T(0.5) * x * (T(1) + erf_of(x * T(0.70710678118654752440)));  // 1/sqrt(2)
}
template <typename T> TH_HOST_DEVICE inline T gelu_grad(T x) {
  const T cdf = T(0.5) * (T(1) + erf_of(x * T(0.70710678118654752440)));
  const T pdf = exp_of(T(-0.5) * x * x) * T(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}

// ---- label-smoothed cross-entropy over a row of V logits z, smoothing eps:
// loss = lse - (1 - eps) z_target - (eps / V) sum_v z_v;
// dloss/dz_v = dloss * (exp(z_v - lse) - eps / V) - [v == target] dloss (1 - eps).
template <typename T> TH_HOST_DEVICE inline T ce_loss(T lse, T z_target, T zsum, T smoothing, int V) {
  return lse - (T(1) - smoothing) * z_target - smoothing / T(V) * zsum;
}
// The gradient of logit z before the target's correction; u = eps / V.
template <typename T> TH_HOST_DEVICE inline T ce_grad(T z, T lse, T dloss, T u) { return dloss * (exp_of(z - lse) - u); }
// What the target's logit subtracts from its ce_grad.
template <typename T> TH_HOST_DEVICE inline T ce_target_correction(T dloss, T smoothing) {
  return dloss * (T(1) - smoothing);
}

// ---- LayerNorm (biased variance, as PyTorch), a row with mean m and rstd r = 1/sqrt(var + eps)
template <typename T> TH_HOST_DEVICE inline T layernorm_out(T x, T m, T r, T gamma, T beta) {
  return (x - m) * r * gamma + beta;
}
// dx = r (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)); mean_g, mean_gx the row means.
template <typename T> TH_HOST_DEVICE inline T layernorm_dx(T dy, T gamma, T x, T m, T r, T mean_g, T mean_gx) {
  const T xhat = (x - m) * r;
  return r * (dy * gamma - mean_g - xhat * mean_gx);
}

// ---- attention masks: query row (b, q) of P[B, H, Tq, Tk] attends to keys [first, end):
// end = min(key_len[b], Tk) (Tk without key lengths), capped at q + q_offset + 1 when causal (in
// 64 bits: q_offset may be anything); first = key_begin[b * Tq + q] (document mask; 0 without).
// A row with end <= first attends to nothing: its probabilities are all 0.
struct KeyRange {
  int first, end;
};
TH_HOST_DEVICE inline KeyRange attention_keys(const int* key_len, const int* key_begin, bool causal, int b, int q,
                                              int Tq, int Tk, int q_offset) {
  int end = key_len ? (key_len[b] < Tk ? key_len[b] : Tk) : Tk;
  if (causal) {
    const long long c = static_cast<long long>(q) + q_offset + 1;
    if (c < end) end = static_cast<int>(c);
  }
  int first = key_begin ? key_begin[static_cast<long long>(b) * Tq + q] : 0;
  if (first < 0) first = 0;
  return {first, end};
}

}  // namespace th::rules
