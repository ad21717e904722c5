#include "th/model/transformer.hpp"

#include <cmath>
#include <type_traits>

#include "buffers.hpp"
#include "weights.hpp"
#include "th/core/error.hpp"

namespace th {

namespace {
// Dropout sites 1 and 2 are the embeddings; layers count up from 16.
constexpr std::uint64_t kSrcEmbedSite = 1, kTgtEmbedSite = 2;
}  // namespace

double transformer_parameter_count(const ModelSpec& s) {
  const double D = s.d_model, F = s.d_ff, V = s.vocab_size;
  const bool enc = !s.decoder_only;
  const double attention = 4 * D * D + 4 * D, ffn = 2 * D * F + F + D, norm = 2 * D;
  const double encoder_layer = attention + ffn + 2 * norm;
  const double decoder_layer = enc ? 2 * attention + ffn + 3 * norm : attention + ffn + 2 * norm;
  const double embeddings = s.tie_embeddings ? V * D : (enc ? 3 : 2) * V * D;  // untied: + output projection
  const double final_norms = s.pre_norm ? (enc ? 2 : 1) * norm : 0;
  const double positions = s.positions == PositionEncoding::Learned ? double(s.max_len) * D : 0;  // one shared table
  return embeddings + positions + (enc ? s.n_encoder_layers : 0) * encoder_layer + s.n_decoder_layers * decoder_layer + final_norms;
}

template <typename T>
Transformer<T>::Transformer(const ModelSpec& s, Backend& backend)
    : spec_(s), be_(backend), params_(backend), store_(activation_storage<T>(s.compute)) {
  TH_CHECK(s.vocab_size > 0, "vocab_size must be set before the model is built");
  TH_CHECK(s.d_model % s.n_heads == 0, "n_heads must divide d_model");
  const int D = s.d_model, V = s.vocab_size;
  const bool enc = !s.decoder_only;
  params_.set_segmenting(s.param_align, s.param_segment_max);
  embed_unit_ = params_.current_unit();
  if (s.tie_embeddings) {
    src_embed_ = tgt_embed_ = out_proj_ = params_.declare("embed/weight", {V, D}, ParamInit::EmbeddingNormal);
  } else {
    if (enc) src_embed_ = params_.declare("encoder/embed/weight", {V, D}, ParamInit::EmbeddingNormal);
    tgt_embed_ = params_.declare("decoder/embed/weight", {V, D}, ParamInit::EmbeddingNormal);
  }
  // In the embeddings' unit: ZeRO stage 3 gathers it with the token tables that it is added to.
  if (s.positions == PositionEncoding::Learned)
    pos_embed_ = params_.declare("pos_embed/weight", {s.max_len, D}, ParamInit::PositionNormal);
  params_.end_unit();
  std::uint64_t site = 16;
  auto residual = [&](const std::string& norm, std::unique_ptr<Sublayer<T>> f) {
    return std::make_unique<Residual<T>>(params_, norm, std::move(f), D, s.pre_norm, s.dropout, site++);
  };
  auto attention = [&](const std::string& name, bool cross, bool causal) {
    return std::make_unique<Attention<T>>(params_, name, D, s.n_heads, cross, causal, s.dropout, site++);
  };
  auto ffn = [&](const std::string& name) {
    return std::make_unique<FeedForward<T>>(params_, name, D, s.d_ff, s.activation, s.dropout, site++);
  };
  for (int i = 0; enc && i < s.n_encoder_layers; ++i) {
    const std::string p = "encoder/layer_" + std::to_string(i);
    enc_begin_.push_back(params_.size());
    enc_unit_.push_back(params_.current_unit());
    std::vector<std::unique_ptr<Residual<T>>> parts;
    parts.push_back(residual(p + "/norm1", attention(p + "/self_attn", false, false)));
    parts.push_back(residual(p + "/norm2", ffn(p + "/ffn")));
    encoder_.push_back(std::make_unique<Block<T>>(std::move(parts), D, s.activation_checkpointing, p));
    params_.end_unit();
  }
  enc_norm_begin_ = params_.size();
  if (enc && s.pre_norm) {
    enc_norm_unit_ = params_.current_unit();
    enc_norm_ = std::make_unique<LayerNorm<T>>(params_, "encoder/final_norm", D);
    params_.end_unit();
  }
  for (int i = 0; i < s.n_decoder_layers; ++i) {
    const std::string p = "decoder/layer_" + std::to_string(i);
    dec_begin_.push_back(params_.size());
    dec_unit_.push_back(params_.current_unit());
    std::vector<std::unique_ptr<Residual<T>>> parts;
    parts.push_back(residual(p + "/norm1", attention(p + "/self_attn", false, true)));
    if (enc) parts.push_back(residual(p + "/norm2", attention(p + "/cross_attn", true, false)));
    parts.push_back(residual(p + (enc ? "/norm3" : "/norm2"), ffn(p + "/ffn")));
    decoder_.push_back(std::make_unique<Block<T>>(std::move(parts), D, s.activation_checkpointing, p));
    params_.end_unit();
  }
  dec_norm_begin_ = params_.size();
  if (s.pre_norm) {
    dec_norm_unit_ = params_.current_unit();
    dec_norm_ = std::make_unique<LayerNorm<T>>(params_, "decoder/final_norm", D);
    params_.end_unit();
  }
  out_unit_ = embed_unit_;
  if (!s.tie_embeddings) {
    out_unit_ = params_.current_unit();
    out_proj_ = params_.declare("output/weight", {V, D}, ParamInit::XavierUniform);
  }
  if (!s.external_param_storage) {
    const bool bf16_operands = std::is_same_v<T, float> && backend.kernels<float>().bf16_operands();
    params_.allocate(s.two_byte_params && bf16_operands ? s.compute : DType::F32, !(s.two_byte_grads && bf16_operands));
  }
  if (s.positions == PositionEncoding::Sinusoidal) {
    // The sinusoidal table is a buffer, not a parameter: computed, never trained or communicated.
    pe_ = be_.empty({s.max_len, D}, dtype_of<T>(), MemCategory::Parameters);
    kernels().sinusoidal_table(pe_.data<T>(), s.max_len, D);
  }
}

template <typename T> Transformer<T>::~Transformer() = default;

template <typename T> void Transformer<T>::round_compute(T* x, std::int64_t n) const {
  if constexpr (std::is_same_v<T, float>) {
    if (spec_.compute == DType::BF16) be_.round_to_bf16(x, n);
    if (spec_.compute == DType::F16) be_.round_to_fp16(x, n);
  } else {
    TH_CHECK(spec_.compute == DType::F32 || spec_.compute == DType::F64, "16-bit compute needs a float model");
  }
}

template <typename T> const T* Transformer<T>::positional_table() const {
  return pos_embed_ >= 0 ? params_.value(pos_embed_) : pe_.data<T>();
}

template <typename T>
void Transformer<T>::embed(T* y, const std::vector<int>& tokens, int B, int L, std::int64_t table) {
  if (L > spec_.max_len)
    throw InputError("a batch holds a sequence of " + std::to_string(L) + " positions (BOS/EOS included), more "
                     "than model%max_len = " + std::to_string(spec_.max_len) + "; raise model%max_len");
  for (int t : tokens)
    TH_CHECK(t >= 0 && t < spec_.vocab_size, "token id " + std::to_string(t) + " outside the vocabulary");
  const T scale = T(std::sqrt(static_cast<double>(spec_.d_model)));
  Tensor keep;  // the table's 2-byte compute copy (bf16 bits; fp16 widened), or fp32
  const Weight<T> w = weight(params_, table).fp32(static_cast<std::int64_t>(spec_.vocab_size) * spec_.d_model, keep);
  if (w.h)
    kernels().embedding_forward_bf16(y, tokens.data(), w.h, positional_table(), B, L, spec_.d_model, scale);
  else
    kernels().embedding_forward(y, tokens.data(), w.f, positional_table(), B, L, spec_.d_model, scale);
}

template <typename T>
void Transformer<T>::embed_inputs(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train,
                                  bool target) {
  const int D = spec_.d_model, B = batch.B;
  const float p = train ? spec_.dropout : 0.0f;
  // One side: the block inputs x (x[0] = dropout(embedding), rounded to the compute type).
  auto embed_side = [&](std::vector<Saved<T>>& x, std::size_t blocks, const std::vector<int>& tokens, int L,
                        std::int64_t table, std::uint64_t site) {
    const std::int64_t rows = static_cast<std::int64_t>(B) * L;
    x.assign(blocks + 1, Saved<T>());
    // No blocks (the encoder's output is the embedding itself): kept in T as the memory.
    T* e = x[0].make(be_, rows, D, blocks ? store_ : dtype_of<T>());
    embed(e, tokens, B, L, table);
    kernels().dropout_forward(e, e, rows * D, p, seed, dropout_stream(site, micro));
    round_compute(e, rows * D);
  };
  acquire(embed_unit_);
  if (!spec_.decoder_only) embed_side(enc_x_, encoder_.size(), batch.src, batch.S, src_embed_, kSrcEmbedSite);
  if (target) embed_side(dec_x_, decoder_.size(), batch.tgt_in, batch.T, tgt_embed_, kTgtEmbedSite);
  release(embed_unit_);
}

template <typename T>
void Transformer<T>::run_encoder(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train) {
  const int D = spec_.d_model, B = batch.B;
  const Stream src{B, batch.S, batch.src_len.data()};
  enc_ctx_ = StepCtx<T>{src, Stream{}, nullptr, nullptr, seed, micro, train};
  enc_ctx_.store = store_;
  const std::int64_t n = src.rows() * D;
  for (std::size_t i = 0; i < encoder_.size(); ++i) {
    // Without a final norm the stack output is the memory the decoder reads: kept in T.
    const bool is_memory = !enc_norm_ && i + 1 == encoder_.size();
    T* out = enc_x_[i + 1].make(be_, src.rows(), D, is_memory ? dtype_of<T>() : store_);
    acquire(enc_unit_[i]);
    encoder_[i]->forward(out, enc_x_[i].wide(), enc_ctx_);
    release(enc_unit_[i]);
    round_compute(out, n);
    enc_x_[i].pack();  // block i's input, for its backward
  }
  if (enc_norm_) {
    memory_ = saved_buffer<T>(be_, src.rows(), D);
    acquire(enc_norm_unit_);
    enc_norm_->forward(memory_.data<T>(), enc_x_.back().wide(), src.rows());
    release(enc_norm_unit_);
    round_compute(memory_);
    enc_x_.back().pack();
  } else {
    memory_ = enc_x_.back().wide_tensor();
  }
}

template <typename T> Tensor Transformer<T>::encode(const Batch& batch) {
  TH_CHECK(!spec_.decoder_only, "encode() on a decoder-only model");
  embed_inputs(batch, 0, 0, false, false);
  run_encoder(batch, 0, 0, false);
  Tensor memory = memory_;
  discard();
  return memory;
}

template <typename T> void Transformer<T>::discard() {
  if (out_held_) {
    out_held_ = false;
    release(out_unit_);
  }
  for (auto& b : encoder_) b->release();
  for (auto& b : decoder_) b->release();
  if (enc_norm_) enc_norm_->release();
  if (dec_norm_) dec_norm_->release();
  enc_x_.clear(); dec_x_.clear();
  memory_.reset(); dmemory_.reset(); final_.reset(); logits_.reset(); losses_.reset(); lse_.reset();
  dlogits16_.reset();
  batch_ = nullptr;
}

template <typename T>
double Transformer<T>::forward(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train) {
  const int D = spec_.d_model, V = spec_.vocab_size, B = batch.B;
  if (out_held_) {  // a forward without backward or discard before it
    out_held_ = false;
    release(out_unit_);
  }
  batch_ = &batch;
  TH_CHECK(batch.doc_start.empty() || (spec_.decoder_only && static_cast<std::int64_t>(batch.doc_start.size()) ==
                                                                  static_cast<std::int64_t>(B) * batch.T),
           "a document mask needs a decoder-only model and one start per target position");
  const Stream src{B, batch.S, batch.src_len.data()};
  const Stream tgt{B, batch.T, batch.tgt_len.data(), batch.doc_start.empty() ? nullptr : batch.doc_start.data()};
  // Both embeddings first: the (tied) table is needed once, not again after the encoder.
  embed_inputs(batch, seed, micro, train, true);
  if (!spec_.decoder_only) {
    run_encoder(batch, seed, micro, train);
  }
  dec_ctx_ = StepCtx<T>{tgt, src, memory_.defined() ? memory_.data<T>() : nullptr, nullptr, seed, micro, train};
  dec_ctx_.store = store_;
  const std::int64_t n = tgt.rows() * D;
  for (std::size_t i = 0; i < decoder_.size(); ++i) {
    T* out = dec_x_[i + 1].make(be_, tgt.rows(), D, store_);
    acquire(dec_unit_[i]);
    decoder_[i]->forward(out, dec_x_[i].wide(), dec_ctx_);
    release(dec_unit_[i]);
    round_compute(out, n);
    dec_x_[i].pack();  // block i's input, for its backward
  }
  const T* final_in = dec_x_.back().wide();  // the output projection's input
  if (dec_norm_) {
    T* f = final_.make(be_, tgt.rows(), D, store_);
    acquire(dec_norm_unit_);
    dec_norm_->forward(f, final_in, tgt.rows());
    release(dec_norm_unit_);
    round_compute(f, n);
    dec_x_.back().pack();
    final_in = f;
  }
  acquire(out_unit_);  // held until backward has used it (or discard())
  out_held_ = true;
  // Inference keeps the logits in T (logits() reads them); training stores them like every activation.
  T* logits = logits_.make(be_, tgt.rows(), V, train ? store_ : dtype_of<T>());
  Saved<T>& fin = dec_norm_ ? final_ : dec_x_.back();
  // bf16 training where the backend takes bf16 operands: the stored input of the output projection
  // is its GEMM operand, and the loss's forward writes the logits' gradient in bf16 (below).
  const bool bf16_direct = train && logits_.bf16_storage() && kernels().bf16_operands();
  if (bf16_direct) {
    fin.pack();
    linear_fwd(kernels(), logits, nullptr, fin.bf16(), weight(params_, out_proj_), nullptr, tgt.rows(), D, V);
  } else {
    linear_fwd(kernels(), logits, final_in, nullptr, weight(params_, out_proj_), nullptr, tgt.rows(), D, V);
    fin.pack();
  }
  if (!dec_norm_) final_ = dec_x_.back();  // the same saved values
  round_compute(logits, tgt.rows() * V);
  losses_ = saved_buffer<T>(be_, tgt.rows(), 1);
  lse_ = saved_buffer<T>(be_, tgt.rows(), 1);
  double sum;
  if (bf16_direct) {
    dlogits16_ = be_.empty({tgt.rows(), V}, DType::BF16, MemCategory::Activations);
    sum = kernels().cross_entropy_forward_grad_bf16(losses_.data<T>(), lse_.data<T>(),
                                                    static_cast<std::uint16_t*>(dlogits16_.raw()), logits,
                                                    batch.tgt_out.data(), tgt.rows(), V, T(spec_.label_smoothing),
                                                    spec_.pad_id, &count_);
    logits_.reset();
  } else {
    sum = kernels().cross_entropy_forward(losses_.data<T>(), lse_.data<T>(), logits, batch.tgt_out.data(), tgt.rows(),
                                          V, T(spec_.label_smoothing), spec_.pad_id, &count_);
    logits_.pack();
  }
  return count_ > 0 ? sum / static_cast<double>(count_) : 0.0;
}

template <typename T> void Transformer<T>::backward(double loss_scale, const GradsReadyFn& grads_ready) {
  // Declaration order is embeddings | encoder | encoder norm | decoder | decoder norm | output,
  // so the final gradients form a growing suffix of the flat buffer as backward walks back.
  auto ready = [&](std::int64_t w) {
    if (grads_ready) grads_ready(w);
  };
  TH_CHECK(batch_ && (logits_.defined() || dlogits16_.defined()), "backward without forward");
  const Batch& batch = *batch_;
  const int D = spec_.d_model, V = spec_.vocab_size;
  const std::int64_t Nt = dec_ctx_.self.rows(), Ns = enc_ctx_.self.rows();
  const T scale = T(std::sqrt(static_cast<double>(D)));
  const std::uint64_t seed = dec_ctx_.seed, micro = dec_ctx_.micro;
  const float p = dec_ctx_.train ? spec_.dropout : 0.0f;
  const T dloss = T(count_ > 0 ? loss_scale / static_cast<double>(count_) : 0.0);
  Tensor wide_logits, wide;  // 16-bit runs: saved values widened to T
  Tensor g = scratch_buffer<T>(be_, Nt, D), g2 = scratch_buffer<T>(be_, Nt, D);
  if (dlogits16_.defined()) {  // bf16: forward wrote the logits' gradient (dloss = 1) in bf16
    writing(out_unit_);  // the embeddings' unit when tied
    output_backward(g.data<T>(), nullptr, static_cast<const std::uint16_t*>(dlogits16_.raw()), static_cast<float>(dloss),
                    nullptr, final_.bf16());
    dlogits16_.reset();
  } else {
    T* dlogits = logits_.widen(wide_logits);  // overwritten in place
    kernels().cross_entropy_backward(dlogits, dlogits, lse_.data<T>(), batch.tgt_out.data(), Nt, V,
                                     T(spec_.label_smoothing), spec_.pad_id, dloss);
    round_compute(dlogits, Nt * V);
    writing(out_unit_);  // the embeddings' unit when tied
    output_backward(g.data<T>(), dlogits, nullptr, 1.0f, final_.widen(wide), nullptr);
  }
  round_compute(g);
  logits_.reset();
  wide_logits.reset();
  final_.reset();
  out_held_ = false;
  release(out_unit_);
  if (!spec_.tie_embeddings) ready(out_proj_);
  if (dec_norm_) {
    acquire(dec_norm_unit_);
    writing(dec_norm_unit_);
    dec_norm_->backward(g2.data<T>(), g.data<T>(), dec_x_.back().widen(wide), Nt);
    release(dec_norm_unit_);
    std::swap(g, g2);
    round_compute(g);
    ready(dec_norm_begin_);
  }
  if (!spec_.decoder_only) {
    dmemory_ = be_.zeros({Ns, D}, dtype_of<T>(), MemCategory::Workspace);
    dec_ctx_.dmem = dmemory_.data<T>();
  }
  for (std::size_t i = decoder_.size(); i-- > 0;) {
    acquire(dec_unit_[i]);  // for the recomputation too, with activation checkpointing
    writing(dec_unit_[i]);
    decoder_[i]->backward(g2.data<T>(), g.data<T>(), dec_x_[i].widen(wide), dec_ctx_);
    release(dec_unit_[i]);
    std::swap(g, g2);
    round_compute(g);
    dec_x_[i + 1].reset();
    ready(dec_begin_[i]);
  }
  kernels().dropout_forward(g.data<T>(), g.data<T>(), Nt * D, p, seed, dropout_stream(kTgtEmbedSite, micro));
  writing(embed_unit_);
  embedding_backward(tgt_embed_, batch.tgt_in.data(), g.data<T>(), Nt, scale);
  if (pos_embed_ >= 0) kernels().position_backward(params_.grad(pos_embed_), g.data<T>(), batch.B, batch.T, D);
  if (!spec_.decoder_only) {
    round_compute(dmemory_);  // summed over the decoder blocks' cross-attentions in fp32
    Tensor e = scratch_buffer<T>(be_, Ns, D), e2 = scratch_buffer<T>(be_, Ns, D);
    if (enc_norm_) {
      acquire(enc_norm_unit_);
      writing(enc_norm_unit_);
      enc_norm_->backward(e.data<T>(), dmemory_.data<T>(), enc_x_.back().widen(wide), Ns);
      release(enc_norm_unit_);
      round_compute(e);
      ready(enc_norm_begin_);
    } else {
      std::swap(e, dmemory_);
    }
    for (std::size_t i = encoder_.size(); i-- > 0;) {
      acquire(enc_unit_[i]);
      writing(enc_unit_[i]);
      encoder_[i]->backward(e2.data<T>(), e.data<T>(), enc_x_[i].widen(wide), enc_ctx_);
      release(enc_unit_[i]);
      std::swap(e, e2);
      round_compute(e);
      enc_x_[i + 1].reset();
      ready(enc_begin_[i]);
    }
    kernels().dropout_forward(e.data<T>(), e.data<T>(), Ns * D, p, seed, dropout_stream(kSrcEmbedSite, micro));
    writing(embed_unit_);
    embedding_backward(src_embed_, batch.src.data(), e.data<T>(), Ns, scale);
    if (pos_embed_ >= 0) kernels().position_backward(params_.grad(pos_embed_), e.data<T>(), batch.B, batch.S, D);
  }
  ready(0);
  discard();
}

template <typename T>
void Transformer<T>::output_backward(T* dx, const T* dy, const std::uint16_t* dy16, float alpha, const T* x,
                                     const std::uint16_t* x16) {
  const int D = spec_.d_model, V = spec_.vocab_size;
  const std::int64_t N = dec_ctx_.self.rows();
  T* dW = params_.grad(out_proj_);
  // The [V, D] weight gradient in row blocks (a V x D fp32 gradient would be the largest
  // transient of a 2-byte gradient store). With a bf16 dy (the bf16 kernels): both products per
  // block of dy's columns, dx accumulated over the blocks, each block of dy converted once for
  // both; else (fp32 dy and x) dx in one product and the weight gradient's row blocks as GEMMs of
  // their own.
  const Weight<T> W = weight(params_, out_proj_);
  if (dy16) {  // bf16 runs only: W is fp32 or bf16 bits
    TH_CHECK(!W.fp16_bits, "output_backward: a bf16 dy with fp16 weights");
    by_row_blocks(out_proj_, [&](int r0, int r1) {
      const std::int64_t o = static_cast<std::int64_t>(r0) * D;
      kernels().linear_backward_bf16(dx, dW + o, nullptr, nullptr, dy16 + r0, alpha, x16 ? nullptr : x, x16,
                                     W.f ? W.f + o : nullptr, W.h ? W.h + o : nullptr, N, D, r1 - r0, r0 > 0, V);
    });
    return;
  }
  TH_CHECK(!x16 && alpha == 1.0f, "output_backward: an fp32 dy goes with an fp32 x and alpha 1");
  linear_bwd(kernels(), dx, nullptr, nullptr, dy, nullptr, 1.0f, x, nullptr, W, N, D, V);
  by_row_blocks(out_proj_, [&](int r0, int r1) {
    if (N > 0)
      kernels().gemm(true, false, r1 - r0, D, static_cast<int>(N), T(1), dy + r0, V, x, D, T(1),
                     dW + static_cast<std::int64_t>(r0) * D, D);
  });
}

template <typename T>
void Transformer<T>::embedding_backward(std::int64_t table, const int* tokens, const T* dy, std::int64_t N, T scale) {
  const int D = spec_.d_model;
  if (!params_.takes_written()) return kernels().embedding_backward(params_.grad(table), tokens, dy, N, D, scale);
  by_row_blocks(table, [&](int r0, int r1) {
    kernels().embedding_backward_rows(params_.grad(table), tokens, dy, N, D, scale, r0, r1);
  });
}

template <typename T>
template <class F>
void Transformer<T>::by_row_blocks(std::int64_t table, F&& f) {
  const int D = spec_.d_model, V = spec_.vocab_size, rows = grad_block_rows(D);
  for (int r0 = 0; r0 < V; r0 += rows) {
    const int r1 = std::min(V, r0 + rows);
    params_.writing(table + static_cast<std::int64_t>(r0) * D, static_cast<std::int64_t>(r1 - r0) * D);
    f(r0, r1);
    params_.written(table + static_cast<std::int64_t>(r0) * D, static_cast<std::int64_t>(r1 - r0) * D);
  }
}

template <typename T> void Transformer<T>::set_grad_access(GradAccess* access) {
  grad_access_ = access;
  if (access && access->takes_written())
    params_.on_written([access](std::int64_t b, std::int64_t e) { access->written(b, e); });
  else
    params_.on_written(nullptr);
  if (access)
    params_.on_writing([access](std::int64_t b, std::int64_t e) { access->writing_range(b, e); });
  else
    params_.on_writing(nullptr);
}

template <typename T> std::int64_t Transformer<T>::flops_per_token_estimate() const {
  return 6 * params_.size();
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace th
