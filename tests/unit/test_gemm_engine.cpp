// The GEMM engine (th/kernels/gemm_engine.hpp): every provider and dtype against a double-precision
// reference GEMM, the strided-batched kernel against a loop of single GEMMs, and the selection
// logic. Providers this machine cannot run (no oneDNN in the build, no bf16 matmul at this ISA)
// are skipped, so the test passes on every x86-64 CPU; tests/cmake/gemm.cmake runs it again with
// oneDNN capped at SSE4.1 and OpenBLAS at its Prescott kernels.
//
// Tolerance: a dot product of K terms computed in fp32 in any order (blocked, FMA, split) is within
// gamma_K * sum_k |a_k b_k| of the exact value, gamma_K = K u / (1 - K u), u = 2^-24 (Higham,
// Accuracy and Stability, Thm 3.5); alpha's scaling, beta * c and the final add cost three more
// roundings: |C - C_exact| <= gamma_{K+3} (|alpha| sum_k |a_k b_k| + |beta| |c|). bf16 paths
// multiply operands rounded to bf16 (8-bit mantissa), whose products are exact in fp32, with fp32
// accumulation: the same bound against the double GEMM of the rounded operands. A wrong
// transposition, stride or scale gives errors of order |C| itself, far outside the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/gemm_engine.hpp"

using namespace th;
using namespace th::cpu;

namespace {
constexpr double kU = 1.0 / 16777216.0;  // 2^-24

// Round to the nearest bf16, ties to even (the test's own rounding; inputs are finite).
float round_bf16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  x = (x + 0x7FFFu + ((x >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&f, &x, 4);
  return f;
}
std::uint16_t bf16_bits(float f) {
  const float r = round_bf16(f);
  std::uint32_t x;
  std::memcpy(&x, &r, 4);
  return static_cast<std::uint16_t>(x >> 16);
}

// Restores the process's plan when a test ends.
struct PlanGuard {
  GemmPlan saved = gemm_plan();
  ~PlanGuard() { set_gemm_plan(saved); }
};

// A linear layer's bf16 backward against a double reference of the bf16 values: dx[N,in] =
// dx0 + alpha dy[N,out] W[out,in] (dx0 empty: 0), dW[out,in] = dW0 + alpha dy^T x[N,in], each
// element within the fp32 accumulation bound of its K products plus `extra` roundings.
void expect_dx_near(const std::vector<float>& dx, const std::vector<float>& dx0, float alpha,
                    const std::vector<float>& dyw, const std::vector<float>& Ww, int N, int in, int out, int extra,
                    const std::string& what) {
  for (int r = 0; r < N; ++r)
    for (int c = 0; c < in; ++c) {
      double e = dx0.empty() ? 0.0 : dx0[r * in + c], mag = std::abs(e);
      for (int k = 0; k < out; ++k) {
        const double t = double(alpha) * dyw[r * out + k] * Ww[k * in + c];
        e += t, mag += std::abs(t);
      }
      const double K = out + extra + 3, bound = K * kU / (1 - K * kU) * mag;
      ASSERT_LE(std::abs(dx[r * in + c] - e), bound) << what << " dx " << r << "," << c;
    }
}
void expect_dW_near(const std::vector<float>& dW, const std::vector<float>& dW0, float alpha,
                    const std::vector<float>& dyw, const std::vector<float>& xw, int N, int in, int out,
                    const std::string& what) {
  for (int o = 0; o < out; ++o)
    for (int c = 0; c < in; ++c) {
      double e = dW0[o * in + c], mag = std::abs(e);
      for (int r = 0; r < N; ++r) {
        const double t = double(alpha) * dyw[r * out + o] * xw[r * in + c];
        e += t, mag += std::abs(t);
      }
      const double bound = (N + 3) * kU / (1 - (N + 3) * kU) * mag;
      ASSERT_LE(std::abs(dW[o * in + c] - e), bound) << what << " dW " << o << "," << c;
    }
}

struct Case {
  bool ta, tb;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
  int batch = 1;
  std::int64_t sa = 0, sb = 0, sc = 0;
};

std::string name(const Case& c) {
  return "ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " batch=" + std::to_string(c.batch);
}

// Every array filled with values in [-1, 1), padding included (it must stay untouched in C).
std::vector<float> random_floats(std::size_t n, std::uint64_t stream) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(2.0 * uniform01(11, stream, i) - 1.0);
  return v;
}
std::size_t extent(int rows, int ld, int batch, std::int64_t stride) {
  return static_cast<std::size_t>((batch - 1) * stride + static_cast<std::int64_t>(rows) * ld);
}

struct Operands {
  std::vector<float> A, B, C;
};
Operands make(const Case& c, std::uint64_t seed) {
  return {random_floats(extent(c.ta ? c.K : c.M, c.lda, c.batch, c.sa), 3 * seed),
          random_floats(extent(c.tb ? c.N : c.K, c.ldb, c.batch, c.sb), 3 * seed + 1),
          random_floats(extent(c.M, c.ldc, c.batch, c.sc), 3 * seed + 2)};
}

// C (as computed) against the double GEMM of the operands (rounded to bf16 first if asked), entry
// by entry within gamma_{K+3} of the magnitude; entries of C outside the product untouched.
void check(const Case& c, const Operands& in, const std::vector<float>& C, bool bf16_operands, const char* what) {
  const double gamma = (c.K + 3) * kU / (1 - (c.K + 3) * kU);
  const auto val = [&](float v) { return bf16_operands ? double(round_bf16(v)) : double(v); };
  std::vector<bool> inside(C.size(), false);
  int bad = 0;
  for (int b = 0; b < c.batch; ++b)
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) {
        double s = 0, mag = 0;
        for (int k = 0; k < c.K; ++k) {
          const double a = val(in.A[b * c.sa + (c.ta ? std::int64_t(k) * c.lda + i : std::int64_t(i) * c.lda + k)]);
          const double x = val(in.B[b * c.sb + (c.tb ? std::int64_t(j) * c.ldb + k : std::int64_t(k) * c.ldb + j)]);
          s += a * x;
          mag += std::abs(a * x);
        }
        const std::size_t at = b * c.sc + std::int64_t(i) * c.ldc + j;
        inside[at] = true;
        const double ref = c.alpha * s + (c.beta != 0 ? c.beta * double(in.C[at]) : 0.0);
        const double tol = gamma * (std::abs(c.alpha) * mag + std::abs(c.beta * in.C[at])) + 1e-30;
        if (std::abs(C[at] - ref) > tol && bad++ < 3)
          ADD_FAILURE() << what << " " << name(c) << ": C[" << b << "," << i << "," << j << "] = " << C[at]
                        << ", reference " << ref << ", bound " << tol;
      }
  for (std::size_t i = 0; i < C.size(); ++i)
    if (!inside[i] && C[i] != in.C[i] && bad++ < 3)
      ADD_FAILURE() << what << " " << name(c) << ": C[" << i << "] outside the product changed";
}

