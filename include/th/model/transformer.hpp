#pragma once
// The whole model: encoder-decoder (seq2seq) or decoder-only (language model), built from the
// layers in layers.hpp. forward() computes the loss of a batch and keeps what backward() needs;
// backward() accumulates parameter gradients into params().grads().
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "th/core/tensor.hpp"
#include "th/model/layers.hpp"
#include "th/model/params.hpp"

namespace th {

// The positional table added to the scaled token embeddings (row t at position t, from 0 on each
// side): fixed sines and cosines (a buffer), or a trained parameter "pos_embed/weight"
// [max_len, D] (GPT-2), one table shared by the encoder and decoder inputs.
enum class PositionEncoding { Sinusoidal, Learned };

// Rows of a [V, D] table's gradient block (the output projection's weight-gradient GEMM and, for
// a 2-byte gradient store, the embeddings' lookups are made block by block): about 2^18 elements
// each, so a 2-byte gradient store's fp32 window holds one (th/train/zero.hpp).
inline int grad_block_rows(int d_model) { return std::max(1, (1 << 18) / std::max(d_model, 1)); }

struct ModelSpec {
  bool decoder_only = false;
  int d_model = 512, n_heads = 8, d_ff = 2048;
  int n_encoder_layers = 6, n_decoder_layers = 6;
  cpu::Activation activation = cpu::Activation::ReLU;
  bool pre_norm = false;
  float dropout = 0.1f;
  bool tie_embeddings = true;
  int max_len = 256;
  PositionEncoding positions = PositionEncoding::Sinusoidal;
  int vocab_size = 0;
  int pad_id = 0;
  double label_smoothing = 0.0;
  bool activation_checkpointing = false;
  // Layout of the flat buffers for ZeRO partitioning (ParamStore::set_segmenting): segments
  // padded to a multiple of param_align elements, at most param_segment_max each (0: no limit).
  std::int64_t param_align = 1, param_segment_max = 0;
  // The caller attaches the buffers (ParamStore::attach) instead of the model allocating them.
  bool external_param_storage = false;
  // bf16/fp16 with ZeRO stages 0-2 (ZeroEngine::configure; stage 3 attaches a 2-byte range of its
  // own): the values are allocated as the 2-byte compute copy of `compute`
  // (ParamStore::use_16bit_values) where the backend takes bf16 operands, never in fp32.
  bool two_byte_params = false;
  // bf16/fp16 with one micro-batch per step, no offload (ZeroEngine::configure): gradients in 2
  // bytes, where the backend takes bf16 operands. The model allocates no gradient buffer; the
  // engine attaches its fp32 window and keeps the gradients in 2 bytes (th/train/zero.hpp).
  bool two_byte_grads = false;
  // Mixed-precision emulation (float models only): BF16 / F16 round the activations at the
  // layer boundaries (embeddings, every block's output, final norms, logits) and the activation
  // gradients between blocks in backward to that type; GEMMs and reductions accumulate in fp32.
  DType compute = DType::F32;
};

// Parameters the Transformer of spec declares (before any ZeRO padding), computed from the spec
// alone in double precision, so that an absurd size is measured, and refused, before anything is
// built or allocated (th/train/memory_budget.hpp). tests/unit/test_model.cpp checks it against
// the models' ParamStore.
double transformer_parameter_count(const ModelSpec& spec);

// Where parameter values come and go (ZeRO stage 3): the model calls acquire(unit) before it
// reads a unit's values and release(unit) after its last read of them, units numbered as in
// ParamStore (the embeddings, each block, each final norm, the output projection). Unpaired
// acquires never happen; a unit is never acquired twice without a release in between.
class ParamAccess {
 public:
  virtual ~ParamAccess() = default;
  virtual void acquire(int unit) = 0;
  virtual void release(int unit) = 0;
};

// Gradient memory backed on demand (ZeRO stages 2-3 keep the full-size gradient range in a
// Reservation, th/backend/backend.hpp): backward calls writing(u) before it writes gradients of
// gather unit u (a block's before that block's backward; the embeddings' before the output
// projection when it is tied to them, and before the embedding backward). A store with
// takes_written() is told, by written(b, e), that gradients [b, e) are complete for now (each
// parameter's after the kernel that wrote it; the output projection's and the embeddings' block
// by block) and may take them at once; a later write there (the tied embeddings' lookups, a
// learned positional table) comes after writing(u) again. writing(u) commits the unit with
// Backing::OnTouch (a device backs it all; the host backs nothing yet), and writing_range(b, e)
// comes just before a kernel writes gradients [b, e) (each parameter's GEMM or norm; the output
// projection's and the lookups' block by block), which the host backs then, in one call: the
// pages come as they are written, never a whole unit or table at once, and a lookup without
// blocks (a store that does not take them) touches only its tokens' rows.
class GradAccess {
 public:
  virtual ~GradAccess() = default;
  virtual void writing(int unit) = 0;
  virtual void writing_range(std::int64_t, std::int64_t) {}
  virtual bool takes_written() const { return false; }
  virtual void written(std::int64_t, std::int64_t) {}
};

// Token ids, row-major [B, S] and [B, T]; positions past a row's length hold pad_id.
// Decoder-only batches have S = 0 and use tgt_in / tgt_out (inputs and next tokens).
// doc_start (decoder-only, data%document_mask): [B*T], the position in its row where each
// position's document starts; self-attention of position t sees keys [doc_start[t], t] only.
// Empty: no document mask.
struct Batch {
  int B = 0, S = 0, T = 0;
  std::vector<int> src, src_len;
  std::vector<int> tgt_in, tgt_out, tgt_len;
  std::vector<int> doc_start;
  std::int64_t positions() const { return static_cast<std::int64_t>(B) * (S + T); }
};

template <typename T>
class Transformer {
 public:
  // Parameters, activations and every kernel call go through `backend` (th/backend/backend.hpp).
  explicit Transformer(const ModelSpec& spec, Backend& backend = cpu_backend());
  ~Transformer();
  const ModelSpec& spec() const { return spec_; }
  Backend& backend() const { return be_; }
  ParamStore<T>& params() { return params_; }
  void set_param_access(ParamAccess* access) { access_ = access; }
  void set_grad_access(GradAccess* access);

