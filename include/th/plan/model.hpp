#pragma once
// The model a plan is made for, as the planner sees it: shapes, the parameter tensors of every
// gather unit in declaration order, and the step's batch shape. Built from the deck's &model (the
// Transformer exactly as src/model builds it) or from a bare parameter count (plan%params with
// plan%layers and plan%width: a decoder-only GPT, d_ff = 4 x width, tied embeddings, pre-norm,
// sinusoidal positions, whose vocabulary takes up the parameters the blocks leave).
//
// Nothing here calls the model code: the unit lists restate, from the architecture, what
// src/model/transformer.cpp declares (embeddings | encoder blocks | encoder norm | decoder blocks |
// decoder norm | output), so that the planner is an independent model of it.
#include <cstdint>
#include <string>
#include <vector>

#include "th/core/tensor.hpp"

namespace th {

struct Config;

struct PlanModel {
  bool decoder_only = true;
  int d_model = 0, n_heads = 1, d_ff = 0;
  int encoder_layers = 0, decoder_layers = 0;
  std::int64_t vocab = 0;
  int max_len = 0;  // rows of the positional table
  // model%positions = 'learned': the table [max_len, D] is a parameter of the embeddings' unit;
  // else (sinusoidal) a buffer counted with the parameters' memory but not in params().
  bool learned_positions = false;
  bool tie_embeddings = true, pre_norm = false;
  double dropout = 0;
  bool gelu = false;  // the feed-forward activation is GELU (erf per element), else ReLU
  bool checkpointing = false;
  DType dtype = DType::F32;  // compute type: F32, BF16, F16 (master weights stay fp32)
  bool two_byte_params = true;  // precision%param_storage = 'auto' (the 2-byte compute copy)
  bool two_byte_grads = true;   // precision%grad_storage = 'auto' (16-bit runs' 2-byte gradients)
  // Parameter tensors (elements) of each gather unit, in declaration order.
  std::vector<std::vector<std::int64_t>> units;
  // Which unit is a block (enc/dec), a final norm, the embeddings, the untied output.
  enum class UnitKind { Embedding, EncoderBlock, EncoderNorm, DecoderBlock, DecoderNorm, Output };
  std::vector<UnitKind> kinds;

  std::int64_t params() const;  // without padding
  // Elements of the parameters no GEMM and no embedding lookup reads (biases, LayerNorm, learned
  // positions): the ones a 2-byte compute copy also keeps in fp32 (ParamStore::use_16bit_values).
  std::int64_t wide_params() const;
  bool mixed() const { return dtype != DType::F32; }
};

// The step's shape: every rank runs grad_accum micro-batches of micro_batch sequences, each of
// source length src (0 for decoder-only) and target length tgt.
struct PlanBatch {
  int micro_batch = 1, src = 0, tgt = 0, grad_accum = 1;
  double tokens_per_rank() const { return double(micro_batch) * (src + tgt) * grad_accum; }
};

// From the deck: &model, or plan%params / layers / width / heads; &precision dtype,
// &parallel activation_checkpointing. Throws th::InputError for a bare count too small for its
// layers and width.
PlanModel plan_model(const Config& cfg);
PlanModel bare_gpt(double params, int layers, int width, int heads);
PlanBatch plan_batch(const Config& cfg, const PlanModel& m);

// Multiply-adds of one sequence's forward pass through every matrix product (projections,
// attention scores and values, feed-forward, logits): the count task = 'bench' uses, so model
// FLOPs of a step = 6 x micro_batch x grad_accum x this.
double forward_macs_per_sequence(const PlanModel& m, int src, int tgt);

}  // namespace th
