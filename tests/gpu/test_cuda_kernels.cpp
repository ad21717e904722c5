// CUDA kernels against the CPU reference kernels (th::cpu), one kernel at a time, on random
// inputs of several shapes: odd sizes (not multiples of 32), masked attention rows, ignored
// cross-entropy rows, accumulate-into-prefilled gradients, aliased outputs.
//
// Reference: th::cpu::<kernel><double> on the same inputs (the float inputs widened), so the
// measure is the GPU's own error, not the sum of two fp32 errors; exceptions are said per test.
// Error: normalised max error, max_i |gpu_i - ref_i| / max_i |ref_i| (NaN must meet NaN).
// Tolerances, by arithmetic:
//   fp32 kernels                          1e-5
//   fp32 GEMM on TF32 tensor cores        5e-3  (inputs cut to a 10-bit mantissa, 2^-11..2^-10 each)
//   bf16 GEMM, fp32 C (ref on the same    1e-4  (products exact, fp32 accumulation)
//     bf16-rounded inputs)
//   bf16 GEMM, bf16 C                     5e-3  (C rounded to bf16: half an ulp is up to 2^-8 = 3.9e-3)
//   sums returned in double               1e-10 relative (sum_squares: two summation orders of up to
//                                         1e7 doubles), 1e-5 (loss sum of fp32 losses)
//   dropout, conversions, sinusoidal      bit-identical to the CPU (th::cpu::<kernel><float>)
//
// Without a visible GPU every device test calls GTEST_SKIP(), and CTest reports the test as
// skipped (SKIP_REGULAR_EXPRESSION in tests/cmake/gpu.cmake). The checks of the error path and of
// argument validation need no device and always run.
//
// With TH_KERNEL_REPORT=FILE in the environment every check appends one line
// "kernel<TAB>case<TAB>error<TAB>tolerance<TAB>PASS|FAIL" (tests/gpu/run_gpu_checks.sh tabulates it).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"
#include "th/core/profiler.hpp"
#include "th/kernels/cuda.hpp"
#include "th/kernels/cuda_profile.hpp"