// Shapes: transposes, odd sizes, K = 1, long K, padded leading dimensions; alpha/beta variants.
std::vector<Case> single_cases() {
  const int sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 64, 64}, {127, 31, 200}, {5, 130, 1}};
  const float ab[][2] = {{1.f, 0.f}, {0.5f, 1.f}, {-1.25f, -0.7f}};
  std::vector<Case> cases;
  for (const auto& s : sizes)
    for (int t = 0; t < 4; ++t)
      for (const auto& x : ab) {
        Case c{bool(t & 1), bool(t & 2), s[0], s[1], s[2], 0, 0, 0, x[0], x[1]};
        c.lda = (c.ta ? c.M : c.K) + (t == 1 ? 0 : 3);
        c.ldb = (c.tb ? c.K : c.N) + (t == 2 ? 0 : 2);
        c.ldc = c.N + (t == 3 ? 0 : 1);
        cases.push_back(c);
      }
  return cases;
}

// The plans to test, each with what its GEMMs do to the operands; those this machine cannot run
// are left out (and said on stdout).
struct Named {
  const char* name;
  GemmPlan plan;
};
std::vector<Named> fp32_plans() {
  std::vector<Named> p = {{"fp32 OpenBLAS", {GemmProvider::OpenBLAS, false, false}}};
  if (gemm_capabilities().onednn_fp32) p.push_back({"fp32 oneDNN", {GemmProvider::OneDNN, false, false}});
  else std::printf("oneDNN fp32 not available here: its cases are skipped\n");
  return p;
}
std::vector<Named> bf16_plans() {  // fp32_as_bf16 set: gemm<float> rounds its operands
  std::vector<Named> p = {{"bf16 widened to fp32 OpenBLAS", {GemmProvider::OpenBLAS, false, true}}};
  const GemmCapabilities& caps = gemm_capabilities();
  if (caps.onednn_fp32) p.push_back({"bf16 widened to fp32 oneDNN", {GemmProvider::OneDNN, false, true}});
  if (caps.onednn_bf16) p.push_back({"bf16 oneDNN matmul", {GemmProvider::OpenBLAS, true, true}});
  else std::printf("oneDNN bf16 matmul not available at ISA '%s': its cases are skipped\n", caps.onednn_isa.c_str());
  return p;
}

void run_fp32(const Case& c, Operands& in, std::vector<float>& C) {
  C = in.C;
  if (c.batch == 1)
    gemm<float>(c.ta, c.tb, c.M, c.N, c.K, c.alpha, in.A.data(), c.lda, in.B.data(), c.ldb, c.beta, C.data(), c.ldc);
  else
    gemm_strided_batched<float>(c.ta, c.tb, c.M, c.N, c.K, c.alpha, in.A.data(), c.lda, c.sa, in.B.data(), c.ldb,
                                c.sb, c.beta, C.data(), c.ldc, c.sc, c.batch);
}
void run_bf16(const Case& c, Operands& in, std::vector<float>& C) {
  std::vector<std::uint16_t> A(in.A.size()), B(in.B.size());
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = bf16_bits(in.A[i]);
  for (std::size_t i = 0; i < B.size(); ++i) B[i] = bf16_bits(in.B[i]);
  C = in.C;
  if (c.batch == 1)
    gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta, C.data(), c.ldc);
  else
    gemm_strided_batched_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, c.sa, B.data(), c.ldb, c.sb,
                              c.beta, C.data(), c.ldc, c.sc, c.batch);
}
}  // namespace

