// Compute time of one micro-batch on one rank: every matrix product of the forward (and the two
// of its backward: input and weight gradients) as a roofline (the slower of its FLOPs at the
// sustained GEMM rate and its operands through memory) plus a fixed call cost, and the
// element-wise passes (norms, softmax, dropout, activations, residual adds, cross-entropy,
// embeddings) at memory bandwidth, counted from the kernels src/model calls.
// Legend: B sequences, S / T source / target positions, D d_model, H heads, Dh = D / H, F d_ff,
// V vocabulary.
#include <algorithm>

#include "th/plan/time.hpp"

namespace th {

namespace {

struct Rates {
  double flops, bandwidth, call_s, half_dim, elem_bytes, exp_rate;
};

// One product C[M, N] = A[M, K] B[K, N], `count` times: its FLOPs at the large-GEMM rate (the
// rate at 1024^3) scaled by d (1024 + h) / (1024 (d + h)), at most 1, for its smallest dimension
// d (thin products keep the units less busy), or its operands through memory if that is slower,
// plus the call's fixed cost.
double gemm_s(const Rates& r, double M, double N, double K, double count = 1) {
  const double flops = 2 * M * N * K, bytes = r.elem_bytes * (M * K + K * N + M * N);
  const double d = std::min({M, N, K}), h = r.half_dim;
  const double rate = r.flops * std::min(1.0, d * (1024 + h) / (1024 * (d + h)));
  return count * (std::max(flops / rate, bytes / r.bandwidth) + r.call_s);
}
// Its backward: dA[M, K] = dC B^T and dB[K, N] = A^T dC.
double gemm_bwd_s(const Rates& r, double M, double N, double K, double count = 1) {
  return gemm_s(r, M, K, N, count) + gemm_s(r, K, N, M, count);
}
double pass_s(const Rates& r, double elements) { return elements * r.elem_bytes / r.bandwidth; }
// Passes that evaluate exp / erf / a counter hash per element: the slower of the arithmetic and
// memory (`passes` reads and writes of each element).
double exp_s(const Rates& r, double elements, double passes) {
  return std::max(elements / r.exp_rate, passes * elements * r.elem_bytes / r.bandwidth);
}

struct Phase {
  double fwd = 0, bwd = 0;
};

// Attention over a query stream of Lq rows per sequence and keys of Lk (self: one [3D, D]
// projection; cross: [D, D] for the queries, [2D, D] for the memory's keys and values).
Phase attention(const Rates& r, double B, double H, double D, double Lq, double Lk, bool cross, bool drop) {
  const double Nq = B * Lq, Nk = B * Lk, Dh = D / H, probs = B * H * Lq * Lk;
  Phase p;
  if (!cross) {
    p.fwd += gemm_s(r, Nq, 3 * D, D), p.bwd += gemm_bwd_s(r, Nq, 3 * D, D);
  } else {
    p.fwd += gemm_s(r, Nq, D, D) + gemm_s(r, Nk, 2 * D, D);
    p.bwd += gemm_bwd_s(r, Nq, D, D) + gemm_bwd_s(r, Nk, 2 * D, D);
  }
  p.fwd += gemm_s(r, Lq, Lk, Dh, B * H) + gemm_s(r, Lq, Dh, Lk, B * H);  // scores, values
  p.bwd += gemm_bwd_s(r, Lq, Lk, Dh, B * H) + gemm_bwd_s(r, Lq, Dh, Lk, B * H);
  p.fwd += gemm_s(r, Nq, D, D), p.bwd += gemm_bwd_s(r, Nq, D, D);        // output projection
  // Element-wise: bias adds, softmax (max; exp and sum; normalize), dropout of the probabilities
  // (a hash per element; backward re-draws the mask twice: the dropped copy and dP), softmax
  // backward, bias gradients.
  p.fwd += pass_s(r, 2 * Nq * 3 * D + 2 * Nq * D + 2 * probs) + exp_s(r, probs, 2) + (drop ? exp_s(r, probs, 2) : 0);
  p.bwd += pass_s(r, Nq * 3 * D + Nq * D + 3 * probs) + (drop ? 2 * exp_s(r, probs, 2) : 0);
  return p;
}

Phase feed_forward(const Rates& r, double N, double D, double F, bool drop, bool gelu) {
  Phase p;
  p.fwd = gemm_s(r, N, F, D) + gemm_s(r, N, D, F);
  p.bwd = gemm_bwd_s(r, N, F, D) + gemm_bwd_s(r, N, D, F);
  // bias + activation (GELU: an erf per element; backward an erf and an exp), dropout (a hash
  // per element; backward twice), fc2 bias; backward: the mirror and the bias gradients.
  const double act_fwd = gelu ? exp_s(r, N * F, 2) : pass_s(r, 2 * N * F);
  const double act_bwd = gelu ? exp_s(r, 2 * N * F, 1.5) : pass_s(r, 3 * N * F);
  p.fwd += act_fwd + (drop ? exp_s(r, N * F, 2) : 0) + pass_s(r, 2 * N * D);
  p.bwd += act_bwd + pass_s(r, N * F) + (drop ? 2 * exp_s(r, N * F, 2) : 0) + pass_s(r, N * D);
  return p;
}

// Residual, dropout and LayerNorm around a sublayer: dropout-add (read 2, write 1), LayerNorm
// (statistics, normalize); backward: LayerNorm backward (read dy and x, write dx), dropout of the
// gradient, the residual add.
Phase residual(const Rates& r, double N, double D) {
  return {pass_s(r, 6 * N * D), pass_s(r, 9 * N * D)};
}

}  // namespace

ComputeTime estimate_compute(const PlanModel& m, const PlanBatch& b, const Machine& machine, double share) {
  const double eb = m.mixed() ? machine.bytes_16bit : 4;
  const Rates r{machine.peak_tflops(m.dtype) * 1e12 * machine.gemm_efficiency * share,
                machine.memory_bandwidth_gbs * 1e9 * share, machine.gemm_call_us * 1e-6, machine.gemm_half_dim, eb,
                machine.exp_gelems * 1e9 * share};
  const bool gelu = m.gelu;
  const double B = b.micro_batch, S = b.src, T = b.tgt, D = m.d_model, H = m.n_heads, F = m.d_ff;
  const double V = static_cast<double>(m.vocab);
  const bool drop = m.dropout > 0, enc = !m.decoder_only;
  // 16-bit emulation rounds every block output and activation gradient in place (CPU backend).
  const double rounding = m.mixed() && machine.bytes_16bit == 4 ? 2 : 0;

  Phase enc_block, dec_block;
  if (enc) {
    const Phase a = attention(r, B, H, D, S, S, false, drop), f = feed_forward(r, B * S, D, F, drop, gelu);
    const Phase res = residual(r, B * S, D);
    enc_block = {a.fwd + f.fwd + 2 * res.fwd + pass_s(r, rounding * B * S * D),
                 a.bwd + f.bwd + 2 * res.bwd + pass_s(r, rounding * B * S * D)};
  }
  {
    const Phase a = attention(r, B, H, D, T, T, false, drop), f = feed_forward(r, B * T, D, F, drop, gelu);
    const Phase res = residual(r, B * T, D);
    dec_block = {a.fwd + f.fwd + 2 * res.fwd, a.bwd + f.bwd + 2 * res.bwd};
    if (enc) {
      const Phase c = attention(r, B, H, D, T, S, true, drop);
      dec_block.fwd += c.fwd + res.fwd;
      dec_block.bwd += c.bwd + res.bwd;
    }
    dec_block.fwd += pass_s(r, rounding * B * T * D);
    dec_block.bwd += pass_s(r, rounding * B * T * D);
  }
  // Embeddings (gather, positional table, dropout), final norms, logits and cross-entropy
  // (max, log-sum-exp, loss; backward: softmax minus target into the logits' buffer).
  const double Ns = B * S, Nt = B * T;
  Phase embed{pass_s(r, 5 * (Ns + Nt) * D), pass_s(r, 4 * (Ns + Nt) * D)};
  Phase norms{m.pre_norm ? pass_s(r, 3 * (Ns + Nt) * D) : 0, m.pre_norm ? pass_s(r, 4 * (Ns + Nt) * D) : 0};
  // Cross-entropy: forward a max pass then exp and sum per logit; backward exp per logit.
  Phase out{gemm_s(r, Nt, V, D) + pass_s(r, (1 + rounding) * Nt * V) + exp_s(r, Nt * V, 1),
            gemm_bwd_s(r, Nt, V, D) + pass_s(r, rounding * Nt * V) + exp_s(r, Nt * V, 2)};

  ComputeTime c;
  using Kind = PlanModel::UnitKind;
  for (Kind k : m.kinds) {
    Phase p;
    switch (k) {
      case Kind::Embedding: p = embed; break;
      case Kind::EncoderBlock: p = enc_block; break;
      case Kind::DecoderBlock: p = dec_block; break;
      case Kind::EncoderNorm:
      case Kind::DecoderNorm: p = {norms.fwd / (enc ? 2 : 1), norms.bwd / (enc ? 2 : 1)}; break;
      case Kind::Output: break;  // the logits: output_forward / output_backward
    }
    c.unit_forward.push_back(p.fwd);
    c.unit_backward.push_back(p.bwd);
    c.forward += p.fwd;
    c.backward += p.bwd;
    if (m.checkpointing && (k == Kind::EncoderBlock || k == Kind::DecoderBlock)) c.recompute += p.fwd;
  }
  c.output_forward = out.fwd;
  c.output_backward = out.bwd;
  c.forward += out.fwd;
  c.backward += out.bwd;
  return c;
}

}  // namespace th