namespace th {
namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

constexpr double kTolFp32 = 1e-5;
constexpr double kTolTf32 = 5e-3;
constexpr double kTolBf16In = 1e-4;
constexpr double kTolBf16Out = 5e-3;
constexpr double kTolSumDouble = 1e-10;

// ---- device buffers ------------------------------------------------------------------------

template <typename T> class DeviceArray {
 public:
  explicit DeviceArray(std::size_t n) : n_(n) {
    if (n_) TH_CUDA_CHECK(cudaMalloc(&p_, n_ * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  void upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), n_);
    if (n_) TH_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    TH_CUDA_CHECK(cudaDeviceSynchronize());  // kernels run on the test's own stream
    std::vector<T> host(n_);
    if (n_) TH_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// ---- random inputs -------------------------------------------------------------------------

Vec normal(std::size_t n, std::uint64_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(mean, stddev);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

Vec uniform(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

std::vector<int> integers(std::size_t n, std::uint64_t seed, int lo, int hi) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

DVec widen(const Vec& v) { return DVec(v.begin(), v.end()); }

// ---- comparison and report -----------------------------------------------------------------

std::string shape(std::initializer_list<std::int64_t> dims) {
  std::string s;
  for (auto d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

void report(const std::string& kernel, const std::string& what, double err, double tol, bool pass) {
  std::printf("TH_KERNEL_CHECK %-24s %-40s err %.3e tol %.1e %s\n", kernel.c_str(), what.c_str(), err, tol,
              pass ? "PASS" : "FAIL");
  if (const char* path = std::getenv("TH_KERNEL_REPORT")) {
    if (FILE* f = std::fopen(path, "a")) {
      std::fprintf(f, "%s\t%s\t%.3e\t%.1e\t%s\n", kernel.c_str(), what.c_str(), err, tol, pass ? "PASS" : "FAIL");
      std::fclose(f);
    }
  }
}

// max |got - ref| / max |ref|; NaN must meet NaN and an infinity the same infinity.
template <typename G, typename R> double normalized_max_error(const std::vector<G>& got, const std::vector<R>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double max_ref = 0.0, max_diff = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    if (std::isnan(r) || std::isnan(g) || std::isinf(r) || std::isinf(g)) {
      const bool same = (std::isnan(r) && std::isnan(g)) || (std::isinf(r) && g == r);
      if (!same) return std::numeric_limits<double>::infinity();
      continue;
    }
    max_ref = std::max(max_ref, std::abs(r));
    max_diff = std::max(max_diff, std::abs(g - r));
  }
  return max_diff / (max_ref > 0.0 ? max_ref : 1.0);
}

template <typename G, typename R>
void expect_close(const std::string& kernel, const std::string& what, const std::vector<G>& got,
                  const std::vector<R>& ref, double tol) {
  const double err = normalized_max_error(got, ref);
  const bool pass = err <= tol;
  report(kernel, what, err, tol, pass);
  EXPECT_TRUE(pass) << kernel << " " << what << ": normalised max error " << err << " > " << tol;
}

void expect_scalar_close(const std::string& kernel, const std::string& what, double got, double ref, double rel_tol) {
  const double err = std::abs(got - ref) / std::max(std::abs(ref), 1e-300);
  const bool pass = got == ref || err <= rel_tol;
  report(kernel, what, got == ref ? 0.0 : err, rel_tol, pass);
  EXPECT_TRUE(pass) << kernel << " " << what << ": got " << got << ", reference " << ref;
}

template <typename T> std::uint64_t bits_of(T v) {
  static_assert(sizeof(T) <= 8, "");
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

// Bit-for-bit equality; the "error" reported is the number of differing elements.
template <typename T>
void expect_identical(const std::string& kernel, const std::string& what, const std::vector<T>& got,
                      const std::vector<T>& ref) {
  ASSERT_EQ(got.size(), ref.size());
  std::size_t diff = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (bits_of(got[i]) != bits_of(ref[i])) {
      if (!diff) first = i;
      ++diff;
    }
  report(kernel, what + " (elements differing)", static_cast<double>(diff), 0.0, diff == 0);
  if (diff == 0) return;
  ADD_FAILURE() << kernel << " " << what << ": " << diff << " elements differ, first at " << first << " (gpu bits 0x"
                << std::hex << bits_of(got[first]) << ", cpu 0x" << bits_of(ref[first]) << ")";
}

// ---- fixture -------------------------------------------------------------------------------

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device visible";
    TH_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

// Restores the TF32 switch whatever happens in a test.
struct Tf32Guard {
  explicit Tf32Guard(bool on) : saved(cuda::allow_tf32()) { cuda::set_allow_tf32(on); }
  ~Tf32Guard() { cuda::set_allow_tf32(saved); }
  bool saved;
};

// ---- GEMM ----------------------------------------------------------------------------------

struct GemmCase {
  int M, N, K;
};
const GemmCase kGemmCases[] = {{1, 1, 1}, {37, 53, 29}, {128, 96, 200}, {257, 129, 67}, {5, 7, 0}};

// Padded leading dimensions (+3) so strides are exercised; with beta == 0 C starts as NaN, which
// must not leak into the result (BLAS does not read C then), and the padding must stay as it was.
TEST_F(CudaKernels, GemmFp32AndTf32) {
  for (const bool tf32 : {false, true}) {
    Tf32Guard guard(tf32);
    for (const auto& c : kGemmCases) {
      if (tf32 && c.K == 0) continue;
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        for (const float beta : {0.0f, 0.7f}) {
          const float alpha = 1.3f;
          const int lda = (ta ? c.M : c.K) + 3, ldb = (tb ? c.K : c.N) + 3, ldc = c.N + 3;
          const std::size_t a_rows = ta ? c.K : c.M, b_rows = tb ? c.N : c.K;
          const Vec A = normal(a_rows * lda, 1), B = normal(b_rows * ldb, 2);
          Vec C = normal(static_cast<std::size_t>(c.M) * ldc, 3);
          if (beta == 0.0f) C.assign(C.size(), std::numeric_limits<float>::quiet_NaN());
          DVec ref = widen(C);
          cpu::gemm<double>(ta, tb, c.M, c.N, c.K, alpha, widen(A).data(), lda, widen(B).data(), ldb, beta,
                            ref.data(), ldc);
          DeviceArray<float> dA(A), dB(B), dC(C);
          cuda::gemm(ta, tb, c.M, c.N, c.K, alpha, dA.get(), lda, dB.get(), ldb, beta, dC.get(), ldc, stream_);
          expect_close(tf32 ? "gemm_tf32" : "gemm_fp32",
                       shape({c.M, c.N, c.K}) + (ta ? " Ta" : " Na") + (tb ? "Tb" : "Nb") + " beta=" +
                           std::to_string(beta).substr(0, 3),
                       dC.download(), ref, tf32 ? kTolTf32 : kTolFp32);
        }
      }
    }
  }
}

// bf16 operands: the reference multiplies the same bf16-rounded values in double.
TEST_F(CudaKernels, GemmBf16) {
  for (const auto& c : kGemmCases) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int lda = (ta ? c.M : c.K) + 1, ldb = (tb ? c.K : c.N) + 1, ldc = c.N + 1;
      const std::size_t a_rows = ta ? c.K : c.M, b_rows = tb ? c.N : c.K;
      const Vec A = normal(a_rows * lda, 11), B = normal(b_rows * ldb, 12);
      std::vector<std::uint16_t> A16(A.size()), B16(B.size());
      cpu::fp32_to_bf16(A16.data(), A.data(), static_cast<std::int64_t>(A.size()));
      cpu::fp32_to_bf16(B16.data(), B.data(), static_cast<std::int64_t>(B.size()));
      Vec Ar(A.size()), Br(B.size());
      cpu::bf16_to_fp32(Ar.data(), A16.data(), static_cast<std::int64_t>(A.size()));
      cpu::bf16_to_fp32(Br.data(), B16.data(), static_cast<std::int64_t>(B.size()));
      DeviceArray<std::uint16_t> dA(A16), dB(B16);
      const auto* a = reinterpret_cast<const __nv_bfloat16*>(dA.get());
      const auto* b = reinterpret_cast<const __nv_bfloat16*>(dB.get());
      const std::string what = shape({c.M, c.N, c.K}) + (ta ? " Ta" : " Na") + (tb ? "Tb" : "Nb");
      const float alpha = 0.9f, beta = 0.5f;

      // fp32 C.
      const Vec C = normal(static_cast<std::size_t>(c.M) * ldc, 13);
      DVec ref = widen(C);
      cpu::gemm<double>(ta, tb, c.M, c.N, c.K, alpha, widen(Ar).data(), lda, widen(Br).data(), ldb, beta, ref.data(),
                        ldc);
      DeviceArray<float> dC(C);
      cuda::gemm_bf16(ta, tb, c.M, c.N, c.K, alpha, a, lda, b, ldb, beta, dC.get(), ldc, stream_);
      expect_close("gemm_bf16_f32out", what, dC.download(), ref, kTolBf16In);

      // bf16 C (input C bf16 too).
      std::vector<std::uint16_t> C16(C.size());
      cpu::fp32_to_bf16(C16.data(), C.data(), static_cast<std::int64_t>(C.size()));
      Vec Cr(C.size());
      cpu::bf16_to_fp32(Cr.data(), C16.data(), static_cast<std::int64_t>(C.size()));
      DVec ref16 = widen(Cr);
      cpu::gemm<double>(ta, tb, c.M, c.N, c.K, alpha, widen(Ar).data(), lda, widen(Br).data(), ldb, beta,
                        ref16.data(), ldc);
      DeviceArray<std::uint16_t> dC16(C16);
      cuda::gemm_bf16(ta, tb, c.M, c.N, c.K, alpha, a, lda, b, ldb, beta,
                      reinterpret_cast<__nv_bfloat16*>(dC16.get()), ldc, stream_);
      const auto got16 = dC16.download();
      Vec got(got16.size());
      cpu::bf16_to_fp32(got.data(), got16.data(), static_cast<std::int64_t>(got.size()));
      expect_close("gemm_bf16_bf16out", what, got, ref16, kTolBf16Out);
    }
  }
}

// ---- linear --------------------------------------------------------------------------------

TEST_F(CudaKernels, Linear) {
  struct Case {
    std::int64_t N;
    int in, out;
  };
  for (const Case c : {Case{1, 7, 5}, Case{67, 96, 130}, Case{256, 512, 384}, Case{0, 8, 8}}) {
    for (const bool with_bias : {true, false}) {
      for (const bool acc_dx : {false, true}) {
        const std::string what = shape({c.N, c.in, c.out}) + (with_bias ? " bias" : " nobias") +
                                 (acc_dx ? " dx+=" : " dx=");
        const Vec x = normal(c.N * c.in, 21), W = normal(static_cast<std::size_t>(c.out) * c.in, 22, 0.0f, 0.1f);
        const Vec b = normal(c.out, 23), dy = normal(c.N * c.out, 24);
        const Vec dx0 = normal(c.N * c.in, 25), dW0 = normal(W.size(), 26), db0 = normal(c.out, 27);
        DVec y_ref(c.N * c.out), dx_ref = widen(dx0), dW_ref = widen(dW0), db_ref = widen(db0);
        cpu::linear_forward<double>(y_ref.data(), widen(x).data(), widen(W).data(),
                                    with_bias ? widen(b).data() : nullptr, c.N, c.in, c.out);
        cpu::linear_backward<double>(dx_ref.data(), dW_ref.data(), with_bias ? db_ref.data() : nullptr,
                                     widen(dy).data(), widen(x).data(), widen(W).data(), c.N, c.in, c.out, acc_dx);
        DeviceArray<float> dx_(x), dW_(W), db_(b), ddy(dy), y(c.N * c.out), gx(dx0), gW(dW0), gb(db0);
        cuda::linear_forward(y.get(), dx_.get(), dW_.get(), with_bias ? db_.get() : nullptr, c.N, c.in, c.out,
                             stream_);
        cuda::linear_backward(gx.get(), gW.get(), with_bias ? gb.get() : nullptr, ddy.get(), dx_.get(), dW_.get(),
                              c.N, c.in, c.out, acc_dx, stream_);
        expect_close("linear_forward", what, y.download(), y_ref, kTolFp32);
        expect_close("linear_backward.dx", what, gx.download(), dx_ref, kTolFp32);
        expect_close("linear_backward.dW", what, gW.download(), dW_ref, kTolFp32);
        expect_close("linear_backward.db", what, gb.download(), db_ref, kTolFp32);
      }
    }
  }
}

// ---- bias, activations, elementwise --------------------------------------------------------

struct RowsCols {
  std::int64_t N;
  int D;
};
// (20000, 7): 64 row chunks in the column sums.
const RowsCols kRowCols[] = {{1, 1}, {37, 65}, {1000, 768}, {4099, 33}, {20000, 7}};

TEST_F(CudaKernels, BiasAddAndGrad) {
  for (const auto& c : kRowCols) {
    const std::string what = shape({c.N, c.D});
    const Vec y0 = normal(c.N * c.D, 31), b = normal(c.D, 32), dy = normal(c.N * c.D, 33), db0 = normal(c.D, 34);
    DVec y_ref = widen(y0), db_ref = widen(db0);
    cpu::bias_add<double>(y_ref.data(), widen(b).data(), c.N, c.D);
    cpu::bias_grad<double>(db_ref.data(), widen(dy).data(), c.N, c.D);
    DeviceArray<float> y(y0), db(b), ddy(dy), gdb(db0);
    cuda::bias_add(y.get(), db.get(), c.N, c.D, stream_);
    cuda::bias_grad(gdb.get(), ddy.get(), c.N, c.D, stream_);
    expect_close("bias_add", what, y.download(), y_ref, kTolFp32);
    expect_close("bias_grad", what, gdb.download(), db_ref, kTolFp32);
  }
}

TEST_F(CudaKernels, BiasActivation) {
  const RowsCols cases[] = {{1, 1}, {37, 65}, {513, 3072}, {4099, 33}};
  for (const auto act : {cpu::Activation::ReLU, cpu::Activation::GELU}) {
    const std::string name = act == cpu::Activation::ReLU ? "bias_relu" : "bias_gelu";
    for (const auto& c : cases) {
      for (const bool alias : {false, true}) {
        const std::string what = shape({c.N, c.D}) + (alias ? " dpre=dy" : "");
        const Vec pre0 = normal(c.N * c.D, 41, 0.0f, 2.0f), b = normal(c.D, 42), dy = normal(c.N * c.D, 43);
        const Vec db0 = normal(c.D, 44);
        DVec pre_ref = widen(pre0), y_ref(pre0.size()), dpre_ref(pre0.size()), db_ref = widen(db0);
        cpu::bias_act_forward<double>(y_ref.data(), pre_ref.data(), widen(b).data(), c.N, c.D, act);
        cpu::bias_act_backward<double>(dpre_ref.data(), db_ref.data(), widen(dy).data(), pre_ref.data(), c.N, c.D,
                                       act);
        DeviceArray<float> pre(pre0), y(pre0.size()), db(b), ddy(dy), dpre(pre0.size()), gdb(db0);
        cuda::bias_act_forward(y.get(), pre.get(), db.get(), c.N, c.D, act, stream_);
        float* dpre_out = alias ? ddy.get() : dpre.get();
        cuda::bias_act_backward(dpre_out, gdb.get(), ddy.get(), pre.get(), c.N, c.D, act, stream_);
        expect_close(name + "_forward.y", what, y.download(), y_ref, kTolFp32);
        expect_close(name + "_forward.pre", what, pre.download(), pre_ref, kTolFp32);
        expect_close(name + "_backward.dpre", what, alias ? ddy.download() : dpre.download(), dpre_ref, kTolFp32);
        expect_close(name + "_backward.db", what, gdb.download(), db_ref, kTolFp32);
      }
    }
  }
}

TEST_F(CudaKernels, Elementwise) {
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{1000003}}) {
    const std::string what = std::to_string(n);
    const Vec a = normal(n, 51), b = normal(n, 52);
    DVec sum_ref(n), inplace_ref = widen(a), scaled_ref = widen(a);
    cpu::add<double>(sum_ref.data(), widen(a).data(), widen(b).data(), n);
    cpu::add_inplace<double>(inplace_ref.data(), widen(b).data(), n);
    cpu::scale_inplace<double>(scaled_ref.data(), 0.37f, n);

    DeviceArray<float> da(a), db(b), out(n);
    cuda::add(out.get(), da.get(), db.get(), n, stream_);
    expect_close("add", what, out.download(), sum_ref, kTolFp32);
    DeviceArray<float> alias(a);
    cuda::add(alias.get(), alias.get(), db.get(), n, stream_);  // out aliases a
    expect_close("add", what + " out=a", alias.download(), sum_ref, kTolFp32);
    cuda::add_inplace(da.get(), db.get(), n, stream_);
    expect_close("add_inplace", what, da.download(), inplace_ref, kTolFp32);
    DeviceArray<float> ds(a);
    cuda::scale_inplace(ds.get(), 0.37f, n, stream_);
    expect_close("scale_inplace", what, ds.download(), scaled_ref, kTolFp32);
  }
}

TEST_F(CudaKernels, SumSquares) {
  for (const std::int64_t n : {std::int64_t{0}, std::int64_t{1}, std::int64_t{1000}, std::int64_t{1000003},
                               std::int64_t{10000019}}) {
    const Vec a = normal(n, 61, 0.5f, 3.0f);
    const double ref = cpu::sum_squares<double>(widen(a).data(), n);
    DeviceArray<float> da(a);
    const double got = cuda::sum_squares(da.get(), n, stream_);
    expect_scalar_close("sum_squares", std::to_string(n), got, ref, kTolSumDouble);
    // Asynchronous form, accumulating twice into device memory.
    DeviceArray<double> total(std::vector<double>{1.5});
    cuda::sum_squares_async(total.get(), da.get(), n, true, stream_);
    cuda::sum_squares_async(total.get(), da.get(), n, true, stream_);
    expect_scalar_close("sum_squares_async", std::to_string(n) + " +=,+=", total.download()[0], 1.5 + 2 * ref,
                        kTolSumDouble);
  }
}

// ---- LayerNorm -----------------------------------------------------------------------------

TEST_F(CudaKernels, LayerNorm) {
  const RowsCols cases[] = {{1, 8}, {37, 65}, {300, 768}, {2049, 1000}, {20000, 33}};
  for (const auto& c : cases) {
    const std::string what = shape({c.N, c.D});
    const float eps = 1e-5f;
    // Offset mean (3) so a one-pass variance would lose digits.
    const Vec x = normal(c.N * c.D, 71, 3.0f, 2.0f), gamma = normal(c.D, 72, 1.0f, 0.2f), beta = normal(c.D, 73);
    const Vec dy = normal(c.N * c.D, 74), dg0 = normal(c.D, 75), db0 = normal(c.D, 76);
    DVec y_ref(x.size()), mean_ref(c.N), rstd_ref(c.N), dx_ref(x.size()), dg_ref = widen(dg0), db_ref = widen(db0);
    cpu::layernorm_forward<double>(y_ref.data(), mean_ref.data(), rstd_ref.data(), widen(x).data(),
                                   widen(gamma).data(), widen(beta).data(), c.N, c.D, eps);
    cpu::layernorm_backward<double>(dx_ref.data(), dg_ref.data(), db_ref.data(), widen(dy).data(), widen(x).data(),
                                    widen(gamma).data(), mean_ref.data(), rstd_ref.data(), c.N, c.D);
    DeviceArray<float> dx_in(x), dgamma_in(gamma), dbeta_in(beta), ddy(dy), y(x.size()), mean(c.N), rstd(c.N);
    DeviceArray<float> dx(x.size()), dg(dg0), db(db0);
    cuda::layernorm_forward(y.get(), mean.get(), rstd.get(), dx_in.get(), dgamma_in.get(), dbeta_in.get(), c.N, c.D,
                            eps, stream_);
    cuda::layernorm_backward(dx.get(), dg.get(), db.get(), ddy.get(), dx_in.get(), dgamma_in.get(), mean.get(),
                             rstd.get(), c.N, c.D, stream_);
    expect_close("layernorm_forward.y", what, y.download(), y_ref, kTolFp32);
    expect_close("layernorm_forward.mean", what, mean.download(), mean_ref, kTolFp32);
    expect_close("layernorm_forward.rstd", what, rstd.download(), rstd_ref, kTolFp32);
    expect_close("layernorm_backward.dx", what, dx.download(), dx_ref, kTolFp32);
    expect_close("layernorm_backward.dgamma", what, dg.download(), dg_ref, kTolFp32);
    expect_close("layernorm_backward.dbeta", what, db.download(), db_ref, kTolFp32);
  }
}

// ---- attention softmax ---------------------------------------------------------------------

TEST_F(CudaKernels, AttentionSoftmax) {
  struct Case {
    int B, H, Tq, Tk;
    std::vector<int> key_len;  // empty: no key mask
    bool causal;
    int q_offset;
  };
  const Case cases[] = {
      {2, 3, 5, 7, {7, 3}, false, 0},
      {3, 4, 33, 65, {0, 65, 100}, false, 0},  // a batch row with no keys; key_len > Tk
      {2, 2, 33, 65, {}, true, 0},
      {2, 2, 17, 40, {40, 25}, true, 40 - 17},  // decoding: queries are the last Tq positions
      {1, 2, 9, 9, {}, true, -3},               // the first 3 query rows see no key at all
      {2, 2, 128, 1000, {1000, 999}, false, 0},
      {1, 1, 3, 4096, {}, false, 0},
  };
  const float scale = 0.125f;
  for (const auto& c : cases) {
    std::string what = shape({c.B, c.H, c.Tq, c.Tk}) + (c.key_len.empty() ? "" : " keylen") +
                       (c.causal ? " causal@" + std::to_string(c.q_offset) : "");
    const std::size_t n = static_cast<std::size_t>(c.B) * c.H * c.Tq * c.Tk;
    const Vec S = normal(n, 81, 0.0f, 3.0f);
    DVec ref = widen(S);
    cpu::attention_softmax_forward<double>(ref.data(), c.B, c.H, c.Tq, c.Tk,
                                           c.key_len.empty() ? nullptr : c.key_len.data(), c.causal, c.q_offset,
                                           scale);
    DeviceArray<float> P(S);
    DeviceArray<int> kl(c.key_len);
    cuda::attention_softmax_forward(P.get(), c.B, c.H, c.Tq, c.Tk, c.key_len.empty() ? nullptr : kl.get(), c.causal,
                                    c.q_offset, scale, stream_);
    expect_close("attention_softmax_forward", what, P.download(), ref, kTolFp32);
  }
}

TEST_F(CudaKernels, SoftmaxBackward) {
  const RowsCols cases[] = {{1, 1}, {37, 65}, {256, 1000}, {7, 4096}};
  for (const auto& c : cases) {
    for (const bool alias : {false, true}) {
      const std::string what = shape({c.N, c.D}) + (alias ? " dS=dP" : "");
      const float scale = 0.125f;
      // P: proper rows of probabilities.
      Vec P = normal(c.N * c.D, 91);
      cpu::attention_softmax_forward<float>(P.data(), 1, 1, static_cast<int>(c.N), c.D, nullptr, false, 0, 1.0f);
      const Vec dP = normal(P.size(), 92);
      DVec ref(P.size());
      cpu::softmax_backward<double>(ref.data(), widen(dP).data(), widen(P).data(), c.N, c.D, scale);
      DeviceArray<float> dp(dP), p(P), ds(P.size());
      cuda::softmax_backward(alias ? dp.get() : ds.get(), dp.get(), p.get(), c.N, c.D, scale, stream_);
      expect_close("softmax_backward", what, alias ? dp.download() : ds.download(), ref, kTolFp32);
    }
  }
}

// ---- embeddings ----------------------------------------------------------------------------

TEST_F(CudaKernels, Embedding) {
  struct Case {
    int B, L, D, V;
  };
  for (const Case c : {Case{1, 1, 1, 1}, Case{3, 17, 65, 50}, Case{4, 128, 768, 1000}}) {
    const std::string what = shape({c.B, c.L, c.D}) + " V=" + std::to_string(c.V);
    const std::int64_t N = static_cast<std::int64_t>(c.B) * c.L;
    const float scale = std::sqrt(static_cast<float>(c.D));
    const std::vector<int> tokens = integers(N, 101, 0, c.V - 1);  // small V: many repeats
    const Vec table = normal(static_cast<std::size_t>(c.V) * c.D, 102);
    Vec pe(static_cast<std::size_t>(c.L) * c.D);
    cpu::sinusoidal_table<float>(pe.data(), c.L, c.D);
    const Vec dy = normal(N * c.D, 103), dtable0 = normal(table.size(), 104);
    DVec y_ref(N * c.D), dtable_ref = widen(dtable0);
    cpu::embedding_forward<double>(y_ref.data(), tokens.data(), widen(table).data(), widen(pe).data(), c.B, c.L, c.D,
                                   scale);
    cpu::embedding_backward<double>(dtable_ref.data(), tokens.data(), widen(dy).data(), N, c.D, scale);
    DeviceArray<int> tok(tokens);
    DeviceArray<float> tab(table), dpe(pe), y(N * c.D), ddy(dy), dtab(dtable0);
    cuda::embedding_forward(y.get(), tok.get(), tab.get(), dpe.get(), c.B, c.L, c.D, scale, stream_);
    cuda::embedding_backward(dtab.get(), tok.get(), ddy.get(), N, c.D, scale, stream_);
    expect_close("embedding_forward", what, y.download(), y_ref, kTolFp32);
    expect_close("embedding_backward", what, dtab.download(), dtable_ref, kTolFp32);
  }
}

TEST_F(CudaKernels, SinusoidalTableIsBitIdentical) {
  for (const auto& c : {RowsCols{1, 1}, RowsCols{3, 2}, RowsCols{17, 65}, RowsCols{4096, 768}}) {
    const int L = static_cast<int>(c.N);
    Vec ref(static_cast<std::size_t>(L) * c.D);
    cpu::sinusoidal_table<float>(ref.data(), L, c.D);
    DeviceArray<float> pe(ref.size());
    cuda::sinusoidal_table(pe.get(), L, c.D, stream_);
    expect_identical("sinusoidal_table", shape({L, c.D}), pe.download(), ref);
  }
}

// ---- cross-entropy -------------------------------------------------------------------------

TEST_F(CudaKernels, CrossEntropy) {
  struct Case {
    std::int64_t N;
    int V;
    float smoothing;
    int ignored_every;  // every k-th row gets the ignore index; 1: all rows
  };
  const int ignore = -100;
  const Case cases[] = {{5, 7, 0.0f, 3}, {33, 8000, 0.1f, 4}, {64, 50257, 0.1f, 5}, {17, 32000, 0.0f, 2},
                        {6, 1000, 0.1f, 1}};
  for (const auto& c : cases) {
    for (const bool alias : {false, true}) {
      const std::string what = shape({c.N, c.V}) + " eps=" + std::to_string(c.smoothing).substr(0, 3) +
                               (alias ? " dz=z" : "");
      const Vec logits = normal(c.N * c.V, 111, 0.0f, 2.0f);
      std::vector<int> targets = integers(c.N, 112, 0, c.V - 1);
      for (std::int64_t n = 0; n < c.N; n += c.ignored_every) targets[n] = ignore;
      DVec losses_ref(c.N), lse_ref(c.N), dlogits_ref(logits.size());
      std::int64_t count_ref = -1;
      const double sum_ref = cpu::cross_entropy_forward<double>(losses_ref.data(), lse_ref.data(),
                                                                widen(logits).data(), targets.data(), c.N, c.V,
                                                                c.smoothing, ignore, &count_ref);
      const float dloss = 1.0f / static_cast<float>(std::max<std::int64_t>(count_ref, 1));
      cpu::cross_entropy_backward<double>(dlogits_ref.data(), widen(logits).data(), lse_ref.data(), targets.data(),
                                          c.N, c.V, c.smoothing, ignore, dloss);

      DeviceArray<float> z(logits), losses(c.N), lse(c.N), dz(logits.size());
      DeviceArray<int> t(targets);
      std::int64_t count = -1;
      const double sum = cuda::cross_entropy_forward(losses.get(), lse.get(), z.get(), t.get(), c.N, c.V,
                                                     c.smoothing, ignore, &count, stream_);
      cuda::cross_entropy_backward(alias ? z.get() : dz.get(), z.get(), lse.get(), t.get(), c.N, c.V, c.smoothing,
                                   ignore, dloss, stream_);
      expect_close("cross_entropy_forward.loss", what, losses.download(), losses_ref, kTolFp32);
      expect_close("cross_entropy_forward.lse", what, lse.download(), lse_ref, kTolFp32);
      expect_scalar_close("cross_entropy_forward.sum", what, sum, sum_ref, kTolFp32);
      EXPECT_EQ(count, count_ref) << what;
      report("cross_entropy_forward.count", what, static_cast<double>(std::abs(count - count_ref)), 0.0,
             count == count_ref);
      expect_close("cross_entropy_backward", what, alias ? z.download() : dz.download(), dlogits_ref, kTolFp32);
    }
  }
}

// ---- dropout -------------------------------------------------------------------------------

// Reference: th::cpu::dropout_*<float>, compared bit for bit (mask and values). x has no zeros,
// so the zeros of y are exactly the dropped elements.
TEST_F(CudaKernels, DropoutIsBitIdentical) {
  const std::uint64_t seed = 0x1234567890ABCDEFULL;
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{(1 << 20) + 7}}) {
    Vec x = uniform(n, 121, 0.5f, 1.5f);
    for (std::size_t i = 0; i < x.size(); i += 2) x[i] = -x[i];
    const Vec f = normal(n, 122);
    for (const float p : {0.0f, 0.1f, 0.5f, 0.9f, 1.0f}) {
      for (const std::uint64_t stream_id : {std::uint64_t{7}, std::uint64_t{1000000000000ULL}}) {
        const std::string what = std::to_string(n) + " p=" + std::to_string(p).substr(0, 3) + " s=" +
                                 std::to_string(stream_id);
        Vec y_ref(n), r_ref(n);
        cpu::dropout_forward<float>(y_ref.data(), x.data(), n, p, seed, stream_id);
        cpu::dropout_add<float>(r_ref.data(), x.data(), f.data(), n, p, seed, stream_id);
        DeviceArray<float> dx(x), df(f), y(n), r(n), inplace(x);
        cuda::dropout_forward(y.get(), dx.get(), n, p, seed, stream_id, stream_);
        cuda::dropout_add(r.get(), dx.get(), df.get(), n, p, seed, stream_id, stream_);
        cuda::dropout_forward(inplace.get(), inplace.get(), n, p, seed, stream_id, stream_);
        const Vec y_got = y.download();
        std::vector<std::uint8_t> mask_got(n), mask_ref(n);
        for (std::int64_t i = 0; i < n; ++i) {
          mask_got[i] = y_got[i] != 0.0f;
          mask_ref[i] = cpu::dropout_uniform(seed, stream_id, static_cast<std::uint64_t>(i)) >= p;
        }
        expect_identical("dropout_mask", what, mask_got, mask_ref);
        expect_identical("dropout_forward", what, y_got, y_ref);
        expect_identical("dropout_forward", what + " y=x", inplace.download(), y_ref);
        expect_identical("dropout_add", what, r.download(), r_ref);
      }
    }
  }
}