TEST(GemmEngine, ReportsWhatItFound) {
  const GemmCapabilities& caps = gemm_capabilities();
  std::printf("OpenBLAS core %s; oneDNN %s %s isa %s, fp32 %d (%s), bf16 %d (%s), bf16 instructions %d\n",
              caps.openblas_core.c_str(), caps.onednn_built ? "built" : "absent", caps.onednn_version.c_str(),
              caps.onednn_isa.c_str(), caps.onednn_fp32, caps.onednn_fp32_impl.c_str(), caps.onednn_bf16,
              caps.onednn_bf16_impl.c_str(), caps.bf16_native);
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (caps.onednn_built && cap && std::string(cap) == "SSE41") {
    EXPECT_EQ(caps.onednn_isa, "sse41") << "ONEDNN_MAX_CPU_ISA=SSE41 did not cap oneDNN";
    EXPECT_FALSE(caps.onednn_bf16);  // no bf16 matmul below AVX-512
  }
  // The default plan, before anyone chooses: today's path.
  EXPECT_EQ(gemm_plan(), (GemmPlan{GemmProvider::OpenBLAS, false, false}));
}

TEST(GemmEngine, Fp32ProvidersMatchDoubleReference) {
  PlanGuard guard;
  std::uint64_t seed = 1;
  for (const Named& p : fp32_plans()) {
    set_gemm_plan(p.plan);
    for (const Case& c : single_cases()) {
      Operands in = make(c, seed++);
      std::vector<float> C;
      run_fp32(c, in, C);
      check(c, in, C, false, p.name);
    }
  }
}

TEST(GemmEngine, Bf16PathsMatchDoubleReferenceOfRoundedOperands) {
  PlanGuard guard;
  std::uint64_t seed = 1000;
  for (const Named& p : bf16_plans()) {
    set_gemm_plan(p.plan);
    for (const Case& c : single_cases()) {
      Operands in = make(c, seed++);
      std::vector<float> C;
      run_bf16(c, in, C);  // bf16 inputs
      check(c, in, C, true, p.name);
      run_fp32(c, in, C);  // fp32 inputs, rounded by the engine (precision%dtype = 'bf16')
      check(c, in, C, true, p.name);
    }
  }
}

// Strided-batched: attention's layout (heads side by side in a row: batch stride Dh, row stride
// H*Dh), contiguous blocks, and a shared B (stride 0), each against the reference and against a
// loop of single GEMMs of the same plan.
TEST(GemmEngine, StridedBatchedMatchesLoopOfSingleGemms) {
  PlanGuard guard;
  const int H = 4, Dh = 16, L = 24;
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    // scores-like: [L x Dh] x [Dh x L] per head, heads interleaved in rows of H*Dh
    cases.push_back(Case{ta, tb, L, L, Dh, H * Dh, H * Dh, L, 1.f, 0.f, H, Dh, Dh, std::int64_t(L) * L});
    // contiguous blocks with padding, alpha and beta
    Case c{ta, tb, 9, 13, 21, 0, 0, 15, 0.75f, -0.5f, 3};
    c.lda = (ta ? 9 : 21) + 1, c.ldb = (tb ? 21 : 13) + 2;
    c.sa = std::int64_t(ta ? 21 : 9) * c.lda + 5, c.sb = std::int64_t(tb ? 13 : 21) * c.ldb + 3, c.sc = 9 * 15 + 7;
    cases.push_back(c);
    c.sb = 0;  // one B for every entry
    cases.push_back(c);
  }
  std::vector<Named> plans = fp32_plans();
  for (const Named& p : bf16_plans()) plans.push_back(p);
  std::uint64_t seed = 5000;
  for (const Named& p : plans) {
    set_gemm_plan(p.plan);
    for (const Case& c : cases) {
      Operands in = make(c, seed++);
      for (bool bf16_in : {false, true}) {
        if (bf16_in && !p.plan.fp32_as_bf16) continue;
        std::vector<float> batched, looped;
        (bf16_in ? run_bf16 : run_fp32)(c, in, batched);
        check(c, in, batched, p.plan.fp32_as_bf16, p.name);
        looped = in.C;
        for (int b = 0; b < c.batch; ++b) {
          Case one = c;
          one.batch = 1;
          Operands part{std::vector<float>(in.A.begin() + b * c.sa, in.A.end()),
                        std::vector<float>(in.B.begin() + b * c.sb, in.B.end()),
                        std::vector<float>(looped.begin() + b * c.sc, looped.end())};
          std::vector<float> out;
          (bf16_in ? run_bf16 : run_fp32)(one, part, out);
          std::copy(out.begin(), out.begin() + std::int64_t(c.M - 1) * c.ldc + c.N, looped.begin() + b * c.sc);
        }
        // Both within the bound of the same reference, so within twice the bound of each other.
        const double gamma = (c.K + 3) * kU / (1 - (c.K + 3) * kU);
        for (std::size_t i = 0; i < batched.size(); ++i)
          ASSERT_NEAR(batched[i], looped[i], 2 * gamma * (c.K + 1) + 1e-30) << p.name << " " << name(c) << " at " << i;
      }
    }
  }
  // double: a loop of OpenBLAS GEMMs, checked against the same reference in double precision.
  const Case c = cases[0];
  Operands in = make(c, 99);
  std::vector<double> A(in.A.begin(), in.A.end()), B(in.B.begin(), in.B.end()), C(in.C.begin(), in.C.end());
  gemm_strided_batched<double>(c.ta, c.tb, c.M, c.N, c.K, 1.0, A.data(), c.lda, c.sa, B.data(), c.ldb, c.sb, 0.0,
                               C.data(), c.ldc, c.sc, c.batch);
  for (int b = 0; b < c.batch; ++b)
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) {
        double s = 0;
        for (int k = 0; k < c.K; ++k) s += A[b * c.sa + std::int64_t(i) * c.lda + k] * B[b * c.sb + std::int64_t(k) * c.ldb + j];
        ASSERT_NEAR(C[b * c.sc + std::int64_t(i) * c.ldc + j], s, 1e-12 * (c.K + 1));
      }
}

