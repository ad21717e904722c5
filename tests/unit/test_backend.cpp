// The backend seam (th/backend/backend.hpp): a model and its optimizer run through a backend that
// counts and forwards every call to the CPU backend give bit-identical losses, gradients and
// updated parameters to the default path (a second road to the same kernels, in float and in the
// double precision of the gradient checks), and every kernel kind forward/backward/AdamW use is
// seen by the counting backend: the seam is the road the model takes. Also the strided-batched
// GEMM against separate GEMMs, the memory and copy operations, and the run%backend choice.
#include <algorithm>
#include <gtest/gtest.h>

#include <sys/utsname.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/backend/emulated.hpp"
#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/kernels/gemm_engine.hpp"
#include "th/model/transformer.hpp"
#include "backend_training.hpp"
#include "model_batches.hpp"
#include "th/train/optimizer.hpp"

using namespace th;

namespace {

using Counts = std::map<std::string, long>;

// Every kernel forwarded to `in`, counted by name.
template <typename T>
class CountingKernels final : public Kernels<T> {
 public:
  CountingKernels(Kernels<T>& in, Counts& c) : in_(in), c_(c) {}
  bool hide_bf16_operands = false;  // say "no bf16 operands": the model takes its widening paths
  void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
            int ldc) override {
    ++c_["gemm"];
    in_.gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void gemm_strided_batched(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, std::int64_t sa,
                            const T* B, int ldb, std::int64_t sb, T beta, T* C, int ldc, std::int64_t sc,
                            int batch) override {
    ++c_["gemm_strided_batched"];
    in_.gemm_strided_batched(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
  void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t N, int in, int out) override {
    ++c_["linear_forward"];
    in_.linear_forward(y, x, W, b, N, in, out);
  }
  void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t N, int in, int out,
                       bool acc) override {
    ++c_["linear_backward"];
    in_.linear_backward(dx, dW, db, dy, x, W, N, in, out, acc);
  }
  void bias_add(T* y, const T* b, std::int64_t N, int D) override {
    ++c_["bias_add"];
    in_.bias_add(y, b, N, D);
  }
  void bias_grad(T* db, const T* dy, std::int64_t N, int D) override {
    ++c_["bias_grad"];
    in_.bias_grad(db, dy, N, D);
  }
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, std::int64_t N, int D,
                         T eps) override {
    ++c_["layernorm_forward"];
    in_.layernorm_forward(y, mean, rstd, x, g, b, N, D, eps);
  }
  void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* g, const T* mean, const T* rstd,
                          std::int64_t N, int D) override {
    ++c_["layernorm_backward"];
    in_.layernorm_backward(dx, dg, db, dy, x, g, mean, rstd, N, D);
  }
  void bias_act_forward(T* y, T* pre, const T* b, std::int64_t N, int F, cpu::Activation act) override {
    ++c_["bias_act_forward"];
    in_.bias_act_forward(y, pre, b, N, F, act);
  }
  void bias_act_backward(T* dpre, T* db, const T* dy, const T* pre, std::int64_t N, int F,
                         cpu::Activation act) override {
    ++c_["bias_act_backward"];
    in_.bias_act_backward(dpre, db, dy, pre, N, F, act);
  }
  void add(T* out, const T* a, const T* b, std::int64_t n) override {
    ++c_["add"];
    in_.add(out, a, b, n);
  }
  void add_inplace(T* a, const T* b, std::int64_t n) override {
    ++c_["add_inplace"];
    in_.add_inplace(a, b, n);
  }
  void scale_inplace(T* a, T s, std::int64_t n) override {
    ++c_["scale_inplace"];
    in_.scale_inplace(a, s, n);
  }
  double sum_squares(const T* a, std::int64_t n) override {
    ++c_["sum_squares"];
    return in_.sum_squares(a, n);
  }
  void fill(T* x, T value, std::int64_t n) override {
    ++c_["fill"];
    in_.fill(x, value, n);
  }
  void attention_softmax_forward(T* P, int B, int H, int Tq, int Tk, const int* key_len, bool causal, int q_offset,
                                 T scale, const int* key_begin) override {
    ++c_["attention_softmax_forward"];
    in_.attention_softmax_forward(P, B, H, Tq, Tk, key_len, causal, q_offset, scale, key_begin);
  }
  void softmax_backward(T* dS, const T* dP, const T* P, std::int64_t rows, int Tk, T scale) override {
    ++c_["softmax_backward"];
    in_.softmax_backward(dS, dP, P, rows, Tk, scale);
  }
  void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D,
                         T scale) override {
    ++c_["embedding_forward"];
    in_.embedding_forward(y, tokens, table, pe, B, L, D, scale);
  }
  void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale) override {
    ++c_["embedding_backward"];
    in_.embedding_backward(dtable, tokens, dy, N, D, scale);
  }
  void position_backward(T* dpe, const T* dy, int B, int L, int D) override {
    ++c_["position_backward"];
    in_.position_backward(dpe, dy, B, L, D);
  }
  void sinusoidal_table(T* pe, int L, int D) override {
    ++c_["sinusoidal_table"];
    in_.sinusoidal_table(pe, L, D);
  }
  double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N, int V,
                               T smoothing, int ignore, std::int64_t* count) override {
    ++c_["cross_entropy_forward"];
    return in_.cross_entropy_forward(losses, lse, logits, targets, N, V, smoothing, ignore, count);
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets, std::int64_t N, int V,
                              T smoothing, int ignore, T dloss) override {
    ++c_["cross_entropy_backward"];
    in_.cross_entropy_backward(dlogits, logits, lse, targets, N, V, smoothing, ignore, dloss);
  }
  void dropout_forward(T* y, const T* x, std::int64_t n, float p, std::uint64_t seed, std::uint64_t stream) override {
    ++c_["dropout_forward"];
    in_.dropout_forward(y, x, n, p, seed, stream);
  }
  void dropout_add(T* y, const T* x, const T* f, std::int64_t n, float p, std::uint64_t seed,
                   std::uint64_t stream) override {
    ++c_["dropout_add"];
    in_.dropout_add(y, x, f, n, p, seed, stream);
  }
  void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double b1, double b2, double eps,
                    double wd, std::int64_t t) override {
    ++c_["adamw_update"];
    in_.adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, t);
  }
  bool bf16_operands() const override { return !hide_bf16_operands && in_.bf16_operands(); }
  void linear_forward_bf16(T* y, const T* x, const std::uint16_t* x16, const T* W, const std::uint16_t* W16,
                           const T* b, std::int64_t N, int in, int out) override {
    ++c_["linear_forward_bf16"];
    in_.linear_forward_bf16(y, x, x16, W, W16, b, N, in, out);
  }
  void linear_backward_bf16(T* dx, T* dW, T* db, const T* dy, const std::uint16_t* dy16, float alpha, const T* x,
                            const std::uint16_t* x16, const T* W, const std::uint16_t* W16, std::int64_t N, int in,
                            int out, bool acc, int ldy) override {
    ++c_["linear_backward_bf16"];
    in_.linear_backward_bf16(dx, dW, db, dy, dy16, alpha, x, x16, W, W16, N, in, out, acc, ldy);
  }
  void embedding_forward_bf16(T* y, const int* tokens, const std::uint16_t* table16, const T* pe, int B, int L, int D,
                              T scale) override {
    ++c_["embedding_forward_bf16"];
    in_.embedding_forward_bf16(y, tokens, table16, pe, B, L, D, scale);
  }
  void bias_act_backward_bf16(T* dpre, T* db, const T* dy, const std::uint16_t* pre16, std::int64_t N, int F,
                              cpu::Activation act) override {
    ++c_["bias_act_backward_bf16"];
    in_.bias_act_backward_bf16(dpre, db, dy, pre16, N, F, act);
  }
  void gemm_strided_batched_mixed(bool ta, bool tb, int M, int N, int K, float alpha, const T* A,
                                  const std::uint16_t* A16, int lda, std::int64_t sa, const T* B,
                                  const std::uint16_t* B16, int ldb, std::int64_t sb, float beta, T* C, int ldc,
                                  std::int64_t sc, int batch) override {
    ++c_["gemm_strided_batched_mixed"];
    in_.gemm_strided_batched_mixed(ta, tb, M, N, K, alpha, A, A16, lda, sa, B, B16, ldb, sb, beta, C, ldc, sc, batch);
  }
  double cross_entropy_forward_grad_bf16(T* losses, T* lse, std::uint16_t* g16, const T* logits, const int* targets,
                                         std::int64_t N, int V, T smoothing, int ignore, std::int64_t* count) override {
    ++c_["cross_entropy_forward_grad_bf16"];
    return in_.cross_entropy_forward_grad_bf16(losses, lse, g16, logits, targets, N, V, smoothing, ignore, count);
  }

 private:
  Kernels<T>& in_;
  Counts& c_;
};

