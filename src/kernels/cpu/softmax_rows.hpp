#pragma once
// fp32 row loops of the softmax, cross-entropy and LayerNorm kernels, vectorised: exp through exp_rule
// (th/kernels/exp_rule.hpp), sums and maxima over kLanes explicit partial lanes combined in a
// fixed order, so a result does not depend on which ISA clone ran (isa_clones.hpp).
#include <cstdint>

namespace th::cpu::rows {

float max(const float* x, std::int64_t n);  // -inf for n == 0
// *sum = sum exp(x - shift), *xsum = sum x.
void exp_sums(const float* x, std::int64_t n, float shift, float* sum, float* xsum);
// x = exp(x * scale - shift) in place; returns the sum of the new values.
float exp_scaled_inplace(float* x, std::int64_t n, float scale, float shift);
// y = a * (exp(x - shift) - u).
void exp_affine(float* y, const float* x, std::int64_t n, float shift, float a, float u);
float dot(const float* a, const float* b, std::int64_t n);
float sum(const float* x, std::int64_t n);
float sum_sq_dev(const float* x, std::int64_t n, float m);  // sum (x - m)^2
// LayerNorm backward's two row sums, g = dy * gamma: *sg = sum g, *sgx = sum g * (x - m) * r.
void layernorm_grad_sums(const float* dy, const float* gamma, const float* x, std::int64_t n, float m, float r,
                         float* sg, float* sgx);

}  // namespace th::cpu::rows
