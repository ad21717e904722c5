// The GEMM engine's decision: capabilities (probed once), the start-up calibration, the pure
// choice, the process-wide plan and its one-line description for the banner.
#include "th/kernels/gemm_engine.hpp"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <vector>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"
#include "cpu/gemm_providers.hpp"

namespace th::cpu {

namespace {
GemmPlan& plan_storage() {
  static GemmPlan plan;  // the default: fp32 on OpenBLAS, bf16 widened, no operand rounding
  return plan;
}

std::string fmt1(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}
}  // namespace

GemmRequest parse_gemm_request(const std::string& s) {
  if (s == "auto") return GemmRequest::Auto;
  if (s == "openblas") return GemmRequest::OpenBLAS;
  if (s == "onednn") return GemmRequest::OneDNN;
  throw InputError("run%gemm = '" + s + "': expected 'auto', 'openblas' or 'onednn'");
}

const char* provider_name(GemmProvider p) { return p == GemmProvider::OneDNN ? "oneDNN" : "OpenBLAS"; }

const GemmCapabilities& gemm_capabilities() {
  static const GemmCapabilities caps = [] {
    GemmCapabilities c;
    const char* core = openblas_get_corename();
    c.openblas_core = core ? core : "unknown";
    const detail::OnednnProbe p = detail::onednn_probe();
    c.onednn_built = p.built;
    c.onednn_version = p.version;
    c.onednn_isa = p.isa;
    c.onednn_fp32 = p.fp32;
    c.onednn_bf16 = p.bf16;
    c.bf16_native = p.bf16_native;
    c.onednn_fp32_impl = p.fp32_impl;
    c.onednn_bf16_impl = p.bf16_impl;
    return c;
  }();
  return caps;
}

GemmTiming time_gemm_providers(int d_model, int d_ff, bool bf16) {
  GemmTiming t;
  // The model's widths, capped at 4096: the calibration runs before the deck's sizes are checked
  // against the memory (an absurd d_model must reach that check's message, not allocate here),
  // and wider GEMMs run at the rate of 4096-wide ones.
  t.d_model = std::clamp(d_model, 1, 4096);
  t.d_ff = std::clamp(d_ff, 1, 4096);
  const int D = t.d_model, F = t.d_ff;
  // R rows so that 2*R*D*F is about 2^27 flops (0.13 GFLOP): 3 shapes x 3 calls x 2 providers
  // is then ~2.4 GFLOP, a tenth of a second at 25 GFLOP/s.
  t.rows = static_cast<int>(std::clamp<double>(std::ldexp(1.0, 26) / (double(D) * F), 32, 1024));
  const int R = t.rows;
  std::vector<float> x(std::size_t(R) * std::max(D, F)), w(std::size_t(D) * F), y(std::size_t(R) * std::max(D, F)),
      dw(std::size_t(D) * F);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % 1000) * 1e-3f - 0.5f;
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float((i * 104729) % 1000) * 1e-3f - 0.5f;
  struct Shape { bool ta, tb; int M, N, K; const float *A, *B; int lda, ldb; float* C; int ldc; float beta; };
  const Shape shapes[] = {
      {false, true, R, F, D, x.data(), w.data(), D, D, y.data(), F, 0.f},   // y[R,F] = x[R,D] W[F,D]^T
      {false, false, R, D, F, x.data(), w.data(), F, D, y.data(), D, 0.f},  // dx[R,D] = dy[R,F] W[F,D]
      {true, false, F, D, R, x.data(), y.data(), F, D, dw.data(), D, 1.f},  // dW[F,D] += dy^T x
  };
  bool onednn = gemm_capabilities().onednn_fp32;  // false once oneDNN fails a shape: not a candidate
  bool onednn16 = bf16 && gemm_capabilities().onednn_bf16 && gemm_capabilities().bf16_native;
  std::vector<std::uint16_t> x16, w16, y16;  // the operands in bf16, only where the bf16 matmul is timed
  auto to16 = [](std::vector<std::uint16_t>& out, const std::vector<float>& in) {
    out.resize(in.size());
    fp32_to_bf16(out.data(), in.data(), static_cast<std::int64_t>(in.size()));
  };
  if (onednn16) to16(x16, x), to16(w16, w), to16(y16, y);
  auto as16 = [&](const float* p) { return p == x.data() ? x16.data() : p == w.data() ? w16.data() : y16.data(); };
  double onednn_s = 0, onednn16_s = 0;
  using clock = std::chrono::steady_clock;
  for (const Shape& s : shapes) {
    t.flops += 2.0 * s.M * s.N * s.K;
    double best[3] = {1e30, 1e30, 1e30};
    for (int rep = 0; rep < 3; ++rep) {  // rep 0 warms up (oneDNN creates its primitive there)
      for (int p = 0; p < 3; ++p) {
        const auto t0 = clock::now();
        if (p == 0) {
          detail::blas_gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.f, s.A, s.lda, s.B, s.ldb, s.beta, s.C, s.ldc);
        } else if (p == 1) {
          if (!onednn || !detail::onednn_gemm(false, s.ta, s.tb, s.M, s.N, s.K, 1.f, s.A, s.lda, 0, s.B, s.ldb, 0,
                                              s.beta, s.C, s.ldc, 0, 1)) {
            onednn = false;
            continue;
          }
        } else if (!onednn16 || !detail::onednn_gemm(true, s.ta, s.tb, s.M, s.N, s.K, 1.f, as16(s.A), s.lda, 0,
                                                     as16(s.B), s.ldb, 0, s.beta, s.C, s.ldc, 0, 1)) {
          onednn16 = false;
          continue;
        }
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        if (rep > 0) best[p] = std::min(best[p], dt);
      }
    }
    t.openblas_s += best[0];
    onednn_s += best[1];
    onednn16_s += best[2];
  }
  t.onednn_s = onednn ? onednn_s : 0;
  t.onednn_bf16_s = onednn16 ? onednn16_s : 0;
  return t;
}