// ---- AdamW ---------------------------------------------------------------------------------

// Reference: th::cpu::adamw_update<float> (its float constants, e.g. 1 - 0.999f, differ from the
// double ones by ~1e-5 relative, which a double reference would count as error).
TEST_F(CudaKernels, AdamW) {
  const std::int64_t n = 1000003;
  Vec p = normal(n, 131), m = normal(n, 132, 0.0f, 0.01f), v = uniform(n, 133, 0.0f, 1e-3f);
  DeviceArray<float> dp(p), dm(m), dv(v);
  for (const std::int64_t t : {std::int64_t{1}, std::int64_t{2}, std::int64_t{10}, std::int64_t{1000}}) {
    const Vec g = normal(n, 134 + static_cast<std::uint64_t>(t), 0.0f, 0.1f);
    DeviceArray<float> dg(g);
    cpu::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.999, 1e-8, 0.01, t);
    cuda::adamw_update(dp.get(), dg.get(), dm.get(), dv.get(), n, 1e-3, 0.9, 0.999, 1e-8, 0.01, t, stream_);
    const std::string what = std::to_string(n) + " t=" + std::to_string(t);
    expect_close("adamw_update.p", what, dp.download(), p, kTolFp32);
    expect_close("adamw_update.m", what, dm.download(), m, kTolFp32);
    expect_close("adamw_update.v", what, dv.download(), v, kTolFp32);
  }
}

