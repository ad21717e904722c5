#pragma once
// The GEMM engine: which library runs the fp32 and the bf16 GEMMs of this process, chosen once at
// run time. th::cpu::gemm<float>, gemm_strided_batched<float> and the bf16 entry points
// (th/kernels/cpu.hpp) go through it; gemm<double> (gradient checks) is always OpenBLAS.
//
// Providers:
//   OpenBLAS  sgemm through Eigen's BLAS mapping (the reference path; Debian's OpenBLAS picks its
//             kernels by CPU at run time, OPENBLAS_CORETYPE caps them).
//   oneDNN    matmul primitives (built when CMake found oneDNN), JIT code for the effective ISA
//             (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA cap it). Primitives are cached per thread by
//             shape, transposition, leading dimensions, alpha, beta and thread count: creating
//             one costs far more than a small GEMM.
// bf16 GEMMs (bf16 operands, fp32 accumulation and output) run on oneDNN's bf16 matmul when the
// effective ISA has bf16 instructions (avx512_core_bf16, avx512_core_amx) and the primitive can
// be created; otherwise the operands are widened to fp32 (exact) and the fp32 provider multiplies
// them: the same numbers, fp32 speed.
//
// Until set_gemm_plan() is called the plan is the default one (fp32 on OpenBLAS, no bf16
// operand rounding): library users and tests get today's numerics unless they choose. The driver
// (src/app/driver.cpp) decides once per job and makes the decision the same on every rank.
#include <string>
#include <vector>

namespace th::cpu {

enum class GemmProvider { OpenBLAS, OneDNN };
// run%gemm: 'auto' (time both at start-up, keep the faster), 'openblas', 'onednn'.
enum class GemmRequest { Auto, OpenBLAS, OneDNN };

// Throws th::InputError naming run%gemm unless s is 'auto', 'openblas' or 'onednn'.
GemmRequest parse_gemm_request(const std::string& s);
const char* provider_name(GemmProvider p);  // "OpenBLAS", "oneDNN"

// What this process can run, probed once (the first call creates two small oneDNN primitives).
struct GemmCapabilities {
  std::string openblas_core;     // openblas_get_corename(): "Zen", "Haswell", "Prescott", ...
  bool onednn_built = false;     // this build links oneDNN
  std::string onednn_version;    // "2.6.3"
  std::string onednn_isa;        // effective ISA: "avx2", "avx512_core_amx", ...
  bool onednn_fp32 = false;      // an fp32 matmul primitive was created
  bool onednn_bf16 = false;      // a bf16 x bf16 -> fp32 matmul primitive was created
  bool bf16_native = false;      // the effective ISA has bf16 instructions
  std::string onednn_fp32_impl;  // oneDNN's implementation names ("gemm:jit", "brg:avx512_core_amx")
  std::string onednn_bf16_impl;
};
const GemmCapabilities& gemm_capabilities();

// Start-up calibration: seconds for the same GEMMs on each provider (best of a few repetitions
// each, interleaved so that a noisy neighbour hits both alike). The shapes are a Transformer
// feed-forward's three GEMMs at width d_model x d_ff ([R x D] x [D x F]^T forward, its dX and dW),
// with R rows chosen so that one GEMM is about 0.13 GFLOP: the whole takes well under 0.2 s.
// With `bf16` (a bf16 run) also oneDNN's bf16 matmul on the same shapes, where it exists and the
// ISA has bf16 instructions: on some CPUs it is slower than fp32 (oneDNN 2.6 at avx512_core_bf16
// on an Emerald Rapids guest: ~83 vs ~150 GFLOP/s), and then the bf16 GEMMs are better widened.
struct GemmTiming {
  double flops = 0;        // per provider, over the shapes timed
  double openblas_s = 0;
  double onednn_s = 0;     // 0 when oneDNN cannot run fp32
  int rows = 0, d_model = 0, d_ff = 0;
  double onednn_bf16_s = 0;  // 0 when not timed (fp32 run, no bf16 matmul or no bf16 instructions)
};
GemmTiming time_gemm_providers(int d_model, int d_ff, bool bf16 = false);

// The decision. fp32: the provider of fp32 GEMMs. bf16_onednn: bf16 GEMMs on oneDNN's bf16 matmul
// (else widened to fp32 and run on `fp32`). fp32_as_bf16: fp32 GEMMs round their operands to bf16
// first (precision%dtype = 'bf16': the GEMM sees what a 2-byte tensor would hold); the bf16 path
// then multiplies them.
struct GemmPlan {
  GemmProvider fp32 = GemmProvider::OpenBLAS;
  bool bf16_onednn = false;
  bool fp32_as_bf16 = false;
  bool operator==(const GemmPlan& o) const {
    return fp32 == o.fp32 && bf16_onednn == o.bf16_onednn && fp32_as_bf16 == o.fp32_as_bf16;
  }
};

// Pure selection logic (no probing, no timing of its own; tested with made-up capabilities):
//   fp32: a forced provider is honoured (InputError naming run%gemm when oneDNN is forced but
//         cannot run fp32 here); 'auto' takes the faster of `timing` (OpenBLAS on a tie or when
//         oneDNN cannot run or was not timed).
//   bf16: oneDNN when its bf16 primitive was created AND the ISA has bf16 instructions (oneDNN
//         emulates bf16 on plain AVX-512 at a fraction of fp32's rate); otherwise the fallback.
//         'auto' with the bf16 matmul timed: the fallback also where the fp32 provider chosen
//         above is more than 10% faster on the same shapes (the fallback pays extra conversion
//         passes: 16-bit operands widened, fp32 ones rounded in fp32).
GemmPlan choose_gemm_plan(GemmRequest request, const GemmCapabilities& caps, const GemmTiming* timing,
                          bool fp32_as_bf16);

// Installs a plan for this process. Throws th::Error if it asks for what gemm_capabilities()
// cannot do (oneDNN fp32 or bf16 that did not create). Not thread-safe against running GEMMs:
// call it before the work starts.
void set_gemm_plan(const GemmPlan& plan);
const GemmPlan& gemm_plan();

// One line for the banner: which library and ISA run the GEMMs of each dtype, and why, e.g.
// "fp32 OpenBLAS (Zen) 24.1 GFLOP/s vs oneDNN 2.6.3 avx2 22.0 -> OpenBLAS; bf16: oneDNN has no
// bf16 matmul at avx2 -> fp32 OpenBLAS on bf16-rounded operands". timing may be null (forced).
std::string describe_gemm_plan(const GemmPlan& plan, const GemmCapabilities& caps, const GemmTiming* timing,
                               GemmRequest request);

}  // namespace th::cpu
