// The CUDA backend (run%backend = 'cuda') against the CPU backend, the reference: the small
// training run of backend_training.hpp (four model shapes, dropout and padding, two optimizer
// steps of forward, backward, clipping and AdamW) on identical weights. Not bit-identical
// (reductions and GEMMs sum in other orders): losses within 1e-4 relative, gradients and updated
// weights within 1e-3 of their largest magnitude, in fp32 and with bf16 GEMM operands (the
// reference rounds its operands too). Without a visible GPU every test is skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend_training.hpp"
#include "th/backend/backend.hpp"
#include "th/kernels/cuda.hpp"
#include "th/kernels/gemm_engine.hpp"

using namespace th;
using namespace th::testing_support;

namespace {

std::vector<float> floats(const std::vector<unsigned char>& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

double normalized_max_error(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double max_ref = 0, max_diff = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    max_ref = std::max(max_ref, std::abs(double(ref[i])));
    max_diff = std::max(max_diff, std::abs(double(got[i]) - double(ref[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

void expect_cuda_matches_cpu(bool bf16) {
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device visible";
  Backend& gpu = cuda_backend();
  // The CPU reference multiplies bf16-rounded operands when the GEMM engine's plan says so.
  const cpu::GemmPlan saved = cpu::gemm_plan();
  cpu::GemmPlan plan = saved;
  plan.fp32_as_bf16 = bf16;
  cpu::set_gemm_plan(plan);
  gpu.configure_gemms(bf16 ? DType::BF16 : DType::F32, false);
  const cuda::GemmCounts before = cuda::gemm_counts();
  for (bool dec_only : {false, true})
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(dec_only ? "decoder-only" : "encoder-decoder") + (pre_norm ? " pre-norm" : " post-norm") +
                   (bf16 ? " bf16 operands" : " fp32"));
      const ModelSpec spec = spec_of(dec_only, pre_norm);
      const Batch batch = batch_of(dec_only);
      const TrainRun ref = train<float>(spec, batch, cpu_backend());
      const TrainRun run = train<float>(spec, batch, gpu);
      ASSERT_EQ(ref.losses.size(), run.losses.size());
      const double tol = bf16 ? 1e-2 : 1e-3;
      for (std::size_t i = 0; i < ref.losses.size(); ++i)
        EXPECT_NEAR(run.losses[i], ref.losses[i], (bf16 ? 1e-3 : 1e-4) * std::abs(ref.losses[i])) << "step " << i + 1;
      const double eg = normalized_max_error(floats(run.grads), floats(ref.grads));
      const double ev = normalized_max_error(floats(run.values), floats(ref.values));
      std::printf("TH_BACKEND_CHECK %s %s %s: gradients %.3e, updated weights %.3e (tolerance %.0e)\n",
                  dec_only ? "decoder-only" : "encoder-decoder", pre_norm ? "pre-norm" : "post-norm",
                  bf16 ? "bf16" : "fp32", eg, ev, tol);
      EXPECT_LE(eg, tol) << "gradients";
      EXPECT_LE(ev, tol) << "updated weights";
    }
  const cuda::GemmCounts after = cuda::gemm_counts();
  std::printf("TH_BACKEND_CHECK GEMMs: %lld through cuBLASLt, %lld through cublasGemmEx (no cuBLASLt algorithm)\n",
              static_cast<long long>(after.lt - before.lt), static_cast<long long>(after.fallback - before.fallback));
  EXPECT_GT(after.lt - before.lt, 0) << "the training GEMMs should run on cuBLASLt";
  gpu.configure_gemms(DType::F32, false);
  cpu::set_gemm_plan(saved);
}

}  // namespace

TEST(CudaBackend, TrainingStepsMatchTheCpuBackendInFp32) { expect_cuda_matches_cpu(false); }
TEST(CudaBackend, TrainingStepsMatchTheCpuBackendWithBf16Operands) { expect_cuda_matches_cpu(true); }
