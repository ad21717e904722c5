// The planner's picture of the model: unit lists restated from the architecture (see
// src/model/transformer.cpp for the declaration order they mirror), the batch shape, and the
// multiply-adds of a forward pass.
#include "th/plan/model.hpp"

#include <algorithm>
#include <cmath>

#include "th/config/config.hpp"
#include "th/core/error.hpp"

namespace th {

namespace {
using Unit = std::vector<std::int64_t>;

// Attention: q, k, v weights [D, D], their biases [D], out weight [D, D] and bias [D].
void attention(Unit& u, std::int64_t D) {
  for (int i = 0; i < 3; ++i) u.push_back(D * D);
  for (int i = 0; i < 3; ++i) u.push_back(D);
  u.push_back(D * D);
  u.push_back(D);
}
void feed_forward(Unit& u, std::int64_t D, std::int64_t F) {
  u.insert(u.end(), {F * D, F, D * F, D});
}
void layer_norm(Unit& u, std::int64_t D) { u.insert(u.end(), {D, D}); }

// Units in declaration order: embeddings (and the learned positional table), encoder blocks, encoder norm (pre-norm), decoder
// blocks, decoder norm (pre-norm), output (untied). A residual's sublayer is declared before its
// norm (the sublayer is built first, then handed to the residual).
void build_units(PlanModel& m) {
  using K = PlanModel::UnitKind;
  const std::int64_t D = m.d_model, F = m.d_ff, V = m.vocab;
  const bool enc = !m.decoder_only;
  m.units.clear();
  m.kinds.clear();
  auto add = [&](Unit u, K k) {
    m.units.push_back(std::move(u));
    m.kinds.push_back(k);
  };
  Unit embeddings = m.tie_embeddings ? Unit{V * D} : enc ? Unit{V * D, V * D} : Unit{V * D};
  if (m.learned_positions) embeddings.push_back(std::int64_t{m.max_len} * D);  // shared by both sides
  add(embeddings, K::Embedding);
  for (int i = 0; enc && i < m.encoder_layers; ++i) {
    Unit u;
    attention(u, D);
    layer_norm(u, D);
    feed_forward(u, D, F);
    layer_norm(u, D);
    add(u, K::EncoderBlock);
  }
  if (enc && m.pre_norm) add({D, D}, K::EncoderNorm);
  for (int i = 0; i < m.decoder_layers; ++i) {
    Unit u;
    attention(u, D);
    layer_norm(u, D);
    if (enc) {
      attention(u, D);
      layer_norm(u, D);
    }
    feed_forward(u, D, F);
    layer_norm(u, D);
    add(u, K::DecoderBlock);
  }
  if (m.pre_norm) add({D, D}, K::DecoderNorm);
  if (!m.tie_embeddings) add({V * D}, K::Output);
}
}  // namespace

std::int64_t PlanModel::params() const {
  std::int64_t n = 0;
  for (const auto& u : units)
    for (std::int64_t t : u) n += t;
  return n;
}

std::int64_t PlanModel::wide_params() const {
  const std::int64_t D = d_model, F = d_ff, attn = 4 * D, ffn = F + D, ln = 2 * D;
  const bool enc = !decoder_only;
  std::int64_t n = learned_positions ? std::int64_t{max_len} * D : 0;
  if (enc) n += encoder_layers * (attn + ln + ffn + ln) + (pre_norm ? ln : 0);
  n += decoder_layers * (attn + ln + (enc ? attn + ln : 0) + ffn + ln) + (pre_norm ? ln : 0);
  return n;
}

PlanModel bare_gpt(double params, int layers, int width, int heads) {
  PlanModel m;
  m.decoder_only = true;
  m.d_model = width;
  m.n_heads = heads > 0 ? heads : std::max(1, width / 128);
  m.d_ff = 4 * width;
  m.decoder_layers = layers;
  m.tie_embeddings = true;
  m.pre_norm = true;
  m.gelu = true;
  const double w = width, block = 12 * w * w + 13 * w;  // attention 4w^2+4w, FFN 8w^2+5w, 2 norms 4w
  const double rest = params - layers * block - 2 * w;  // the final norm; the rest is the embedding
  if (rest < w)
    throw InputError("plan%params = " + std::to_string(params) + " is too small for " + std::to_string(layers) +
                     " blocks of width " + std::to_string(width) + " (they alone hold " +
                     std::to_string(layers * block + 2 * w) + " parameters)");
  m.vocab = static_cast<std::int64_t>(std::llround(rest / w));
  build_units(m);
  return m;
}

PlanModel plan_model(const Config& cfg) {
  PlanModel m;
  if (cfg.plan.params > 0) {
    m = bare_gpt(cfg.plan.params, cfg.plan.layers, cfg.plan.width, cfg.plan.heads);
  } else {
    m.decoder_only = cfg.model.arch == "decoder-only";
    m.d_model = cfg.model.d_model;
    m.n_heads = cfg.model.n_heads;
    m.d_ff = cfg.model.d_ff;
    m.encoder_layers = m.decoder_only ? 0 : cfg.model.n_encoder_layers;
    m.decoder_layers = cfg.model.n_decoder_layers;
    m.vocab = cfg.model.vocab_size;
    m.tie_embeddings = cfg.model.tie_embeddings;
    m.pre_norm = cfg.model.norm == "pre";
    m.dropout = cfg.model.dropout;
    m.gelu = cfg.model.activation == "gelu";
    m.max_len = cfg.model.max_len;
    m.learned_positions = cfg.model.positions == "learned";
    build_units(m);
  }
  m.max_len = cfg.plan.params > 0 && cfg.plan.seq_len > 0 ? cfg.plan.seq_len : cfg.model.max_len;
  m.checkpointing = cfg.parallel.activation_checkpointing;
  m.dtype = parse_dtype(cfg.precision.dtype);
  m.two_byte_params = cfg.precision.param_storage == "auto";
  m.two_byte_grads = cfg.precision.grad_storage == "auto";
  return m;
}

PlanBatch plan_batch(const Config& cfg, const PlanModel& m) {
  PlanBatch b;
  const int len = cfg.plan.seq_len > 0 ? cfg.plan.seq_len : cfg.model.max_len;
  b.src = m.decoder_only ? 0 : len;
  b.tgt = len;
  b.micro_batch = cfg.plan.micro_batch > 0 ? cfg.plan.micro_batch : std::max(1, cfg.data.max_tokens / (b.src + b.tgt));
  b.grad_accum = cfg.optim.grad_accum;
  return b;
}

double forward_macs_per_sequence(const PlanModel& m, int src, int tgt) {
  const double d = m.d_model, f = m.d_ff, V = static_cast<double>(m.vocab), S = src, T = tgt;
  if (m.decoder_only) return m.decoder_layers * (T * (4 * d * d + 2 * d * f) + 2 * T * T * d) + T * d * V;
  const double enc = S * (4 * d * d + 2 * d * f) + 2 * S * S * d;
  const double dec = T * (6 * d * d + 2 * d * f) + S * 2 * d * d + 2 * T * T * d + 2 * T * S * d;
  return m.encoder_layers * enc + m.decoder_layers * dec + T * d * V;
}

}  // namespace th