// The CPU backend behind a counter: kernels, 16-bit rounding, allocations and copies.
class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(Backend& in, bool hide_bf16_operands = false)
      : in_(in), f32_(in.f32(), counts), f64_(in.f64(), counts) {
    f32_.hide_bf16_operands = hide_bf16_operands;
  }
  Counts counts;

  const char* name() const override { return "counting"; }
  Kernels<float>& f32() override { return f32_; }
  Kernels<double>& f64() override { return f64_; }
  void round_to_bf16(float* x, std::int64_t n) override { ++counts["round_to_bf16"]; in_.round_to_bf16(x, n); }
  void round_to_fp16(float* x, std::int64_t n) override { ++counts["round_to_fp16"]; in_.round_to_fp16(x, n); }
  void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) override { in_.fp32_to_bf16(y, x, n); }
  void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { in_.bf16_to_fp32(y, x, n); }
  void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) override { in_.fp32_to_fp16(y, x, n); }
  void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override { in_.fp16_to_fp32(y, x, n); }
  MemoryPool& pool(MemorySpace s) override {
    ++counts[s == MemorySpace::Device ? "allocate_device" : "allocate_host"];
    return in_.pool(s);
  }
  Device device_of(MemorySpace s) const override { return in_.device_of(s); }
  void host_to_device(void* d, const void* s, std::size_t b) override { ++counts["host_to_device"]; in_.host_to_device(d, s, b); }
  void device_to_host(void* d, const void* s, std::size_t b) override { ++counts["device_to_host"]; in_.device_to_host(d, s, b); }
  void device_to_device(void* d, const void* s, std::size_t b) override {
    ++counts["device_to_device"];
    in_.device_to_device(d, s, b);
  }
  void zero(void* d, std::size_t b, MemorySpace s) override { ++counts["zero"]; in_.zero(d, b, s); }
  const void* host_view(const void* s, std::size_t b, Tensor& st) override {
    ++counts["host_view"];
    return in_.host_view(s, b, st);
  }
  void* host_target(void* d, std::size_t b, Tensor& st) override {
    ++counts["host_target"];
    return in_.host_target(d, b, st);
  }
  void copy_to_host_async(void* d, const void* s, std::size_t b, Stream st = Stream::Compute) override {
    ++counts["copy_to_host_async"];
    in_.copy_to_host_async(d, s, b, st);
  }
  void copy_to_device_async(void* d, const void* s, std::size_t b, Stream st = Stream::Compute) override {
    ++counts["copy_to_device_async"];
    in_.copy_to_device_async(d, s, b, st);
  }
  Event record(Stream st = Stream::Compute) override { return in_.record(st); }
  void wait(Event e) override { in_.wait(e); }
  bool query(Event e) override { return in_.query(e); }
  void stream_wait(Stream st, Event e) override { in_.stream_wait(st, e); }
  std::unique_ptr<Reservation> reserve(std::size_t bytes) override { return in_.reserve(bytes); }
  void sync() override { ++counts["sync"]; in_.sync(); }
  bool device_is_host() const override { return in_.device_is_host(); }

 private:
  Backend& in_;
  CountingKernels<float> f32_;
  CountingKernels<double> f64_;
};

