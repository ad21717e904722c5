#include "cpu/softmax_rows.hpp"

#include <limits>

#include "th/kernels/exp_rule.hpp"
#include "cpu/isa_clones.hpp"

namespace th::cpu::rows {
namespace {
constexpr int kLanes = 16;
}  // namespace

TH_ISA_CLONES float max(const float* x, std::int64_t n) {
  float m[kLanes];
  for (int k = 0; k < kLanes; ++k) m[k] = -std::numeric_limits<float>::infinity();
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) m[k] = m[k] < x[i + k] ? x[i + k] : m[k];
  float r = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) r = r < x[i] ? x[i] : r;
  for (int k = 0; k < kLanes; ++k) r = r < m[k] ? m[k] : r;
  return r;
}

TH_ISA_CLONES void exp_sums(const float* x, std::int64_t n, float shift, float* sum, float* xsum) {
  float s[kLanes] = {}, z[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      s[k] += exp_rule(x[i + k] - shift);
      z[k] += x[i + k];
    }
  float st = 0.0f, zt = 0.0f;
  for (; i < n; ++i) {
    st += exp_rule(x[i] - shift);
    zt += x[i];
  }
  for (int k = 0; k < kLanes; ++k) {
    st += s[k];
    zt += z[k];
  }
  *sum = st;
  *xsum = zt;
}

TH_ISA_CLONES float exp_scaled_inplace(float* x, std::int64_t n, float scale, float shift) {
  float s[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float e = exp_rule(x[i + k] * scale - shift);
      x[i + k] = e;
      s[k] += e;
    }
  float st = 0.0f;
  for (; i < n; ++i) {
    x[i] = exp_rule(x[i] * scale - shift);
    st += x[i];
  }
  for (int k = 0; k < kLanes; ++k) st += s[k];
  return st;
}

TH_ISA_CLONES void exp_affine(float* y, const float* x, std::int64_t n, float shift, float a, float u) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = a * (exp_rule(x[i] - shift) - u);
}

TH_ISA_CLONES float dot(const float* a, const float* b, std::int64_t n) {
  float s[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += a[i + k] * b[i + k];
  float st = 0.0f;
  for (; i < n; ++i) st += a[i] * b[i];
  for (int k = 0; k < kLanes; ++k) st += s[k];
  return st;
}

TH_ISA_CLONES float sum(const float* x, std::int64_t n) {
  float s[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += x[i + k];
  float st = 0.0f;
  for (; i < n; ++i) st += x[i];
  for (int k = 0; k < kLanes; ++k) st += s[k];
  return st;
}

TH_ISA_CLONES float sum_sq_dev(const float* x, std::int64_t n, float m) {
  float s[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += (x[i + k] - m) * (x[i + k] - m);
  float st = 0.0f;
  for (; i < n; ++i) st += (x[i] - m) * (x[i] - m);
  for (int k = 0; k < kLanes; ++k) st += s[k];
  return st;
}

TH_ISA_CLONES void layernorm_grad_sums(const float* dy, const float* gamma, const float* x, std::int64_t n, float m,
                                       float r, float* sg, float* sgx) {
  float a[kLanes] = {}, b[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float g = dy[i + k] * gamma[i + k];
      a[k] += g;
      b[k] += g * (x[i + k] - m) * r;
    }
  float at = 0.0f, bt = 0.0f;
  for (; i < n; ++i) {
    const float g = dy[i] * gamma[i];
    at += g;
    bt += g * (x[i] - m) * r;
  }
  for (int k = 0; k < kLanes; ++k) {
    at += a[k];
    bt += b[k];
  }
  *sg = at;
  *sgx = bt;
}

}  // namespace th::cpu::rows