TEST(GemmEngine, ParsesTheDeckKey) {
  EXPECT_EQ(parse_gemm_request("auto"), GemmRequest::Auto);
  EXPECT_EQ(parse_gemm_request("openblas"), GemmRequest::OpenBLAS);
  EXPECT_EQ(parse_gemm_request("onednn"), GemmRequest::OneDNN);
  try {
    parse_gemm_request("mkl");
    FAIL() << "no error for 'mkl'";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("run%gemm"), std::string::npos) << e.what();
  }
}

// The choice on made-up machines: overrides honoured, the faster kept, a provider that could not
// be created never chosen.
TEST(GemmEngine, SelectionLogic) {
  GemmCapabilities avx2;  // this development machine: oneDNN 2.6 at AVX2, no bf16 matmul
  avx2.openblas_core = "Zen", avx2.onednn_built = true, avx2.onednn_version = "2.6.3", avx2.onednn_isa = "avx2";
  avx2.onednn_fp32 = true;
  GemmCapabilities amx = avx2;  // Sapphire Rapids
  amx.onednn_isa = "avx512_core_amx", amx.onednn_bf16 = true, amx.bf16_native = true;
  GemmCapabilities avx512 = amx;  // bf16 matmul creatable, but emulated (no bf16 instructions)
  avx512.onednn_isa = "avx512_core", avx512.bf16_native = false;
  GemmCapabilities none;  // a build without oneDNN
  none.openblas_core = "Haswell";

  GemmTiming blas_faster{1e9, 0.010, 0.020}, dnnl_faster{1e9, 0.020, 0.010}, dnnl_untimed{1e9, 0.010, 0.0};
  using R = GemmRequest;
  const GemmProvider B = GemmProvider::OpenBLAS, D = GemmProvider::OneDNN;
  EXPECT_EQ(choose_gemm_plan(R::Auto, avx2, &blas_faster, false).fp32, B);
  EXPECT_EQ(choose_gemm_plan(R::Auto, avx2, &dnnl_faster, false).fp32, D);
  EXPECT_EQ(choose_gemm_plan(R::Auto, avx2, &dnnl_untimed, false).fp32, B);
  EXPECT_EQ(choose_gemm_plan(R::Auto, avx2, nullptr, false).fp32, B);
  EXPECT_EQ(choose_gemm_plan(R::Auto, none, &dnnl_faster, false).fp32, B);  // not built: never chosen
  EXPECT_EQ(choose_gemm_plan(R::OpenBLAS, avx2, &dnnl_faster, false).fp32, B);  // forced over the timing
  EXPECT_EQ(choose_gemm_plan(R::OneDNN, avx2, &blas_faster, false).fp32, D);
  EXPECT_THROW(choose_gemm_plan(R::OneDNN, none, nullptr, false), InputError);
  GemmCapabilities no_fp32 = avx2;
  no_fp32.onednn_fp32 = false;  // built, but the fp32 primitive failed to create
  EXPECT_THROW(choose_gemm_plan(R::OneDNN, no_fp32, nullptr, false), InputError);
  EXPECT_EQ(choose_gemm_plan(R::Auto, no_fp32, &dnnl_faster, false).fp32, B);

  // bf16: oneDNN only where the primitive was created and the ISA has bf16 instructions.
  EXPECT_FALSE(choose_gemm_plan(R::Auto, avx2, nullptr, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::Auto, amx, nullptr, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::OpenBLAS, amx, nullptr, true).bf16_onednn);  // run%gemm is fp32's choice
  EXPECT_FALSE(choose_gemm_plan(R::Auto, avx512, nullptr, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::Auto, amx, nullptr, true).fp32_as_bf16);
  EXPECT_FALSE(choose_gemm_plan(R::Auto, amx, nullptr, false).fp32_as_bf16);
  // 'auto' with the bf16 matmul timed: kept unless the chosen fp32 provider is >10% faster.
  GemmTiming bf16_slow = dnnl_faster, bf16_fast = dnnl_faster, bf16_close = dnnl_faster;
  bf16_slow.onednn_bf16_s = 0.018;   // oneDNN fp32 0.010: widening to fp32 wins
  bf16_fast.onednn_bf16_s = 0.004;
  bf16_close.onednn_bf16_s = 0.0105;  // within the margin: the bf16 matmul stays
  EXPECT_FALSE(choose_gemm_plan(R::Auto, amx, &bf16_slow, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::Auto, amx, &bf16_fast, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::Auto, amx, &bf16_close, true).bf16_onednn);
  EXPECT_TRUE(choose_gemm_plan(R::OneDNN, amx, &bf16_slow, true).bf16_onednn);  // forced: not timed against
  GemmTiming blas_vs_bf16 = blas_faster;  // fp32 on OpenBLAS (0.010) against bf16 (0.018)
  blas_vs_bf16.onednn_bf16_s = 0.018;
  EXPECT_FALSE(choose_gemm_plan(R::Auto, amx, &blas_vs_bf16, true).bf16_onednn);
  const std::string slow_line =
      describe_gemm_plan(choose_gemm_plan(R::Auto, amx, &bf16_slow, true), amx, &bf16_slow, R::Auto);
  EXPECT_NE(slow_line.find("bf16: oneDNN 2.6.3 avx512_core_amx bf16 matmul 55.6 GFLOP/s is slower here than fp32 -> "
                           "fp32 oneDNN 2.6.3 avx512_core_amx on bf16-rounded operands"),
            std::string::npos) << slow_line;
  const std::string fast_line =
      describe_gemm_plan(choose_gemm_plan(R::Auto, amx, &bf16_fast, true), amx, &bf16_fast, R::Auto);
  EXPECT_NE(fast_line.find("bf16 matmul () 250.0 GFLOP/s, fp32 accumulation"), std::string::npos) << fast_line;

  // The banner line says which library runs each dtype, and why.
  const std::string line =
      describe_gemm_plan(choose_gemm_plan(R::Auto, avx2, &blas_faster, true), avx2, &blas_faster, R::Auto);
  EXPECT_NE(line.find("fp32 OpenBLAS (Zen) 100.0 GFLOP/s vs oneDNN 2.6.3 avx2 50.0 -> OpenBLAS"), std::string::npos) << line;
  EXPECT_NE(line.find("bf16: oneDNN has no bf16 matmul at avx2 -> fp32 OpenBLAS (Zen) on bf16-rounded operands"),
            std::string::npos) << line;
  const std::string amx_line = describe_gemm_plan(choose_gemm_plan(R::OneDNN, amx, nullptr, false), amx, nullptr, R::OneDNN);
  EXPECT_NE(amx_line.find("fp32 oneDNN 2.6.3 avx512_core_amx (run%gemm)"), std::string::npos) << amx_line;
  EXPECT_NE(amx_line.find("bf16: oneDNN 2.6.3 avx512_core_amx bf16 matmul"), std::string::npos) << amx_line;
}