// ---- conversions ---------------------------------------------------------------------------

float float_of_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Special values (signed zeros, subnormals, ties, the fp16 overflow edge, inf, NaNs with payloads)
// plus random bit patterns; every 16-bit pattern for the widening conversions.
TEST_F(CudaKernels, ConversionsAreBitIdentical) {
  const std::uint32_t specials[] = {
      0x00000000u, 0x80000000u, 0x3F800000u, 0xBF800000u, 0x00000001u, 0x807FFFFFu, 0x00800000u,
      0x3F808000u, 0x3F818000u, 0x3F80C000u,                // bf16 ties to even (down, up) and above
      0x33000000u, 0x33000001u, 0x32FFFFFFu, 0x33800000u,   // around the smallest fp16 subnormal
      0x387FC000u, 0x387FE000u, 0x38800000u,                // fp16 subnormal/normal edge
      0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x47800000u,   // 65504, below/at 65520, 65536
      0x7F7FFFFFu, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0x7FBFFFFFu};
  Vec x;
  for (auto s : specials) x.push_back(float_of_bits(s));
  std::mt19937_64 gen(141);
  for (int i = 0; i < (1 << 20); ++i) x.push_back(float_of_bits(static_cast<std::uint32_t>(gen())));
  const auto n = static_cast<std::int64_t>(x.size());
  std::vector<std::uint16_t> bf_ref(n), h_ref(n);
  cpu::fp32_to_bf16(bf_ref.data(), x.data(), n);
  cpu::fp32_to_fp16(h_ref.data(), x.data(), n);
  DeviceArray<float> dx(x);
  DeviceArray<std::uint16_t> bf(n), h(n);
  cuda::fp32_to_bf16(bf.get(), dx.get(), n, stream_);
  cuda::fp32_to_fp16(h.get(), dx.get(), n, stream_);
  expect_identical("fp32_to_bf16", std::to_string(n) + " values", bf.download(), bf_ref);
  expect_identical("fp32_to_fp16", std::to_string(n) + " values", h.download(), h_ref);

  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  Vec from_bf_ref(65536), from_h_ref(65536);
  cpu::bf16_to_fp32(from_bf_ref.data(), all.data(), 65536);
  cpu::fp16_to_fp32(from_h_ref.data(), all.data(), 65536);
  DeviceArray<std::uint16_t> dall(all);
  DeviceArray<float> from_bf(65536), from_h(65536);
  cuda::bf16_to_fp32(from_bf.get(), dall.get(), 65536, stream_);
  cuda::fp16_to_fp32(from_h.get(), dall.get(), 65536, stream_);
  expect_identical("bf16_to_fp32", "all 65536 patterns", from_bf.download(), from_bf_ref);
  expect_identical("fp16_to_fp32", "all 65536 patterns", from_h.download(), from_h_ref);
}