using testing_support::batch_of;
using testing_support::spec_of;
using testing_support::train;
using testing_support::TrainRun;

// The kernel kinds a training step of these models uses; each must be seen through the seam.
const char* const kStepKernels[] = {
    "gemm_strided_batched", "linear_forward", "linear_backward", "layernorm_forward", "layernorm_backward",
    "bias_act_forward", "bias_act_backward", "add_inplace", "scale_inplace", "sum_squares",
    "attention_softmax_forward", "softmax_backward", "embedding_forward", "embedding_backward", "sinusoidal_table",
    "cross_entropy_forward", "cross_entropy_backward", "dropout_forward", "dropout_add", "adamw_update",
    "allocate_device", "zero", "host_to_device"};

// Trains every model shape of these tests on the CPU backend and through `other(spec, batch)`, and
// expects bit-identical losses, gradients and updated parameters (`what`: the other road's name).
template <typename T, typename Other>
void expect_identical_to_cpu(const char* what, Other other) {
  for (bool dec_only : {false, true})
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(dec_only ? "decoder-only" : "encoder-decoder") + (pre_norm ? " pre-norm" : " post-norm"));
      const ModelSpec spec = spec_of(dec_only, pre_norm);
      const Batch batch = batch_of(dec_only);
      const TrainRun ref = train<T>(spec, batch, cpu_backend());
      const TrainRun run = other(spec, batch);
      ASSERT_EQ(ref.losses.size(), run.losses.size());
      for (std::size_t i = 0; i < ref.losses.size(); ++i) EXPECT_EQ(ref.losses[i], run.losses[i]) << "step " << i + 1;
      EXPECT_TRUE(ref.grads == run.grads) << "gradients differ " << what;
      EXPECT_TRUE(ref.values == run.values) << "updated parameters differ " << what;
    }
}