// On this machine: a plan asking for what could not be created is refused; the plan chosen from
// the real capabilities runs bf16 GEMMs correctly whichever path it took (the fallback where
// oneDNN has no bf16 matmul, as at AVX2 or under ONEDNN_MAX_CPU_ISA=SSE41).
TEST(GemmEngine, UnavailableProviderFallsBack) {
  PlanGuard guard;
  const GemmCapabilities& caps = gemm_capabilities();
  if (!caps.onednn_bf16) EXPECT_THROW(set_gemm_plan({GemmProvider::OpenBLAS, true, false}), Error);
  if (!caps.onednn_fp32) EXPECT_THROW(set_gemm_plan({GemmProvider::OneDNN, false, false}), Error);
  const GemmPlan plan = choose_gemm_plan(GemmRequest::Auto, caps, nullptr, true);
  EXPECT_EQ(plan.bf16_onednn, caps.onednn_bf16 && caps.bf16_native);
  set_gemm_plan(plan);
  std::printf("%s\n", describe_gemm_plan(plan, caps, nullptr, GemmRequest::Auto).c_str());
  const Case c{true, false, 33, 47, 129, 33, 47, 47, 1.f, 1.f};
  Operands in = make(c, 77);
  std::vector<float> C;
  run_bf16(c, in, C);
  check(c, in, C, true, "chosen bf16 path");
}