GemmPlan choose_gemm_plan(GemmRequest request, const GemmCapabilities& caps, const GemmTiming* timing,
                          bool fp32_as_bf16) {
  GemmPlan plan;
  plan.fp32_as_bf16 = fp32_as_bf16;
  switch (request) {
    case GemmRequest::OpenBLAS:
      plan.fp32 = GemmProvider::OpenBLAS;
      break;
    case GemmRequest::OneDNN:
      if (!caps.onednn_fp32)
        throw InputError(caps.onednn_built
                             ? "run%gemm = 'onednn': oneDNN " + caps.onednn_version + " cannot create an fp32 matmul "
                               "at ISA " + caps.onednn_isa + " here; use 'openblas' or 'auto'"
                             : "run%gemm = 'onednn': this build has no oneDNN (CMake did not find it; Debian: "
                               "libdnnl-dev); use 'openblas' or 'auto'");
      plan.fp32 = GemmProvider::OneDNN;
      break;
    case GemmRequest::Auto:
      plan.fp32 = caps.onednn_fp32 && timing && timing->onednn_s > 0 && timing->onednn_s < timing->openblas_s
                      ? GemmProvider::OneDNN
                      : GemmProvider::OpenBLAS;
      break;
  }
  plan.bf16_onednn = caps.onednn_bf16 && caps.bf16_native;
  if (plan.bf16_onednn && request == GemmRequest::Auto && timing && timing->onednn_bf16_s > 0) {
    const double fp32_s = plan.fp32 == GemmProvider::OneDNN ? timing->onednn_s : timing->openblas_s;
    if (fp32_s > 0 && fp32_s < timing->onednn_bf16_s / 1.1) plan.bf16_onednn = false;
  }
  return plan;
}

void set_gemm_plan(const GemmPlan& plan) {
  const GemmCapabilities& caps = gemm_capabilities();
  if (plan.fp32 == GemmProvider::OneDNN && !caps.onednn_fp32)
    throw Error("GEMM plan: fp32 on oneDNN, but oneDNN cannot run fp32 matmuls in this process");
  if (plan.bf16_onednn && !caps.onednn_bf16)
    throw Error("GEMM plan: bf16 on oneDNN, but oneDNN could not create a bf16 matmul (ISA " + caps.onednn_isa + ")");
  plan_storage() = plan;
}

const GemmPlan& gemm_plan() { return plan_storage(); }

std::string describe_gemm_plan(const GemmPlan& plan, const GemmCapabilities& caps, const GemmTiming* timing,
                               GemmRequest request) {
  const std::string blas = "OpenBLAS (" + caps.openblas_core + ")";
  const std::string dnnl = "oneDNN " + caps.onednn_version + " " + caps.onednn_isa;
  const std::string fp32_lib = plan.fp32 == GemmProvider::OneDNN ? dnnl : blas;
  std::string s = "fp32 ";
  if (timing && timing->openblas_s > 0 && request == GemmRequest::Auto) {
    s += blas + " " + fmt1(timing->flops / timing->openblas_s * 1e-9) + " GFLOP/s";
    s += timing->onednn_s > 0 ? " vs " + dnnl + " " + fmt1(timing->flops / timing->onednn_s * 1e-9)
                              : std::string(caps.onednn_built ? " (oneDNN cannot run fp32 here)" : " (no oneDNN in this build)");
    s += std::string(" -> ") + provider_name(plan.fp32);
  } else {
    s += fp32_lib + (request == GemmRequest::Auto ? "" : " (run%gemm)");
  }
  s += "; bf16: ";
  const bool bf16_timed = timing && timing->onednn_bf16_s > 0 && request == GemmRequest::Auto;
  const std::string bf16_rate = bf16_timed ? " " + fmt1(timing->flops / timing->onednn_bf16_s * 1e-9) + " GFLOP/s" : "";
  if (plan.bf16_onednn) {
    s += dnnl + " bf16 matmul (" + caps.onednn_bf16_impl + ")" + bf16_rate + ", fp32 accumulation";
  } else {
    if (bf16_timed) s += dnnl + " bf16 matmul" + bf16_rate + " is slower here than fp32";
    else if (!caps.onednn_built) s += "no oneDNN in this build";
    else if (!caps.onednn_bf16) s += "oneDNN has no bf16 matmul at " + caps.onednn_isa;
    else s += "no bf16 instructions at " + caps.onednn_isa + " (oneDNN would emulate)";
    s += " -> fp32 " + fp32_lib + " on bf16-rounded operands";
  }
  if (plan.fp32_as_bf16) s += "; precision%dtype = 'bf16': fp32 GEMMs round their operands to bf16";
  return s;
}

}  // namespace th::cpu