// ---- no device needed ----------------------------------------------------------------------

TEST(CudaRuntime, DeviceAvailableReturnsWithoutAborting) {
  const bool available = cuda::device_available();
  std::printf("CUDA device visible: %s\n", available ? "yes" : "no");
  EXPECT_EQ(available, cuda::device_available());
}

TEST(CudaRuntime, CheckedCallsThrowWithCallFileAndRank) {
  try {
    TH_CUDA_CHECK(cudaSetDevice(-1));  // fails with a device (invalid ordinal) and without (no driver)
    ADD_FAILURE() << "cudaSetDevice(-1) did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cudaSetDevice(-1)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_cuda_kernels.cpp"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
  }
  try {
    TH_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    ADD_FAILURE() << "TH_CUBLAS_CHECK did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
  }
}

// Launchers check their arguments before touching the device.
TEST(CudaRuntime, LaunchersRejectBadArguments) {
  float host[16] = {};
  float* p = host;  // never dereferenced: the checks throw first
  EXPECT_THROW(cuda::gemm(false, false, 4, 4, 4, 1.0f, p, 2, p, 4, 0.0f, p, 4, nullptr), Error);  // lda < K
  EXPECT_THROW(cuda::gemm(true, false, 4, 4, 4, 1.0f, p, 4, p, 4, 0.0f, p, 3, nullptr), Error);   // ldc < N
  EXPECT_THROW(cuda::layernorm_backward(p, p, p, p, p, p, p, p, 2, 4, nullptr), Error);           // dx aliases dy
  EXPECT_THROW(cuda::attention_softmax_forward(p, 1, 1, 1, 0, nullptr, false, 0, 1.0f, nullptr), Error);
  EXPECT_THROW(cuda::adamw_update(p, p, p, p, 4, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, nullptr), Error);  // t = 0
}