// The start-up calibration times both providers on the same GEMMs (values are not asserted:
// speed is a benchmark, not a test); it must finish and report positive times.
TEST(GemmEngine, CalibrationRunsBothProviders) {
  const GemmTiming t = time_gemm_providers(64, 256);
  EXPECT_GT(t.flops, 0);
  EXPECT_GT(t.openblas_s, 0);
  EXPECT_EQ(t.onednn_s > 0, gemm_capabilities().onednn_fp32);
  EXPECT_EQ(t.onednn_bf16_s, 0.0);  // not asked for
  EXPECT_GE(t.rows, 32);
  const GemmTiming t16 = time_gemm_providers(64, 256, true);
  EXPECT_EQ(t16.onednn_bf16_s > 0, gemm_capabilities().onednn_bf16 && gemm_capabilities().bf16_native);
}

// linear_backward in a bf16 run rounds dy once for its two products (gemm.cpp): the same
// operands and the same GEMMs as two separate gemm<float> calls, so the same bits; with
// accumulate_dx both ways, and dW accumulating.
TEST(GemmEngine, LinearBackwardSharesRoundedDyBitForBit) {
  PlanGuard guard;
  const int N = 37, in = 29, out = 41;
  std::vector<float> dy(N * out), x(N * in), W(out * in), dx0(N * in), dW0(out * in);
  std::uint64_t s = 77;
  auto fill = [&](std::vector<float>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(2.0 * uniform01(12, s, i) - 1.0);
    ++s;
  };
  fill(dy), fill(x), fill(W), fill(dx0), fill(dW0);
  for (const Named& p : bf16_plans()) {
    set_gemm_plan(p.plan);
    for (bool acc : {false, true}) {
      std::vector<float> dx = dx0, dW = dW0, db(out, 0.f), rdx = dx0, rdW = dW0;
      linear_backward<float>(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), N, in, out, acc);
      gemm<float>(false, false, N, in, out, 1.f, dy.data(), out, W.data(), in, acc ? 1.f : 0.f, rdx.data(), in);
      gemm<float>(true, false, out, in, N, 1.f, dy.data(), out, x.data(), in, 1.f, rdW.data(), in);
      for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(dx[i], rdx[i]) << p.name << " dx " << i;
      for (std::size_t i = 0; i < dW.size(); ++i) ASSERT_EQ(dW[i], rdW[i]) << p.name << " dW " << i;
      double sum0 = 0;
      for (int r = 0; r < N; ++r) sum0 += dy[r * out];
      EXPECT_NEAR(db[0], sum0, 1e-4);
    }
  }
}

