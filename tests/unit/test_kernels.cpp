// CPU kernels against independent references: central finite differences in double for every
// backward, closed forms for forward, and bit-level checks for conversions and dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "th/core/rng.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/adamw_element.hpp"
#include "th/kernels/exp_rule.hpp"

using namespace th;
using Vec = std::vector<double>;

namespace {
Vec random_vec(std::size_t n, std::uint64_t stream, double scale = 1.0) {
  Vec v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * (2.0 * uniform01(7, stream, i) - 1.0);
  return v;
}
double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
// Max over entries of |analytic - numeric| / max(1, |numeric|), numeric by central differences
// of the scalar loss(x) (x perturbed in place).
double fd_error(Vec& x, const Vec& analytic, const std::function<double()>& loss, double h = 1e-6) {
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = loss();
    x[i] = keep - h;
    const double down = loss();
    x[i] = keep;
    const double num = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(analytic[i] - num) / std::max(1.0, std::abs(num)));
  }
  return worst;
}
}  // namespace

TEST(Kernels, GemmAllTransposesMatchNaiveProduct) {
  const int M = 5, N = 7, K = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Vec A = random_vec(M * K, 1), B = random_vec(K * N, 2), C = random_vec(M * N, 3), ref = C;
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double s = 0;
          for (int k = 0; k < K; ++k) s += (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
          ref[i * N + j] = 2.0 * s + 0.5 * ref[i * N + j];
        }
      cpu::gemm<double>(ta, tb, M, N, K, 2.0, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.5, C.data(), N);
      for (int i = 0; i < M * N; ++i) EXPECT_NEAR(C[i], ref[i], 1e-12) << "ta=" << ta << " tb=" << tb;
    }
}

TEST(Kernels, LayerNormBackwardMatchesFiniteDifferences) {
  const int N = 3, D = 10;
  Vec x = random_vec(N * D, 1, 2.0), g = random_vec(D, 2), b = random_vec(D, 3), w = random_vec(N * D, 4);
  Vec y(N * D), mean(N), rstd(N), dx(N * D), dg(D, 0.0), db(D, 0.0);
  auto loss = [&] {
    cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), N, D, 1e-5);
    return dot(y, w);
  };
  loss();
  cpu::layernorm_backward(dx.data(), dg.data(), db.data(), w.data(), x.data(), g.data(), mean.data(), rstd.data(), N, D);
  EXPECT_LT(fd_error(x, dx, loss), 1e-7);
  EXPECT_LT(fd_error(g, dg, loss), 1e-7);
  EXPECT_LT(fd_error(b, db, loss), 1e-7);
  // Forward: each row has mean beta-weighted... check normalisation with gamma=1, beta=0.
  Vec ones(D, 1.0), zeros(D, 0.0);
  cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), ones.data(), zeros.data(), N, D, 0.0);
  for (int i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int j = 0; j < D; ++j) m += y[i * D + j] / D;
    for (int j = 0; j < D; ++j) v += (y[i * D + j] - m) * (y[i * D + j] - m) / D;
    EXPECT_NEAR(m, 0.0, 1e-12);
    EXPECT_NEAR(v, 1.0, 1e-10);
  }
}

TEST(Kernels, BiasActivationBackwardMatchesFiniteDifferences) {
  for (auto act : {cpu::Activation::ReLU, cpu::Activation::GELU}) {
    const int N = 4, F = 6;
    Vec x = random_vec(N * F, 5), b = random_vec(F, 6), w = random_vec(N * F, 7);
    Vec pre(N * F), y(N * F), dpre(N * F), db(F, 0.0);
    auto loss = [&] {
      pre = x;
      cpu::bias_act_forward(y.data(), pre.data(), b.data(), N, F, act);
      return dot(y, w);
    };
    loss();
    cpu::bias_act_backward(dpre.data(), db.data(), w.data(), pre.data(), N, F, act);
    EXPECT_LT(fd_error(x, dpre, loss), 1e-7);
    EXPECT_LT(fd_error(b, db, loss), 1e-7);
  }
  // Exact GELU values: gelu(1) = 0.8413447460685429, gelu(-1) = -0.15865525393145707.
  Vec pre = {1.0, -1.0}, y(2), zero = {0.0, 0.0};
  cpu::bias_act_forward(y.data(), pre.data(), zero.data(), 1, 2, cpu::Activation::GELU);
  EXPECT_NEAR(y[0], 0.8413447460685429, 1e-15);
  EXPECT_NEAR(y[1], -0.15865525393145707, 1e-15);
}

