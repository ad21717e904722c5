// The model of a deck: the &model keys (and the few of &optim, &parallel, &precision that shape
// the forward pass) as a ModelSpec.
#include "th/model/model_spec.hpp"

#include "th/model/tokens.hpp"

namespace th {

ModelSpec model_spec(const Config& cfg, int vocab_size) {
  ModelSpec s;
  s.decoder_only = cfg.model.arch == "decoder-only";
  s.d_model = cfg.model.d_model;
  s.n_heads = cfg.model.n_heads;
  s.d_ff = cfg.model.d_ff;
  s.n_encoder_layers = s.decoder_only ? 0 : cfg.model.n_encoder_layers;
  s.n_decoder_layers = cfg.model.n_decoder_layers;
  s.activation = cfg.model.activation == "gelu" ? cpu::Activation::GELU : cpu::Activation::ReLU;
  s.pre_norm = cfg.model.norm == "pre";
  s.dropout = static_cast<float>(cfg.model.dropout);
  s.tie_embeddings = cfg.model.tie_embeddings;
  s.max_len = cfg.model.max_len;
  s.positions = cfg.model.positions == "learned" ? PositionEncoding::Learned : PositionEncoding::Sinusoidal;
  s.vocab_size = vocab_size;
  s.pad_id = SpecialTokens::pad;
  s.label_smoothing = cfg.optim.label_smoothing;
  s.activation_checkpointing = cfg.parallel.activation_checkpointing;
  s.compute = parse_dtype(cfg.precision.dtype);
  return s;
}

Backend& run_backend(const Config& cfg) {
  Backend& be = backend_for(parse_backend_kind(cfg.run.backend));
  be.configure_gemms(parse_dtype(cfg.precision.dtype), cfg.precision.allow_tf32);
  return be;
}

}  // namespace th