// The linear layer with bf16 operands handed over directly (linear_forward_bf16,
// linear_backward_bf16): with x16 (and fp32 dy), the weight in fp32 or as its 2-byte compute copy
// W16, it must give, bit for bit, what the fp32 entry points give on the widened values in every
// bf16 plan (the same rounded operands reach the same GEMMs). With dy16 and alpha: dx = alpha dy16 W and dW += alpha dy16^T x against a double
// reference of the bf16-rounded operands, within the bound in this file's header.
TEST(GemmEngine, LinearWithBf16OperandsMatchesTheFp32EntryPoints) {
  PlanGuard guard;
  const int N = 37, in = 29, out = 41;
  std::vector<float> dy(N * out), x(N * in), W(out * in), b(out), dx0(N * in), dW0(out * in);
  std::uint64_t s = 91;
  auto fill = [&](std::vector<float>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(2.0 * uniform01(13, s, i) - 1.0);
    ++s;
  };
  fill(dy), fill(x), fill(W), fill(b), fill(dx0), fill(dW0);
  std::vector<std::uint16_t> x16(x.size()), dy16(dy.size()), W16(W.size());
  for (std::size_t i = 0; i < W.size(); ++i) W16[i] = bf16_bits(W[i]);
  std::vector<float> xw(x.size()), dyw(dy.size()), Wr(W.size());  // the bf16 values, widened
  for (std::size_t i = 0; i < W.size(); ++i) Wr[i] = round_bf16(W[i]);
  for (std::size_t i = 0; i < x.size(); ++i) x16[i] = bf16_bits(x[i]), xw[i] = round_bf16(x[i]);
  for (std::size_t i = 0; i < dy.size(); ++i) dy16[i] = bf16_bits(dy[i]), dyw[i] = round_bf16(dy[i]);
  const float alpha = 0.37f;
  for (const Named& p : bf16_plans())
   for (bool w16 : {false, true}) {
    set_gemm_plan(p.plan);
    const float* Wf = w16 ? nullptr : W.data();
    const std::uint16_t* Wh = w16 ? W16.data() : nullptr;
    std::vector<float> y(N * out), ry(N * out);
    linear_forward_bf16(y.data(), nullptr, x16.data(), Wf, Wh, b.data(), N, in, out);
    linear_forward<float>(ry.data(), xw.data(), W.data(), b.data(), N, in, out);
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], ry[i]) << p.name << " y " << i << " w16 " << w16;
    if (w16) {  // fp32 x with the 2-byte weight
      linear_forward_bf16(y.data(), x.data(), nullptr, nullptr, Wh, b.data(), N, in, out);
      linear_forward<float>(ry.data(), x.data(), W.data(), b.data(), N, in, out);
      for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], ry[i]) << p.name << " y(x fp32) " << i;
    }
    for (bool acc : {false, true}) {
      std::vector<float> dx = dx0, dW = dW0, db(out, 0.f), rdx = dx0, rdW = dW0, rdb(out, 0.f);
      linear_backward_bf16(dx.data(), dW.data(), db.data(), dy.data(), nullptr, 1.0f, nullptr, x16.data(), Wf, Wh,
                           N, in, out, acc);
      // The reference: the products as separate fp32 GEMMs (which round their operands).
      gemm<float>(false, false, N, in, out, 1.f, dy.data(), out, W.data(), in, acc ? 1.f : 0.f, rdx.data(), in);
      gemm<float>(true, false, out, in, N, 1.f, dy.data(), out, xw.data(), in, 1.f, rdW.data(), in);
      bias_grad<float>(rdb.data(), dy.data(), N, out);
      for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(dx[i], rdx[i]) << p.name << " dx " << i;
      for (std::size_t i = 0; i < dW.size(); ++i) ASSERT_EQ(dW[i], rdW[i]) << p.name << " dW " << i;
      for (int i = 0; i < out; ++i) ASSERT_EQ(db[i], rdb[i]) << p.name << " db " << i;

      // dy16 with alpha, x in fp32 (rounded by the GEMM) and in bf16: the same values.
      for (bool xin16 : {false, true}) {
        dx = dx0, dW = dW0;
        linear_backward_bf16(dx.data(), dW.data(), nullptr, nullptr, dy16.data(), alpha, xin16 ? nullptr : x.data(),
                             xin16 ? x16.data() : nullptr, Wf, Wh, N, in, out, acc);
        ASSERT_NO_FATAL_FAILURE(expect_dx_near(dx, acc ? dx0 : std::vector<float>{}, alpha, dyw, Wr, N, in, out, 0,
                                               std::string(p.name) + " dy16"));
        ASSERT_NO_FATAL_FAILURE(expect_dW_near(dW, dW0, alpha, dyw, xw, N, in, out, std::string(p.name) + " dy16"));
      }
    }
  }
  EXPECT_THROW(linear_backward_bf16(nullptr, nullptr, nullptr, dy.data(), dy16.data(), 1.0f, x.data(), nullptr,
                                    W.data(), nullptr, N, in, out),
               Error);
  std::vector<float> dx(N * in);
  EXPECT_THROW(linear_backward_bf16(dx.data(), nullptr, nullptr, dy.data(), nullptr, 1.0f, x.data(), nullptr, W.data(),
                                    W16.data(), N, in, out),
               Error);
  EXPECT_THROW(linear_forward_bf16(nullptr, nullptr, x16.data(), W.data(), W16.data(), nullptr, N, in, out), Error);
}

// The output projection's backward by blocks of dy's columns (Transformer::output_backward):
// linear_backward_bf16 with dy16's row stride ldy = V on a block, dx accumulated over the blocks.
// Against a double reference of the bf16 values: every element within the fp32 accumulation
// bound of its products (K terms plus one rounding per block of the accumulated dx), in every
// plan; a strided dy with a bias gradient is refused.
TEST(GemmEngine, LinearBackwardOnColumnBlocksOfDy) {
  PlanGuard guard;
  const int N = 23, in = 19, V = 53, bw = 16;  // blocks of 16, 16, 16, 5 columns
  std::vector<float> dyw(N * V), xw(N * in), Ww(V * in), dW0(V * in);
  std::vector<std::uint16_t> dy16(dyw.size()), x16(xw.size()), W16(Ww.size());
  std::uint64_t s = 7;
  auto fill16 = [&](std::vector<float>& w, std::vector<std::uint16_t>& h) {
    for (std::size_t i = 0; i < w.size(); ++i) {
      h[i] = bf16_bits(static_cast<float>(2.0 * uniform01(17, s, i) - 1.0));
      w[i] = round_bf16(static_cast<float>(2.0 * uniform01(17, s, i) - 1.0));
    }
    ++s;
  };
  fill16(dyw, dy16), fill16(xw, x16), fill16(Ww, W16);
  for (std::size_t i = 0; i < dW0.size(); ++i) dW0[i] = static_cast<float>(uniform01(19, 1, i) - 0.5);
  std::vector<Named> plans = bf16_plans();
  plans.push_back({"fp32 OpenBLAS", {GemmProvider::OpenBLAS, false, false}});
  const float alpha = 0.61f;
  for (const Named& p : plans) {
    set_gemm_plan(p.plan);
    std::vector<float> dx(N * in, 0.f), dW = dW0;
    int blocks = 0;
    for (int r0 = 0; r0 < V; r0 += bw, ++blocks) {
      const int r1 = std::min(V, r0 + bw);
      linear_backward_bf16(dx.data(), dW.data() + r0 * in, nullptr, nullptr, dy16.data() + r0, alpha, nullptr,
                           x16.data(), nullptr, W16.data() + r0 * in, N, in, r1 - r0, r0 > 0, V);
    }
    ASSERT_NO_FATAL_FAILURE(expect_dx_near(dx, {}, alpha, dyw, Ww, N, in, V, blocks, std::string(p.name) + " blocks"));
    ASSERT_NO_FATAL_FAILURE(expect_dW_near(dW, dW0, alpha, dyw, xw, N, in, V, std::string(p.name) + " blocks"));
  }
  std::vector<float> dy(N * V), db(bw), dW(bw * in);
  EXPECT_THROW(linear_backward_bf16(nullptr, dW.data(), db.data(), dy.data(), nullptr, 1.0f, nullptr, x16.data(),
                                    nullptr, nullptr, N, in, bw, false, V),
               Error);
}

