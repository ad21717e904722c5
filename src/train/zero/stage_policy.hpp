#pragma once
// The one place where a ZeRO stage number becomes behaviour. Every other part of the engine asks
// the policy a named question ("are the gradients partitioned?") instead of comparing stages.
//
//   stage 0  replicated: every rank holds and updates everything; gradients all-reduced
//   stage 1  moments (and the fp32 master) partitioned; gradients reduce-scattered at the end
//   stage 2  gradients partitioned too: reduced every micro-batch into the partition
//   stage 3  parameters partitioned too: gathered per unit for forward and backward
#include <cstdint>

#include "th/model/transformer.hpp"

namespace th::zero {

struct StagePolicy {
  int stage = 0;
  bool replicated = true;          // stage 0: no partition (one part: the whole buffer)
  bool grads_partitioned = false;  // stages 2-3
  bool params_partitioned = false; // stage 3
  // Model-state bytes per rank in fp32 (the ZeRO paper): whole x Psi + split x Psi / N.
  double formula_whole = 16, formula_split = 0;
  // Communication per step in units of Psi (N-1)/N x 4 bytes: all-reduce 2, stage 3 adds a gather.
  // Of those, the gradients' share (all-reduce 2, reduce-scatter 1): in 16-bit runs it moves 2-byte
  // values (GradientSync's wire type); the rest (parameter all-gathers) moves fp32.
  int comm_psi = 2;
  int comm_grad_psi = 2;
  const char* comm_formula = "2";
};

// Throws th::Error for a stage outside 0..3.
StagePolicy stage_policy(int stage);

// The model layout this policy needs (ModelSpec::param_align, param_segment_max,
// external_param_storage): every segment a multiple of layout_align() elements, at most
// bucket_mb. layout_align: 1 when replicated, else the world size N, or 2N in bf16 / fp16 (each rank's
// piece of a segment then has an even length and offset: the 2-byte compute copy is all-gathered
// as 4-byte words, two values each; th/plan/layout.cpp restates the rule).
int layout_align(const StagePolicy& policy, int world, DType compute);
void configure_layout(ModelSpec& spec, const StagePolicy& policy, double bucket_mb, int world, DType compute);

}  // namespace th::zero