template <typename T> void expect_same_through_the_seam() {
  expect_identical_to_cpu<T>("through the counting backend", [](const ModelSpec& spec, const Batch& batch) {
    CountingBackend counting(cpu_backend());
    TrainRun run = train<T>(spec, batch, counting);
    for (const char* k : kStepKernels) EXPECT_GT(counting.counts[k], 0) << k << " never went through the backend";
    // Attention's per-head GEMMs are strided batches, one per batch row; the only single GEMMs
    // are the output projection's weight gradient, in row blocks of grad_block_rows(D)
    // (Transformer::output_backward), once per backward.
    const int rows = grad_block_rows(spec.d_model);
    const auto blocks = static_cast<std::size_t>((spec.vocab_size + rows - 1) / rows);
    EXPECT_EQ(static_cast<std::size_t>(counting.counts["gemm"]), run.losses.size() * blocks);
    return run;
  });
}

}  // namespace

TEST(BackendSeam, FloatModelAndOptimizerBitIdenticalAndEveryKernelThroughTheBackend) {
  expect_same_through_the_seam<float>();
}

TEST(BackendSeam, DoubleModelBitIdenticalAndEveryKernelThroughTheBackend) {
  expect_same_through_the_seam<double>();
}

TEST(BackendSeam, MixedPrecisionRoundingGoesThroughTheBackend) {
  ModelSpec spec = spec_of(true, true);
  spec.compute = DType::BF16;
  const Batch batch = batch_of(true);
  const TrainRun ref = train<float>(spec, batch, cpu_backend());
  CountingBackend counting(cpu_backend());
  const TrainRun run = train<float>(spec, batch, counting);
  EXPECT_EQ(ref.losses, run.losses);
  EXPECT_TRUE(ref.grads == run.grads);
  EXPECT_GT(counting.counts["round_to_bf16"], 0);
  // bf16 operands straight from the stored activations, and the loss's fused gradient.
  for (const char* k :
       {"linear_forward_bf16", "linear_backward_bf16", "gemm_strided_batched_mixed", "cross_entropy_forward_grad_bf16"})
    EXPECT_GT(counting.counts[k], 0) << k;
  EXPECT_EQ(counting.counts["cross_entropy_backward"], 0);
}