// ---- the profiler on the device: cudaEvent pairs on the device timeline, NVTX ranges --------

TEST_F(CudaKernels, DeviceTimelineRecordsKernelsInHostTimeOnTheirTrack) {
  Profiler p;
  p.configure(true, 1, 1);
  p.set_step(1);  // the window is open
  cuda::install_nvtx_ranges(p);
  cuda::DeviceTimeline timeline(p, "device: test");
  const int n = 1024;
  DeviceArray<float> A(std::vector<float>(n * n, 0.5f)), C(std::vector<float>(n * n, 0.0f));
  const double host_before = Profiler::now_us();
  std::int64_t ids[3];
  {
    ProfileScope scope(p, "host/launch", Category::Compute);  // also an NVTX range
    for (std::int64_t& id : ids) {
      id = timeline.begin(stream_, "gemm", Category::Compute, {{"n", n}});
      cuda::gemm(false, false, n, n, n, 1.0f, A.get(), n, A.get(), n, 0.0f, C.get(), n, stream_);
      timeline.end(id, stream_);
    }
  }
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[2], 2);
  EXPECT_EQ(timeline.collect(true), 3);
  const double host_after = Profiler::now_us();
  EXPECT_EQ(timeline.pending(), 0u);
  std::vector<ProfileEvent> device;
  for (const ProfileEvent& e : p.events())
    if (p.track_name(e.track) == "device: test") device.push_back(e);
  ASSERT_EQ(device.size(), 3u);
  for (std::size_t k = 0; k < device.size(); ++k) {
    const ProfileEvent& e = device[k];
    EXPECT_EQ(p.name(e.name), "gemm");
    EXPECT_GT(e.end_us, e.begin_us) << "a 1024^3 GEMM takes time";
    // In the host clock: inside [before launch - sync slack, after collection].
    EXPECT_GT(e.begin_us, host_before - 50.0);
    EXPECT_LT(e.end_us, host_after + 50.0);
    if (k > 0) {
      EXPECT_GE(e.begin_us, device[k - 1].end_us - 1.0) << "one stream: in order";
    }
  }
  p.set_step(2);  // closes the window: nothing more is recorded
  EXPECT_EQ(timeline.begin(stream_, "gemm", Category::Compute), -1);
}

}  // namespace
}  // namespace th