  // Mean label-smoothed cross-entropy over the non-pad target tokens of the batch.
  // `micro` numbers the micro-batch for dropout masks; `train` = false turns dropout off.
  double forward(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train = true);
  // Accumulates d(loss_scale * loss)/d(param) into the gradient buffer and frees activations.
  // `grads_ready(w)` is called whenever every gradient at flat offset >= w is final for this
  // backward (w only decreases; the last call has w = 0), so data parallelism can start
  // communicating a bucket while the rest of backward runs.
  using GradsReadyFn = std::function<void(std::int64_t)>;
  void backward(double loss_scale = 1.0, const GradsReadyFn& grads_ready = {});
  // Inference: forget what forward saved, without a backward.
  void discard();
  // Inference: the encoder output [B*S, D] of a batch (dropout off); saves nothing.
  Tensor encode(const Batch& batch);
  std::int64_t target_tokens() const { return count_; }  // non-pad targets of the last forward
  // [B*T, V] in T, until backward(); after a training forward of a 16-bit run the logits are
  // kept as 2-byte values and this is empty.
  const Tensor& logits() const { return logits_.wide_tensor(); }
  const Tensor& log_sum_exp() const { return lse_; }      // [B*T] of the logits, until backward()
  std::int64_t flops_per_token_estimate() const;
  // The positional table [max_len, D] added to the embeddings: the sinusoidal buffer, or the
  // learned parameter's values (under ZeRO stage 3 valid only while the embeddings' unit is held).
  const T* positional_table() const;

 private:
  void embed(T* y, const std::vector<int>& tokens, int B, int L, std::int64_t table);
  // The embeddings of the source (and of the target with `target`), dropout applied.
  void embed_inputs(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train, bool target);
  void run_encoder(const Batch& batch, std::uint64_t seed, std::uint64_t micro, bool train);
  void acquire(int unit) { if (access_) access_->acquire(unit); }
  void release(int unit) { if (access_) access_->release(unit); }
  void writing(int unit) { if (grad_access_) grad_access_->writing(unit); }
  // The output projection's backward: dx, then its weight gradient block by block (written()).
  void output_backward(T* dx, const T* dy, const std::uint16_t* dy16, float alpha, const T* x, const std::uint16_t* x16);
  // A lookup's gradient into the table at `table` (block by block where the store takes them).
  void embedding_backward(std::int64_t table, const int* tokens, const T* dy, std::int64_t N, T scale);
  // f(r0, r1) for each block of grad_block_rows rows of the [V, D] table at flat offset `table`,
  // each block announced to ParamStore::writing before it and handed to ParamStore::written after
  // it (a lookup writes only some rows of a block, but a store that takes it gives it back at once:
  // backing the whole block costs one block's pages, and saves a fault per page).
  template <class F> void by_row_blocks(std::int64_t table, F&& f);
  void round_compute(T* x, std::int64_t n) const;  // ModelSpec::compute
  void round_compute(Tensor& t) const { round_compute(t.data<T>(), t.numel()); }

  Kernels<T>& kernels() const { return be_.kernels<T>(); }

  ModelSpec spec_;
  Backend& be_;  // before params_: the store allocates through it
  ParamStore<T> params_;
  std::int64_t src_embed_ = 0, tgt_embed_ = 0, out_proj_ = 0;
  std::int64_t pos_embed_ = -1;  // learned positional table (PositionEncoding::Learned), else -1
  std::vector<std::unique_ptr<Block<T>>> encoder_, decoder_;
  std::unique_ptr<LayerNorm<T>> enc_norm_, dec_norm_;  // pre-norm only
  Tensor pe_;                                          // sinusoidal table [max_len, D] (Sinusoidal only)
  // First flat offset of each block / final norm: gradient watermarks during backward.
  std::vector<std::int64_t> enc_begin_, dec_begin_;
  std::int64_t enc_norm_begin_ = 0, dec_norm_begin_ = 0;
  // Gather units (ParamAccess): of each block, the final norms, the embeddings and the output.
  std::vector<int> enc_unit_, dec_unit_;
  int enc_norm_unit_ = -1, dec_norm_unit_ = -1, embed_unit_ = 0, out_unit_ = 0;
  ParamAccess* access_ = nullptr;
  GradAccess* grad_access_ = nullptr;
  bool out_held_ = false;  // the output unit stays acquired from forward's logits to backward

  // Saved by forward for backward.
  const Batch* batch_ = nullptr;
  StepCtx<T> enc_ctx_, dec_ctx_;
  DType store_;                        // saved activations' storage (th/model/saved.hpp)
  std::vector<Saved<T>> enc_x_, dec_x_;  // block inputs (and the stack output last)
  Saved<T> final_, logits_;
  // bf16 training on a backend with bf16 operands: the gradient of each row's loss w.r.t. the
  // logits (dloss = 1) in bf16, written by the loss's forward; backward scales it in the GEMMs.
  // The logits themselves are then not kept.
  Tensor dlogits16_;
  Tensor memory_, dmemory_, losses_, lse_;  // memory_: the encoder output, kept in T
  std::int64_t count_ = 0;
};

}  // namespace th