TEST(Kernels, MaskedSoftmaxForwardAndBackward) {
  const int B = 2, H = 2, Tq = 3, Tk = 4;
  const int key_len[B] = {4, 2};
  const double scale = 0.7;
  for (bool causal : {false, true}) {
    Vec S = random_vec(B * H * Tq * Tk, 8, 3.0), P(S.size()), w = random_vec(S.size(), 9), dS(S.size());
    auto loss = [&] {
      P = S;
      cpu::attention_softmax_forward(P.data(), B, H, Tq, Tk, key_len, causal, 0, scale);
      return dot(P, w);
    };
    loss();
    for (int r = 0; r < B * H * Tq; ++r) {
      const int b = r / (H * Tq), q = r % Tq;
      int valid = key_len[b];
      if (causal) valid = std::min(valid, q + 1);
      double sum = 0;
      for (int k = 0; k < Tk; ++k) {
        if (k >= valid) EXPECT_EQ(P[r * Tk + k], 0.0);
        sum += P[r * Tk + k];
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
    cpu::softmax_backward(dS.data(), w.data(), P.data(), B * H * Tq, Tk, scale);
    EXPECT_LT(fd_error(S, dS, loss), 1e-7);
  }
}

TEST(Kernels, CrossEntropyWithSmoothingAndIgnore) {
  const int N = 4, V = 7, ignore = 0;
  const int targets[N] = {3, 0, 6, 1};
  for (double eps : {0.0, 0.1}) {
    Vec z = random_vec(N * V, 10, 3.0), losses(N), lse(N), dz(N * V);
    std::int64_t count = 0;
    auto loss = [&] { return cpu::cross_entropy_forward(losses.data(), lse.data(), z.data(), targets, N, V, eps, ignore, &count); };
    const double total = loss();
    EXPECT_EQ(count, 3);
    EXPECT_EQ(losses[1], 0.0);
    // Closed form of one row.
    double m = 0, zs = 0;
    for (int v = 0; v < V; ++v) { m += std::exp(z[v]); zs += z[v]; }
    EXPECT_NEAR(losses[0], std::log(m) - (1 - eps) * z[3] - eps / V * zs, 1e-12);
    EXPECT_NEAR(total, losses[0] + losses[2] + losses[3], 1e-12);
    cpu::cross_entropy_backward(dz.data(), z.data(), lse.data(), targets, N, V, eps, ignore, 1.0);
    EXPECT_LT(fd_error(z, dz, loss), 1e-7);
  }
}

TEST(Kernels, EmbeddingBackwardScatterAdds) {
  const int B = 2, L = 3, D = 5, V = 4;
  const int tokens[B * L] = {1, 2, 1, 3, 3, 0};
  Vec table = random_vec(V * D, 11), pe(L * D), y(B * L * D), w = random_vec(B * L * D, 12), dt(V * D, 0.0);
  cpu::sinusoidal_table(pe.data(), L, D);
  EXPECT_NEAR(pe[1 * D + 0], std::sin(1.0), 1e-15);
  EXPECT_NEAR(pe[2 * D + 1], std::cos(2.0), 1e-15);
  EXPECT_NEAR(pe[2 * D + 2], std::sin(2.0 / std::pow(10000.0, 2.0 / D)), 1e-15);
  auto loss = [&] {
    cpu::embedding_forward(y.data(), tokens, table.data(), pe.data(), B, L, D, 1.5);
    return dot(y, w);
  };
  loss();
  cpu::embedding_backward(dt.data(), tokens, w.data(), B * L, D, 1.5);
  EXPECT_LT(fd_error(table, dt, loss), 1e-7);
}

TEST(Kernels, DropoutIsCounterBasedAndUnbiased) {
  const std::int64_t n = 200000;
  Vec x(n, 1.0), y(n), y2(n);
  cpu::dropout_forward(y.data(), x.data(), n, 0.25f, 42, 7);
  cpu::dropout_forward(y2.data(), x.data(), n, 0.25f, 42, 7);
  EXPECT_EQ(y, y2);  // same (seed, stream): same mask, bit for bit
  double mean = 0, dropped = 0;
  for (double v : y) { mean += v / n; dropped += v == 0.0; }
  EXPECT_NEAR(mean, 1.0, 0.01);
  EXPECT_NEAR(dropped / n, 0.25, 0.01);
  cpu::dropout_forward(y2.data(), x.data(), n, 0.25f, 42, 8);
  EXPECT_NE(y, y2);  // another stream: another mask
  Vec r(n), f(n, 2.0);
  cpu::dropout_add(r.data(), x.data(), f.data(), n, 0.25f, 42, 7);
  for (std::int64_t i = 0; i < 1000; ++i) EXPECT_DOUBLE_EQ(r[i], 1.0 + 2.0 * y[i]);
}

TEST(Kernels, AdamWMatchesTheFormula) {
  Vec p = {0.5, -1.0}, g = {0.1, -0.2}, m = {0, 0}, v = {0, 0};
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  Vec ep = p, em = m, ev = v;
  for (int t = 1; t <= 3; ++t) {
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), 2, lr, b1, b2, eps, wd, t);
    for (int i = 0; i < 2; ++i) {
      ep[i] *= 1 - lr * wd;
      em[i] = b1 * em[i] + (1 - b1) * g[i];
      ev[i] = b2 * ev[i] + (1 - b2) * g[i] * g[i];
      ep[i] -= lr * (em[i] / (1 - std::pow(b1, t))) / (std::sqrt(ev[i] / (1 - std::pow(b2, t))) + eps);
      EXPECT_NEAR(p[i], ep[i], 1e-15);
    }
  }
}

