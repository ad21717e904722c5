// The oneDNN provider: matmul primitives (oneDNN 2.x API), one per shape, transposition, leading
// dimensions, batch strides, alpha, beta and thread count, cached per thread (a primitive takes
// tens to hundreds of microseconds to create; a small GEMM takes a few). Transposes and leading
// dimensions are expressed as memory strides, so nothing is copied. alpha is an output scale,
// beta a sum post-op (C is not read when beta == 0, as in BLAS).
#include <cblas.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "cpu/gemm_providers.hpp"

namespace th::cpu::detail {

namespace {
using dnnl::memory;
using dims = memory::dims;

// One GEMM as the primitive sees it (batch strides are 0 when batch == 1).
struct Gemm {
  bool bf16, ta, tb;
  int M, N, K, lda, ldb, ldc, batch, threads;
  std::int64_t sa, sb, sc;
  float alpha, beta;
};
// The cache key: every field as a 64-bit value (no padding bytes to compare or hash).
using Key = std::array<std::int64_t, 16>;
Key key_of(const Gemm& g) {
  std::int32_t alpha_bits, beta_bits;
  std::memcpy(&alpha_bits, &g.alpha, 4);
  std::memcpy(&beta_bits, &g.beta, 4);
  return {g.bf16, g.ta, g.tb, g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.batch, g.threads, g.sa, g.sb, g.sc,
          alpha_bits, beta_bits};
}
struct KeyHash {
  std::size_t operator()(const Key& k) const {
    std::size_t h = 1469598103934665603ull;
    for (std::int64_t v : k) h = (h ^ static_cast<std::size_t>(v)) * 1099511628211ull;
    return h;
  }
};

// A created primitive with its three memory objects (their data handles are set per call), or
// an empty entry remembering that this GEMM cannot be created.
struct Entry {
  std::unique_ptr<dnnl::matmul> prim;
  memory a, b, c;
};

const dnnl::engine& cpu_engine() {
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Logical [rows, cols] (batched: [batch, rows, cols]) of a row-major array with row stride ld,
// read transposed when `trans` (then the stored array is [cols, rows]).
memory::desc operand_desc(memory::data_type dt, bool trans, int rows, int cols, int ld, int batch,
                          std::int64_t stride) {
  const dims inner = trans ? dims{1, ld} : dims{ld, 1};
  if (batch == 1) return memory::desc({rows, cols}, dt, inner);
  return memory::desc({batch, rows, cols}, dt, {stride, inner[0], inner[1]});
}

std::unique_ptr<Entry> create(const Gemm& k) {
  auto e = std::make_unique<Entry>();
  const auto in = k.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  try {  // strides oneDNN refuses (a shared operand: batch stride 0) throw here already
    const auto a_md = operand_desc(in, k.ta, k.M, k.K, k.lda, k.batch, k.sa);
    const auto b_md = operand_desc(in, k.tb, k.K, k.N, k.ldb, k.batch, k.sb);
    const auto c_md = operand_desc(memory::data_type::f32, false, k.M, k.N, k.ldc, k.batch, k.sc);
    dnnl::primitive_attr attr;
    if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
    if (k.beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(k.beta);
      attr.set_post_ops(po);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, cpu_engine());
    e->prim = std::make_unique<dnnl::matmul>(pd);
    e->a = memory(a_md, cpu_engine(), DNNL_MEMORY_NONE);
    e->b = memory(b_md, cpu_engine(), DNNL_MEMORY_NONE);
    e->c = memory(c_md, cpu_engine(), DNNL_MEMORY_NONE);
  } catch (const dnnl::error&) {
    e->prim.reset();  // unimplemented for this type / ISA / layout: the caller falls back
  }
  return e;
}

// oneDNN here uses the OpenMP runtime: give its parallel regions the threads the rank's BLAS has
// (run%threads), so both providers compete on equal terms and ranks do not oversubscribe.
int sync_threads() {
  const int n = openblas_get_num_threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
  return n;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
}
}  // namespace

bool onednn_gemm(bool bf16, bool ta, bool tb, int M, int N, int K, float alpha, const void* A, int lda,
                 std::int64_t stride_a, const void* B, int ldb, std::int64_t stride_b, float beta, float* C,
                 int ldc, std::int64_t stride_c, int batch) {
  thread_local std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> cache;
  thread_local dnnl::stream stream(cpu_engine());
  Gemm g{bf16, ta, tb, M, N, K, lda, ldb, ldc, batch, sync_threads(), 0, 0, 0, alpha, beta};
  if (batch > 1) g.sa = stride_a, g.sb = stride_b, g.sc = stride_c;
  const Key k = key_of(g);
  auto it = cache.find(k);
  if (it == cache.end()) {
    if (cache.size() >= 1024) cache.clear();  // many sequence lengths: start over, bounded memory
    it = cache.emplace(k, create(g)).first;
  }
  Entry& e = *it->second;
  if (!e.prim) return false;
  e.a.set_data_handle(const_cast<void*>(A));
  e.b.set_data_handle(const_cast<void*>(B));
  e.c.set_data_handle(C);
  e.prim->execute(stream, {{DNNL_ARG_SRC, e.a}, {DNNL_ARG_WEIGHTS, e.b}, {DNNL_ARG_DST, e.c}});
  stream.wait();
  return true;
}

OnednnProbe onednn_probe() {
  OnednnProbe p;
  p.built = true;
  const dnnl::version_t* v = dnnl::version();
  p.version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  p.isa = isa_name(isa);
  p.bf16_native = isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  for (bool bf16 : {false, true}) {
    const auto in = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    const auto a = operand_desc(in, false, 64, 64, 64, 1, 0);
    const auto c = operand_desc(memory::data_type::f32, false, 64, 64, 64, 1, 0);
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), cpu_engine());
      (bf16 ? p.bf16 : p.fp32) = true;
      (bf16 ? p.bf16_impl : p.fp32_impl) = pd.impl_info_str();
    } catch (const dnnl::error&) {
    }
  }
  return p;
}

}  // namespace th::cpu::detail
