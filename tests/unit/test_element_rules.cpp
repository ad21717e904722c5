// The formulas written once for the CPU loops and the CUDA kernels (th/kernels/element_rules.hpp)
// against independent references: GELU against its definition in long double and its derivative
// against central differences; the cross-entropy gradient and the LayerNorm input gradient
// against central differences of the loss they differentiate (double); the dropout uniform
// against the top 24 bits of mix64 and its keep rate against 1 - p.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "th/core/rng.hpp"
#include "th/kernels/element_rules.hpp"

using namespace th;

TEST(ElementRules, GeluIsItsDefinitionAndGeluGradItsDerivative) {
  for (double x = -6.0; x <= 6.0; x += 0.37) {
    const long double lx = x;
    const long double ref = 0.5L * lx * (1.0L + std::erf(lx / std::sqrt(2.0L)));
    EXPECT_NEAR(rules::gelu(x), static_cast<double>(ref), 1e-15 * (1 + std::abs(x)));
    EXPECT_NEAR(rules::gelu(static_cast<float>(x)), static_cast<double>(ref), 2e-6 * (1 + std::abs(x)));
    const double h = 1e-5, fd = (rules::gelu(x + h) - rules::gelu(x - h)) / (2 * h);
    EXPECT_NEAR(rules::gelu_grad(x), fd, 1e-8) << "x = " << x;
  }
  EXPECT_EQ(rules::relu(-0.5), 0.0);
  EXPECT_EQ(rules::relu(0.5), 0.5);
  EXPECT_EQ(rules::relu_backward(3.0, -1e-30), 0.0);
  EXPECT_EQ(rules::relu_backward(3.0, 1e-30), 3.0);
}

// loss(z) = ce_loss(logsumexp(z), z_t, sum z, eps, V); its gradient is ce_grad (+ the correction).
TEST(ElementRules, CrossEntropyGradientIsTheDerivativeOfTheLoss) {
  const int V = 11, target = 4;
  const double eps = 0.1, dloss = 0.7;
  std::vector<double> z(V);
  for (int v = 0; v < V; ++v) z[v] = std::sin(1.3 * v) * 3.0;
  auto loss = [&](const std::vector<double>& zz) {
    double mx = zz[0], s = 0, zsum = 0;
    for (double x : zz) mx = std::max(mx, x);
    for (double x : zz) { s += std::exp(x - mx); zsum += x; }
    return rules::ce_loss(mx + std::log(s), zz[target], zsum, eps, V);
  };
  double mx = z[0], s = 0;
  for (double x : z) mx = std::max(mx, x);
  for (double x : z) s += std::exp(x - mx);
  const double lse = mx + std::log(s);
  for (int v = 0; v < V; ++v) {
    double g = rules::ce_grad(z[v], lse, dloss, eps / V);
    if (v == target) g -= rules::ce_target_correction(dloss, eps);
    std::vector<double> a = z, b = z;
    const double h = 1e-6;
    a[v] += h;
    b[v] -= h;
    EXPECT_NEAR(g, dloss * (loss(a) - loss(b)) / (2 * h), 1e-8) << "logit " << v;
  }
}

// With r = 1/sqrt(var + eps) and the row means of g = dy*gamma and g*xhat, layernorm_dx is the
// gradient of sum_j dy_j * layernorm_out(x)_j with respect to x.
TEST(ElementRules, LayerNormInputGradientIsTheDerivativeOfItsOutput) {
  const int D = 7;
  const double eps = 1e-5;
  std::vector<double> x(D), dy(D), gamma(D), beta(D);
  for (int j = 0; j < D; ++j) {
    x[j] = std::cos(0.9 * j) * 2 + 0.3;
    dy[j] = std::sin(1.7 * j + 0.2);
    gamma[j] = 1.0 + 0.1 * j;
    beta[j] = -0.05 * j;
  }
  auto stats = [&](const std::vector<double>& xx, double& m, double& r) {
    m = 0;
    for (double v : xx) m += v;
    m /= D;
    double var = 0;
    for (double v : xx) var += (v - m) * (v - m);
    r = 1.0 / std::sqrt(var / D + eps);
  };
  auto objective = [&](const std::vector<double>& xx) {
    double m, r, o = 0;
    stats(xx, m, r);
    for (int j = 0; j < D; ++j) o += dy[j] * rules::layernorm_out(xx[j], m, r, gamma[j], beta[j]);
    return o;
  };
  double m, r;
  stats(x, m, r);
  double mean_g = 0, mean_gx = 0;
  for (int j = 0; j < D; ++j) {
    mean_g += dy[j] * gamma[j] / D;
    mean_gx += dy[j] * gamma[j] * (x[j] - m) * r / D;
  }
  for (int j = 0; j < D; ++j) {
    std::vector<double> a = x, b = x;
    const double h = 1e-6;
    a[j] += h;
    b[j] -= h;
    EXPECT_NEAR(rules::layernorm_dx(dy[j], gamma[j], x[j], m, r, mean_g, mean_gx), (objective(a) - objective(b)) / (2 * h),
                1e-7) << "element " << j;
  }
}

TEST(ElementRules, DropoutUniformIsTheTop24BitsAndKeepsOneMinusP) {
  const std::uint64_t seed = 17, stream = 5;
  const int n = 200000;
  const float p = 0.3f;
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    const float u = rules::dropout_uniform(seed, stream, static_cast<std::uint64_t>(i));
    ASSERT_EQ(u, static_cast<float>(mix64(seed, stream, static_cast<std::uint64_t>(i)) >> 40) / 16777216.0f);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    kept += rules::dropout_keep(seed, stream, static_cast<std::uint64_t>(i), p);
  }
  // Binomial(n, 0.7): standard deviation sqrt(n p (1-p)) ~ 205; 6 of them.
  EXPECT_NEAR(kept, 0.7 * n, 6 * std::sqrt(n * 0.21));
  const float s = 1.0f / 0.7f;
  EXPECT_EQ(rules::dropout_value(2.0f, true, s), 2.0f * s);
  EXPECT_EQ(rules::dropout_value(2.0f, false, s), 0.0f);
  EXPECT_EQ(rules::dropout_add_value(1.0f, 2.0f, true, s), 1.0f + 2.0f * s);
  EXPECT_EQ(rules::dropout_add_value(1.0f, 2.0f, false, s), 1.0f);
}

// The key range against the masks spelled out key by key: padding (k >= key_len[b]), causal
// (k > q + q_offset), document (k < key_begin[b*Tq + q]).
TEST(ElementRules, AttentionKeysAreTheKeysNoMaskHides) {
  const int B = 2, Tq = 6, Tk = 7;
  const std::vector<int> key_len = {7, 4}, key_begin = {0, 0, 2, 2, 2, 5, -3, 1, 1, 4, 4, 6};
  for (bool causal : {false, true})
    for (int q_offset : {0, 1, -2})
      for (bool lens : {false, true})
        for (bool docs : {false, true})
          for (int b = 0; b < B; ++b)
            for (int q = 0; q < Tq; ++q) {
              const rules::KeyRange r = rules::attention_keys(lens ? key_len.data() : nullptr,
                                                              docs ? key_begin.data() : nullptr, causal, b, q, Tq, Tk,
                                                              q_offset);
              for (int k = 0; k < Tk; ++k) {
                const bool visible = !(lens && k >= key_len[b]) && !(causal && k > q + q_offset) &&
                                     !(docs && k < key_begin[b * Tq + q]);
                EXPECT_EQ(visible, k >= r.first && k < r.end)
                    << "b " << b << " q " << q << " k " << k << " causal " << causal << " offset " << q_offset;
              }
            }
}