TEST(Kernels, Bf16AndFp16RoundToNearestEven) {
  // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(cpu::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(cpu::float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie, rounds up to even
  EXPECT_EQ(cpu::bf16_to_float(0x3F80), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::bf16_to_float(cpu::float_to_bf16(NAN))));
  // fp16: max finite 65504, 65520 -> inf, smallest subnormal 2^-24, 2^-25 ties to 0.
  EXPECT_EQ(cpu::float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(cpu::float_to_half(65519.0f), 0x7BFF);
  EXPECT_EQ(cpu::float_to_half(65520.0f), 0x7C00);
  EXPECT_EQ(cpu::float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(cpu::float_to_half(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(cpu::float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(cpu::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie to even
  EXPECT_EQ(cpu::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie to even (up)
  EXPECT_EQ(cpu::float_to_half(-2.0f), 0xC000);
  // Every half round-trips exactly through float.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto hh = static_cast<std::uint16_t>(h);
    const float f = cpu::half_to_float(hh);
    if (std::isnan(f)) continue;
    ASSERT_EQ(cpu::float_to_half(f), hh) << std::hex << h;
  }
  // Conversions agree with rounding in double for random values.
  for (int i = 0; i < 10000; ++i) {
    const float f = static_cast<float>((uniform01(3, 3, i) - 0.5) * 100.0);
    const float back = cpu::half_to_float(cpu::float_to_half(f));
    EXPECT_LE(std::abs(back - f), std::abs(f) * std::ldexp(1.0, -11) + 1e-7);
  }
}

// The array conversions (chunked, vectorised; F16C where the CPU has it) against the scalar rules,
// on random bit patterns (every exponent, subnormals, infinities, NaNs), a length that is not a
// multiple of the vector width, and every 16-bit pattern for the widening direction.
TEST(Kernels, VectorConversionsMatchScalar) {
  const std::int64_t n = 100003;
  std::vector<float> x(n);
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (auto& v : x) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const auto bits = static_cast<std::uint32_t>(state >> 32);
    std::memcpy(&v, &bits, 4);
  }
  x[0] = 1.0f + std::ldexp(1.0f, -8);   // ties
  x[1] = 1.0f + std::ldexp(1.0f, -11);
  x[2] = 65520.0f;                      // fp16 overflow
  x[3] = std::ldexp(1.5f, -25);         // fp16 subnormal rounding
  x[4] = -INFINITY;
  x[5] = NAN;
  // Bit for bit, NaNs included (their payload and quiet bit): the F16C loops, their scalar tails and
  // the CUDA kernels (tests/gpu) must agree on every input.
  auto bits = [](float a) {
    std::uint32_t u;
    std::memcpy(&u, &a, 4);
    return u;
  };
  auto bits_to_float = [](std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  std::vector<std::uint16_t> h(n);
  cpu::fp32_to_bf16(h.data(), x.data(), n);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(h[i], cpu::float_to_bf16(x[i])) << i << " " << x[i];
  cpu::fp32_to_fp16(h.data(), x.data(), n);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(h[i], cpu::float_to_half(x[i])) << std::hex << i << " " << bits(x[i]);
  std::vector<float> r = x;
  cpu::round_to_bf16(r.data(), n);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(r[i]), bits(cpu::bf16_to_float(cpu::float_to_bf16(x[i])))) << i;
  r = x;
  cpu::round_to_fp16(r.data(), n);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(r[i]), bits(cpu::half_to_float(cpu::float_to_half(x[i])))) << i;
  std::vector<std::uint16_t> all(0x10000 + 5);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> w(all.size());
  cpu::bf16_to_fp32(w.data(), all.data(), static_cast<std::int64_t>(all.size()));
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(bits(w[i]), bits(cpu::bf16_to_float(all[i]))) << i;
  cpu::fp16_to_fp32(w.data(), all.data(), static_cast<std::int64_t>(all.size()));
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(bits(w[i]), bits(cpu::half_to_float(all[i]))) << std::hex << all[i];
  // The NaN rule itself (what vcvtps2ph / vcvtph2ps give): quiet, sign and top payload kept.
  EXPECT_EQ(cpu::float_to_half(bits_to_float(0x7FFFFFFFu)), 0x7FFF);
  EXPECT_EQ(cpu::float_to_half(bits_to_float(0xFF800001u)), 0xFE00);
  EXPECT_EQ(bits(cpu::half_to_float(0x7C01)), 0x7FC02000u);
  EXPECT_EQ(bits(cpu::half_to_float(0xFC00)), 0xFF800000u);
}

// exp_rule (th/kernels/exp_rule.hpp), the vectorisable fp32 exp of the softmax and cross-entropy
// rows: within 2 ulp of exp() (computed in double, rounded) over its range, and its edges.
TEST(Kernels, ExpRuleWithinTwoUlpOfExp) {
  auto ulps = [](float a, float b) {
    std::int32_t ia, ib;
    std::memcpy(&ia, &a, 4);
    std::memcpy(&ib, &b, 4);
    return std::abs(static_cast<long long>(ia) - ib);
  };
  long long worst = 0;
  float at = 0.0f;
  const int n = 2000000;
  for (int i = 0; i <= n; ++i) {
    const float x = -87.0f + 175.0f * static_cast<float>(i) / n;
    const long long u = ulps(cpu::exp_rule(x), static_cast<float>(std::exp(static_cast<double>(x))));
    if (u > worst) worst = u, at = x;
  }
  EXPECT_LE(worst, 2) << "at x = " << at;
  EXPECT_EQ(cpu::exp_rule(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_rule(-INFINITY), 0.0f);
  EXPECT_EQ(cpu::exp_rule(-100.0f), 0.0f);
  EXPECT_EQ(cpu::exp_rule(100.0f), INFINITY);
  EXPECT_TRUE(std::isnan(cpu::exp_rule(NAN)));
}

// The fp32 softmax / cross-entropy kernels (vectorised rows: exp_rule, 16 partial lanes) against
// the double kernels on the same inputs. Bound: a sum of n positive terms over 16 lanes carries
// at most (n/16 + 16) roundings of 2^-24 relative, each exp 2 ulp more; a log-sum-exp moves by
// that relative error of the sum.
TEST(Kernels, Fp32SoftmaxAndCrossEntropyMatchDouble) {
  const int N = 3, V = 8003;  // a tail after the lanes
  const int targets[N] = {5, 8002, 0};
  std::vector<float> zf(static_cast<std::size_t>(N) * V), lf(N), lsef(N), dzf(zf.size());
  Vec zd = random_vec(zf.size(), 21, 4.0), ld(N), lsed(N), dzd(zf.size());
  for (std::size_t i = 0; i < zf.size(); ++i) zd[i] = zf[i] = static_cast<float>(zd[i]);
  std::int64_t cf = 0, cd = 0;
  const double totf = cpu::cross_entropy_forward(lf.data(), lsef.data(), zf.data(), targets, N, V, 0.1f, -1, &cf);
  const double totd = cpu::cross_entropy_forward(ld.data(), lsed.data(), zd.data(), targets, N, V, 0.1, -1, &cd);
  const double rel = (V / 16.0 + 16 + 4) * std::ldexp(1.0, -24);
  for (int n = 0; n < N; ++n) EXPECT_NEAR(lsef[n], lsed[n], rel + 4 * std::ldexp(std::abs(lsed[n]), -24)) << n;
  EXPECT_NEAR(totf, totd, N * (rel + 1e-5 * 4));  // plus the smoothing sum of V values in fp32
  cpu::cross_entropy_backward(dzf.data(), zf.data(), lsef.data(), targets, N, V, 0.1f, -1, 1.0f);
  cpu::cross_entropy_backward(dzd.data(), zd.data(), lsed.data(), targets, N, V, 0.1, -1, 1.0);
  double worst = 0;
  for (std::size_t i = 0; i < zf.size(); ++i) worst = std::max(worst, std::abs(dzf[i] - dzd[i]));
  EXPECT_LT(worst, 4 * rel);  // probabilities <= 1: exp's and the shift's relative errors

  const int B = 2, H = 3, Tq = 5, Tk = 67;
  const int key_len[B] = {67, 40};
  std::vector<float> Pf(static_cast<std::size_t>(B) * H * Tq * Tk), dPf(Pf.size()), dSf(Pf.size());
  Vec Pd = random_vec(Pf.size(), 22, 3.0), dPd = random_vec(Pf.size(), 23), dSd(Pf.size());
  for (std::size_t i = 0; i < Pf.size(); ++i) {
    Pd[i] = Pf[i] = static_cast<float>(Pd[i]);
    dPd[i] = dPf[i] = static_cast<float>(dPd[i]);
  }
  cpu::attention_softmax_forward(Pf.data(), B, H, Tq, Tk, key_len, true, 60, 0.125f);
  cpu::attention_softmax_forward(Pd.data(), B, H, Tq, Tk, key_len, true, 60, 0.125);
  cpu::softmax_backward(dSf.data(), dPf.data(), Pf.data(), B * H * Tq, Tk, 0.125f);
  cpu::softmax_backward(dSd.data(), dPd.data(), Pd.data(), B * H * Tq, Tk, 0.125);
  double wp = 0, ws = 0;
  for (std::size_t i = 0; i < Pf.size(); ++i) {
    wp = std::max(wp, std::abs(Pf[i] - Pd[i]));
    ws = std::max(ws, std::abs(dSf[i] - dSd[i]));
    if (Pd[i] == 0.0) EXPECT_EQ(Pf[i], 0.0f) << i;  // masked keys stay exactly 0
  }
  EXPECT_LT(wp, 32 * std::ldexp(1.0, -24));
  EXPECT_LT(ws, 1e-6);
}

// The fp32 AdamW loop (ISA-cloned chunks) gives the bits of the element rule that the offload
// loops apply one element at a time; n not a multiple of the chunk.
TEST(Kernels, Fp32AdamWChunksMatchTheElementRuleBitwise) {
  const std::int64_t n = 40000 + 7;
  std::vector<float> p(n), g(n), m(n), v(n);
  for (std::int64_t i = 0; i < n; ++i) {
    p[i] = static_cast<float>(uniform01(41, 0, i) - 0.5);
    g[i] = static_cast<float>(uniform01(41, 1, i) - 0.5) * 1e-2f;
    m[i] = static_cast<float>(uniform01(41, 2, i) - 0.5) * 1e-3f;
    v[i] = static_cast<float>(uniform01(41, 3, i)) * 1e-5f;
  }
  std::vector<float> rp = p, rm = m, rv = v;
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 7);
  const auto c = cpu::AdamWCoefficients<float>::make(1e-3, 0.9, 0.999, 1e-8, 0.01, 7);
  for (std::int64_t i = 0; i < n; ++i) c(rp[i], g[i], rm[i], rv[i]);
  for (std::int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(p[i], rp[i]) << i;
    ASSERT_EQ(m[i], rm[i]) << i;
    ASSERT_EQ(v[i], rv[i]) << i;
  }
}

// fp32 LayerNorm (vectorised row sums) against the double kernel on the same inputs: relative
// errors of a few roundings per row sum (D/16 + 16 of 2^-24), times the normalised values' size.
TEST(Kernels, Fp32LayerNormMatchesDouble) {
  const int N = 5, D = 259;
  std::vector<float> xf(N * D), gf(D), bf(D), yf(N * D), mf(N), rf(N), dyf(N * D), dxf(N * D), dgf(D, 0.f), dbf(D, 0.f);
  Vec xd = random_vec(N * D, 51, 2.0), gd = random_vec(D, 52), bd = random_vec(D, 53), dyd = random_vec(N * D, 54);
  Vec yd(N * D), md(N), rd(N), dxd(N * D), dgd(D, 0.0), dbd(D, 0.0);
  for (int i = 0; i < N * D; ++i) xd[i] = xf[i] = static_cast<float>(xd[i]), dyd[i] = dyf[i] = static_cast<float>(dyd[i]);
  for (int j = 0; j < D; ++j) gd[j] = gf[j] = static_cast<float>(gd[j]), bd[j] = bf[j] = static_cast<float>(bd[j]);
  cpu::layernorm_forward(yf.data(), mf.data(), rf.data(), xf.data(), gf.data(), bf.data(), N, D, 1e-5f);
  cpu::layernorm_forward(yd.data(), md.data(), rd.data(), xd.data(), gd.data(), bd.data(), N, D, 1e-5);
  cpu::layernorm_backward(dxf.data(), dgf.data(), dbf.data(), dyf.data(), xf.data(), gf.data(), mf.data(), rf.data(), N, D);
  cpu::layernorm_backward(dxd.data(), dgd.data(), dbd.data(), dyd.data(), xd.data(), gd.data(), md.data(), rd.data(), N, D);
  const double u = (D / 16.0 + 16 + 8) * std::ldexp(1.0, -24);
  for (int i = 0; i < N * D; ++i) {
    ASSERT_NEAR(yf[i], yd[i], 16 * u * (1 + std::abs(yd[i]))) << i;
    ASSERT_NEAR(dxf[i], dxd[i], 64 * u * (1 + std::abs(dxd[i]))) << i;
  }
}

// bias_act_backward_bf16 (the stored bf16 pre-activation read as it is) against bias_act_backward
// on the widened values: the same values, so the same bits, for ReLU (zeros and negative zero in
// the input) and GELU, with a width that is no multiple of the vector length.
TEST(Kernels, BiasActBackwardFromBf16IsTheWidenedOne) {
  const std::int64_t N = 19;
  const int F = 37;
  std::vector<float> dy(N * F), pre(N * F);
  for (std::int64_t i = 0; i < N * F; ++i) {
    dy[i] = static_cast<float>(2.0 * uniform01(21, 1, i) - 1.0);
    pre[i] = static_cast<float>(6.0 * uniform01(21, 2, i) - 3.0);
  }
  pre[0] = 0.0f, pre[1] = -0.0f;
  std::vector<std::uint16_t> pre16(pre.size());
  cpu::fp32_to_bf16(pre16.data(), pre.data(), N * F);
  std::vector<float> wide(pre.size());
  cpu::bf16_to_fp32(wide.data(), pre16.data(), N * F);
  for (cpu::Activation act : {cpu::Activation::ReLU, cpu::Activation::GELU}) {
    std::vector<float> d1(N * F), d2(N * F), b1(F, 0.5f), b2(F, 0.5f);
    cpu::bias_act_backward_bf16(d1.data(), b1.data(), dy.data(), pre16.data(), N, F, act);
    cpu::bias_act_backward<float>(d2.data(), b2.data(), dy.data(), wide.data(), N, F, act);
    for (std::int64_t i = 0; i < N * F; ++i) ASSERT_EQ(d1[i], d2[i]) << i;
    for (int j = 0; j < F; ++j) ASSERT_EQ(b1[j], b2[j]) << j;
    double s = 0.5;  // db[0] against its definition
    for (std::int64_t r = 0; r < N; ++r) s += d2[r * F];
    EXPECT_NEAR(b1[0], s, 1e-5);
  }
}