// ---- what the CUDA backend added (issue #17) ---------------------------------------------------
namespace th {
namespace {

// Restores the GEMM operand type whatever happens in a test.
struct OperandsGuard {
  explicit OperandsGuard(cuda::GemmOperands t) : saved(cuda::gemm_operands()) { cuda::set_gemm_operands(t); }
  ~OperandsGuard() { cuda::set_gemm_operands(saved); }
  cuda::GemmOperands saved;
};

Vec rounded_bf16(const Vec& x) {
  Vec r = x;
  cpu::round_to_bf16(r.data(), static_cast<std::int64_t>(r.size()));
  return r;
}
Vec rounded_fp16(const Vec& x) {
  Vec r = x;
  cpu::round_to_fp16(r.data(), static_cast<std::int64_t>(r.size()));
  return r;
}

// Attention's batched GEMMs (head stride in the operands, padded leading dimensions), fp32 and
// with bf16 / fp16 operands (precision%dtype = 'bf16' / 'fp16': the reference multiplies the
// rounded values). They all run on cuBLASLt (gemm_counts).
TEST_F(CudaKernels, GemmStridedBatchedFp32AndHalfOperands) {
  const int batch = 3;
  const cuda::GemmCounts before = cuda::gemm_counts();
  for (const cuda::GemmOperands type : {cuda::GemmOperands::F32, cuda::GemmOperands::BF16, cuda::GemmOperands::F16}) {
    OperandsGuard guard(type);
    const bool half = type != cuda::GemmOperands::F32;
    auto rounded = [&](const Vec& x) {
      return type == cuda::GemmOperands::BF16 ? rounded_bf16(x) : type == cuda::GemmOperands::F16 ? rounded_fp16(x) : x;
    };
    const char* name = type == cuda::GemmOperands::BF16  ? "gemm_batched_bf16_operands"
                       : type == cuda::GemmOperands::F16 ? "gemm_batched_fp16_operands"
                                                         : "gemm_batched_fp32";
    for (const auto& c : kGemmCases) {
      if (c.K == 0) continue;
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        const int lda = (ta ? c.M : c.K) + 2, ldb = (tb ? c.K : c.N) + 2, ldc = c.N + 2;
        const std::int64_t sa = static_cast<std::int64_t>(ta ? c.K : c.M) * lda + 5;
        const std::int64_t sb = static_cast<std::int64_t>(tb ? c.N : c.K) * ldb + 7;
        const std::int64_t sc = static_cast<std::int64_t>(c.M) * ldc + 3;
        const Vec A = normal(static_cast<std::size_t>(sa * batch), 21), B = normal(static_cast<std::size_t>(sb * batch), 22);
        const Vec C = normal(static_cast<std::size_t>(sc * batch), 23);
        DVec ref = widen(C);
        cpu::gemm_strided_batched<double>(ta, tb, c.M, c.N, c.K, 0.8, widen(rounded(A)).data(), lda, sa,
                                          widen(rounded(B)).data(), ldb, sb, 0.25, ref.data(), ldc, sc, batch);
        DeviceArray<float> dA(A), dB(B), dC(C);
        cuda::gemm_strided_batched(ta, tb, c.M, c.N, c.K, 0.8f, dA.get(), lda, sa, dB.get(), ldb, sb, 0.25f, dC.get(),
                                   ldc, sc, batch, stream_);
        expect_close(name, shape({batch, c.M, c.N, c.K}) + (ta ? " Ta" : " Na") + (tb ? "Tb" : "Nb"), dC.download(),
                     ref, half ? kTolBf16In : kTolFp32);
      }
    }
  }
  const cuda::GemmCounts after = cuda::gemm_counts();
  std::printf("TH_KERNEL_CHECK GEMMs: %lld through cuBLASLt, %lld through cublasGemmEx\n",
              static_cast<long long>(after.lt - before.lt), static_cast<long long>(after.fallback - before.fallback));
  EXPECT_GT(after.lt - before.lt, 0);
}

// The document mask of packed LM batches (keys before the query's document start are masked).
TEST_F(CudaKernels, DocumentMaskedAttentionSoftmax) {
  const int B = 3, H = 2, Tq = 9, Tk = 9;
  const Vec S = normal(static_cast<std::size_t>(B) * H * Tq * Tk, 31);
  const std::vector<int> key_len = {9, 7, 4};
  std::vector<int> key_begin(static_cast<std::size_t>(B) * Tq);
  for (std::size_t i = 0; i < key_begin.size(); ++i) key_begin[i] = static_cast<int>((i % Tq) / 3) * 3;  // docs of 3
  Vec ref = S;
  cpu::attention_softmax_forward<float>(ref.data(), B, H, Tq, Tk, key_len.data(), true, 0, 0.35f, key_begin.data());
  DeviceArray<float> dP(S);
  DeviceArray<int> dlen(key_len), dbegin(key_begin);
  cuda::attention_softmax_forward(dP.get(), B, H, Tq, Tk, dlen.get(), true, 0, 0.35f, dbegin.get(), stream_);
  expect_close("attention_softmax_docmask", shape({B, H, Tq, Tk}), dP.download(), ref, kTolFp32);
}

TEST_F(CudaKernels, PositionBackwardFillAndInPlaceRoundingAreBitIdentical) {
  const int B = 4, L = 33, D = 24;
  const Vec dy = normal(static_cast<std::size_t>(B) * L * D, 41), pe = normal(static_cast<std::size_t>(L) * D, 42);
  Vec ref = pe;
  cpu::position_backward<float>(ref.data(), dy.data(), B, L, D);
  DeviceArray<float> ddy(dy), dpe(pe);
  cuda::position_backward(dpe.get(), ddy.get(), B, L, D, stream_);
  expect_identical("position_backward", shape({B, L, D}), dpe.download(), ref);

  DeviceArray<float> f(Vec(1000, 0.0f));
  cuda::fill(f.get(), -2.75f, 1000, stream_);
  expect_identical("fill", "1000", f.download(), Vec(1000, -2.75f));

  Vec x = normal(5000, 43, 0.0f, 1000.0f);
  x[0] = std::numeric_limits<float>::infinity();
  x[1] = 70000.0f;  // beyond fp16: inf
  Vec rb = x, rh = x;
  cpu::round_to_bf16(rb.data(), 5000);
  cpu::round_to_fp16(rh.data(), 5000);
  DeviceArray<float> db(x), dh(x);
  cuda::round_to_bf16(db.get(), 5000, stream_);
  cuda::round_to_fp16(dh.get(), 5000, stream_);
  expect_identical("round_to_bf16", "5000", db.download(), rb);
  expect_identical("round_to_fp16", "5000", dh.download(), rh);
}

}  // namespace
}  // namespace th