// The bf16 operand paths (stored activations handed to the GEMMs, Q/K/V/P and the once-rounded
// dC/dP in attention's head GEMMs, the loss's fused bf16 gradient) against the widening paths
// they replace, which the model takes when the backend says bf16_operands() = false. Under the
// driver's GEMM plan for a bf16 run (every fp32 GEMM rounds its operands to bf16), the operands
// are the same values either way; the fused loss rounds its gradient before the scale
// alpha = loss_scale / count instead of after, which is exact when count is a power of two (16 or 32
// targets here, checked), so the two must agree bit for bit, with dropout and without.
TEST(BackendSeam, Bf16OperandPathsGiveTheWideningPathsBits) {
  const cpu::GemmPlan saved = cpu::gemm_plan();
  cpu::set_gemm_plan(cpu::choose_gemm_plan(cpu::GemmRequest::OpenBLAS, cpu::gemm_capabilities(), nullptr, true));
  for (bool dec_only : {false, true})
    for (float dropout : {0.0f, 0.2f}) {
      SCOPED_TRACE(std::string(dec_only ? "decoder-only" : "encoder-decoder") + " dropout " + std::to_string(dropout));
      ModelSpec spec = spec_of(dec_only, dec_only);
      spec.compute = DType::BF16;
      spec.dropout = dropout;
      const Batch batch = testing_support::random_rows_batch(4, 3, 0, 9, 33, dec_only);
      {
        Transformer<float> probe(spec, cpu_backend());
        probe.params().initialize(7);
        probe.forward(batch, 5, 1);
        const std::int64_t count = probe.target_tokens();
        ASSERT_TRUE(count > 0 && (count & (count - 1)) == 0) << count << " targets: the batch needs a power of two";
        probe.discard();
      }
      CountingBackend direct(cpu_backend()), widening(cpu_backend(), /*hide_bf16_operands=*/true);
      const TrainRun a = train<float>(spec, batch, direct), b = train<float>(spec, batch, widening);
      EXPECT_GT(direct.counts["gemm_strided_batched_mixed"], 0);
      EXPECT_GT(direct.counts["bias_act_backward_bf16"], 0);
      EXPECT_EQ(widening.counts["gemm_strided_batched_mixed"] + widening.counts["linear_backward_bf16"], 0);
      EXPECT_EQ(a.losses, b.losses);
      EXPECT_TRUE(a.grads == b.grads) << "gradients differ";
      EXPECT_TRUE(a.values == b.values) << "updated parameters differ";
    }
  cpu::set_gemm_plan(saved);
}

// The strided-batched GEMM against the same GEMMs one by one (the reference loop), with strides
// that interleave heads as attention does (column slices of a wider matrix).
TEST(BackendSeam, StridedBatchedGemmIsTheLoopOfGemms) {
  const int M = 5, N = 7, K = 3, H = 4, lda = H * K, ldb = H * K;
  std::vector<double> A(static_cast<std::size_t>(M) * lda), B(static_cast<std::size_t>(N) * ldb);
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = uniform01(1, 1, i) - 0.5;
  for (std::size_t i = 0; i < B.size(); ++i) B[i] = uniform01(1, 2, i) - 0.5;
  std::vector<double> C(static_cast<std::size_t>(H) * M * N, 0.25), D = C;
  Kernels<double>& k = cpu_backend().f64();
  k.gemm_strided_batched(false, true, M, N, K, 2.0, A.data(), lda, K, B.data(), ldb, K, 0.5, C.data(), N,
                         static_cast<std::int64_t>(M) * N, H);
  for (int h = 0; h < H; ++h) {
    // Independent reference: the sums written out.
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double s = 0;
        for (int c = 0; c < K; ++c) s += A[static_cast<std::size_t>(i) * lda + h * K + c] * B[static_cast<std::size_t>(j) * ldb + h * K + c];
        double& d = D[(static_cast<std::size_t>(h) * M + i) * N + j];
        d = 2.0 * s + 0.5 * d;
      }
  }
  for (std::size_t i = 0; i < C.size(); ++i) EXPECT_NEAR(C[i], D[i], 1e-14) << i;
}