// The loss's forward with its gradient in bf16 against cross_entropy_forward followed by
// cross_entropy_backward (dloss = 1) and rounding: the same rows, the same operations, so the
// same bits; with label smoothing, ignored rows and a vocabulary that is no multiple of 16.
TEST(GemmEngine, CrossEntropyForwardGradBf16IsForwardThenBackwardRounded) {
  const int N = 23, V = 1003, ignore = 0;
  std::vector<float> logits(static_cast<std::size_t>(N) * V);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(12.0 * uniform01(14, 1, i) - 6.0);
  std::vector<int> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = n % 5 == 0 ? ignore : 1 + (n * 97) % (V - 1);
  for (float smoothing : {0.0f, 0.1f}) {
    std::vector<float> l1(N), s1(N), l2(N), s2(N), g(logits.size());
    std::vector<std::uint16_t> g16(logits.size(), 0xFFFF);
    std::int64_t c1 = -1, c2 = -1;
    const double sum1 = cross_entropy_forward_grad_bf16(l1.data(), s1.data(), g16.data(), logits.data(),
                                                        targets.data(), N, V, smoothing, ignore, &c1);
    const double sum2 = cross_entropy_forward<float>(l2.data(), s2.data(), logits.data(), targets.data(), N, V,
                                                     smoothing, ignore, &c2);
    cross_entropy_backward<float>(g.data(), logits.data(), s2.data(), targets.data(), N, V, smoothing, ignore, 1.0f);
    EXPECT_EQ(sum1, sum2);
    EXPECT_EQ(c1, c2);
    EXPECT_EQ(c1, N - (N + 4) / 5);
    for (int n = 0; n < N; ++n) {
      ASSERT_EQ(l1[n], l2[n]) << n;
      ASSERT_EQ(s1[n], s2[n]) << n;
    }
    for (std::size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g16[i], bf16_bits(g[i])) << "smoothing " << smoothing << " " << i;
  }
}

// gemm_strided_batched_mixed against gemm_strided_batched<float> on the widened operands, in every
// bf16 plan: each operand in fp32 or bf16, transposed or not, with attention's interleaved strides
// (heads as column slices of a wider row): the same rounded operands, so the same bits.
TEST(GemmEngine, MixedOperandBatchedGemmIsTheFp32EntryPointOnWidenedOperands) {
  PlanGuard guard;
  const int M = 9, N = 7, K = 5, H = 3, ld = 4 * H * 8;  // rows of 4*H*8 values, heads 8 apart
  std::vector<float> A(32 * ld), B(32 * ld), C0(M * N * H);
  std::uint64_t s = 5;
  auto fill = [&](std::vector<float>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(2.0 * uniform01(15, s, i) - 1.0);
    ++s;
  };
  fill(A), fill(B), fill(C0);
  std::vector<std::uint16_t> A16(A.size()), B16(B.size());
  std::vector<float> Aw(A.size()), Bw(B.size());
  for (std::size_t i = 0; i < A.size(); ++i) A16[i] = bf16_bits(A[i]), Aw[i] = round_bf16(A[i]);
  for (std::size_t i = 0; i < B.size(); ++i) B16[i] = bf16_bits(B[i]), Bw[i] = round_bf16(B[i]);
  for (const Named& p : bf16_plans()) {
    set_gemm_plan(p.plan);
    for (int mode = 0; mode < 16; ++mode) {
      const bool ta = mode & 1, tb = mode & 2, a16 = mode & 4, b16 = mode & 8;
      std::vector<float> C = C0, R = C0;
      gemm_strided_batched_mixed(ta, tb, M, N, K, 0.5f, a16 ? nullptr : A.data(), a16 ? A16.data() : nullptr, ld, 8,
                                 b16 ? nullptr : B.data(), b16 ? B16.data() : nullptr, ld, 8, 1.0f, C.data(), N, M * N,
                                 H);
      gemm_strided_batched<float>(ta, tb, M, N, K, 0.5f, a16 ? Aw.data() : A.data(), ld, 8, b16 ? Bw.data() : B.data(),
                                  ld, 8, 1.0f, R.data(), N, M * N, H);
      for (std::size_t i = 0; i < C.size(); ++i) ASSERT_EQ(C[i], R[i]) << p.name << " mode " << mode << " " << i;
    }
  }
}
