// GEMM rate of each provider of the GEMM engine (a benchmark for docs/benchmarks.md, not a test):
// GFLOP/s of fp32 OpenBLAS, fp32 oneDNN, bf16 on oneDNN's bf16 matmul (where it exists) and bf16
// widened to fp32 OpenBLAS, on 1024^3 and on bench_small's GEMMs (one rank of 2: 16 x 64 = 1024
// rows, d_model 256, d_ff 1024, vocab 8000, 4 heads of 64). Threads: OPENBLAS_NUM_THREADS /
// OMP_NUM_THREADS (oneDNN gets the BLAS thread count). Each number is the best of 3 batches of
// calls lasting about 0.2 s each.
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/bin/th-gemm-bench
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "th/kernels/cpu.hpp"
#include "th/kernels/gemm_engine.hpp"

using namespace th::cpu;

namespace {
struct Shape {
  const char* what;
  bool ta, tb;
  int M, N, K, batch;
};

double rate(const std::function<void()>& call, double flops) {
  call();  // warm-up: primitive creation, scratch, OpenBLAS buffers
  int reps = 1;
  for (;;) {  // calls per batch so that one batch lasts about 0.2 s
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) call();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.05 || reps > 1 << 20) {
      reps = std::max(1, static_cast<int>(reps * 0.2 / dt));
      break;
    }
    reps *= 4;
  }
  double best = 1e30;
  for (int b = 0; b < 3; ++b) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) call();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return flops / best * 1e-9;
}
}  // namespace

int main(int argc, char** argv) {
  Kokkos::initialize(argc, argv);
  {
    const GemmCapabilities& caps = gemm_capabilities();
    std::printf("OpenBLAS core %s; oneDNN %s isa %s (fp32 %s, bf16 %s%s)\n", caps.openblas_core.c_str(),
                caps.onednn_built ? caps.onednn_version.c_str() : "absent", caps.onednn_isa.c_str(),
                caps.onednn_fp32 ? caps.onednn_fp32_impl.c_str() : "none",
                caps.onednn_bf16 ? caps.onednn_bf16_impl.c_str() : "none",
                caps.bf16_native ? "" : ", no bf16 instructions");
    const Shape shapes[] = {
        {"1024^3", false, false, 1024, 1024, 1024, 1},
        {"x W^T  D->D (attn proj)", false, true, 1024, 256, 256, 1},
        {"x W^T  D->F (FFN up)", false, true, 1024, 1024, 256, 1},
        {"x W^T  F->D (FFN down)", false, true, 1024, 256, 1024, 1},
        {"dy W   dX of FFN up", false, false, 1024, 256, 1024, 1},
        {"dy^T x dW of FFN up", true, false, 1024, 256, 1024, 1},
        {"x E^T  logits", false, true, 1024, 8000, 256, 1},
        {"Q K^T  scores x64", false, true, 64, 64, 64, 64},
        {"P V    values x64", false, false, 64, 64, 64, 64},
    };
    struct Column {
      const char* name;
      GemmPlan plan;
      bool bf16_inputs;
      bool available;
    };
    const Column cols[] = {
        {"fp32 OpenBLAS", {GemmProvider::OpenBLAS, false, false}, false, true},
        {"fp32 oneDNN", {GemmProvider::OneDNN, false, false}, false, caps.onednn_fp32},
        {"bf16 oneDNN", {GemmProvider::OpenBLAS, true, false}, true, caps.onednn_bf16},
        {"bf16->fp32 OpenBLAS", {GemmProvider::OpenBLAS, false, false}, true, true},
    };
    std::printf("%-26s %-16s", "GEMM (GFLOP/s)", "M x N x K");
    for (const Column& c : cols) std::printf(" %20s", c.name);
    std::printf("\n");
    for (const Shape& s : shapes) {
      const std::int64_t a = std::int64_t(s.M) * s.K, b = std::int64_t(s.K) * s.N, c = std::int64_t(s.M) * s.N;
      std::vector<float> A(a * s.batch, 0.25f), B(b * s.batch, -0.5f), C(c * s.batch);
      std::vector<std::uint16_t> A16(A.size(), 0x3E80), B16(B.size(), 0xBF00);  // 0.25, -0.5
      const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
      char dims[32];
      std::snprintf(dims, sizeof dims, "%dx%dx%d%s", s.M, s.N, s.K, s.batch > 1 ? " b" : "");
      std::printf("%-26s %-16s", s.what, dims);
      for (const Column& col : cols) {
        if (!col.available) {
          std::printf(" %20s", "-");
          continue;
        }
        set_gemm_plan(col.plan);
        const double flops = 2.0 * s.M * s.N * s.K * s.batch;
        const double r = rate(
            [&] {
              if (col.bf16_inputs)
                gemm_strided_batched_bf16(s.ta, s.tb, s.M, s.N, s.K, 1.f, A16.data(), lda, a, B16.data(), ldb, b, 0.f,
                                          C.data(), s.N, c, s.batch);
              else
                gemm_strided_batched<float>(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, a, B.data(), ldb, b, 0.f,
                                            C.data(), s.N, c, s.batch);
            },
            flops);
        std::printf(" %20.1f", r);
        std::fflush(stdout);
      }
      std::printf("\n");
    }
  }
  Kokkos::finalize();
  return 0;
}