TEST(BackendSeam, CpuMemorySpacesCopiesAndViews) {
  Backend& be = cpu_backend();
  Tensor d = be.zeros({6}, DType::F32, MemCategory::Workspace);
  Tensor h = be.empty({6}, DType::F32, MemCategory::Workspace, MemorySpace::Host);
  EXPECT_EQ(d.device(), Device::Host);  // the CPU backend's device memory is host memory
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d.data<float>()[i], 0.0f);
  const float src[6] = {1, 2, 3, 4, 5, 6};
  copy_to_device(be, d.data<float>(), src, 6);
  copy_to_host(be, h.data<float>(), d.data<float>(), 6);
  EXPECT_EQ(0, std::memcmp(h.data<float>(), src, sizeof(src)));
  copy_device(be, d.data<float>() + 1, d.data<float>(), 5);  // overlapping ranges are allowed on the device
  EXPECT_EQ(d.data<float>()[5], 5.0f);
  Tensor staging;
  EXPECT_EQ(host_view(be, d.data<float>(), 6, staging), d.data<float>());  // aliases, no staging
  EXPECT_FALSE(staging.defined());
  be.f32().fill(d.data<float>(), 2.5f, 6);
  EXPECT_EQ(d.data<float>()[3], 2.5f);
  be.sync();
}

// The CPU backend's reservation: commit(Backing::Now) backs the pages it covers in one call (no
// fault per page), Backing::OnTouch leaves them to first touch, a commit keeps what resident
// pages hold, and release() gives back whole pages, the rest zeroed.
TEST(BackendSeam, CpuReservationCommitBacksPagesAndReleaseGivesThemBack) {
  struct utsname u {};
  ASSERT_EQ(uname(&u), 0);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  if (major < 5 || (major == 5 && minor < 14)) GTEST_SKIP() << "kernel " << u.release << " has no MADV_POPULATE_WRITE";
  auto r = cpu_backend().reserve(64 * 4096);
  const std::size_t page = r->granularity();
  ASSERT_EQ(r->committed(), 0u);
  r->commit(0, 64 * 4096, Backing::OnTouch);  // a lookup's rows: backed as touched
  EXPECT_EQ(r->committed(), 0u);
  r->commit(page + 10, 2 * page, Backing::Now);  // overlaps pages 1, 2 and 3
  EXPECT_EQ(r->committed(), 3 * page);
  for (std::size_t i = page; i < 4 * page; ++i) ASSERT_EQ(r->data()[i], 0) << i;
  std::memset(r->data() + page, 7, 3 * page);
  r->commit(page, 3 * page, Backing::Now);  // already backed: contents stay
  EXPECT_EQ(r->data()[2 * page + 5], 7);
  r->release(page + 1, 3 * page - 1, true);  // pages 2 and 3 given back, page 1's tail zeroed
  EXPECT_EQ(r->committed(), page);
  EXPECT_EQ(r->data()[page], 7);
  for (std::size_t i = page + 1; i < 4 * page; ++i) ASSERT_EQ(r->data()[i], 0) << i;
}

TEST(BackendSeam, RunBackendChoice) {
  EXPECT_EQ(&backend_for(parse_backend_kind("cpu")), &cpu_backend());
  EXPECT_EQ(&backend_for(parse_backend_kind("auto")), cuda_backend_available() ? &cuda_backend() : &cpu_backend());
  EXPECT_THROW(backend_for(parse_backend_kind("cuda")), InputError);
  EXPECT_EQ(&backend_for(parse_backend_kind("emulated")), &emulated_backend());
  EXPECT_THROW(parse_backend_kind("tpu"), InputError);
}

// The emulated device (th/backend/emulated.hpp) runs the same kernels on its stream's worker, on
// memory the host cannot touch: a model and its optimizer trained on it give bit for bit what the
// CPU backend gives, with every host read a copy through the backend (a direct read would fault).
template <typename T> void expect_same_on_the_emulated_device() {
  expect_identical_to_cpu<T>("on the emulated device", [](const ModelSpec& spec, const Batch& batch) {
    const std::int64_t ops = emulated_stats().operations;
    TrainRun run = train<T>(spec, batch, emulated_backend());
    EXPECT_GT(emulated_stats().operations - ops, 100) << "the training did not run on the emulated stream";
    return run;
  });
}

TEST(EmulatedDevice, FloatTrainingBitIdenticalToTheCpuBackend) { expect_same_on_the_emulated_device<float>(); }
TEST(EmulatedDevice, DoubleTrainingBitIdenticalToTheCpuBackend) { expect_same_on_the_emulated_device<double>(); }
