#pragma once
// The Transformer's layers. Each declares its parameters in its constructor (one place), has a
// forward that saves what its backward needs, a backward that writes the input gradient and
// accumulates parameter gradients, and release() to drop saved activations.
//
// Legend: B batch rows, L length of the stream a layer runs on, N = B*L token rows, D d_model,
// H heads, Dh = D/H, F d_ff, Lk key length (the memory's for cross-attention).
// Every kernel call and buffer goes through the backend of the parameter store the layer
// declares into (th/backend/backend.hpp): the layers never call th::cpu directly.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"
#include "th/model/params.hpp"
#include "th/model/saved.hpp"

namespace th {

// A sequence stream: B rows of length L, row b holding len[b] real tokens then padding.
struct Stream {
  int B = 0, L = 0;
  const int* len = nullptr;
  // Document mask (packed language-model blocks): [B*L], the first key position each query may
  // attend to (the start of its document inside the block); null: no document mask.
  const int* key_begin = nullptr;
  std::int64_t rows() const { return static_cast<std::int64_t>(B) * L; }
};

// What every layer of one forward/backward needs to know about the batch.
template <typename T>
struct StepCtx {
  Stream self;               // the stream the layer runs on
  Stream memory;             // the encoder output's stream (cross-attention keys)
  const T* mem = nullptr;    // encoder output [B*Lk, D]
  T* dmem = nullptr;         // its gradient, accumulated by every cross-attention
  std::uint64_t seed = 0;    // dropout: run seed
  std::uint64_t micro = 0;   // dropout: micro-batch counter (a new mask every micro-batch)
  bool train = true;         // dropout on/off
  DType store = dtype_of<T>();  // saved activations' storage type (th/model/saved.hpp)
};

// Dropout stream id of a site for one micro-batch: sites are numbered at construction.
std::uint64_t dropout_stream(std::uint64_t site, std::uint64_t micro);

// A function of one [N, D] stream to another, wrapped by Residual.
template <typename T>
class Sublayer {
 public:
  virtual ~Sublayer() = default;
  virtual void forward(T* y, const T* x, const StepCtx<T>& ctx) = 0;
  // dx (written) from dy; x is the forward's input.
  virtual void backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) = 0;
  virtual void release() = 0;
};

// Multi-head attention: self (optionally causal) or cross (keys/values from ctx.mem).
// Parameters q_proj, k_proj, v_proj, out_proj ([D,D] weights, [D] biases), declared q, k, v in a
// row so that [Wq; Wk; Wv] is one [3D, D] matrix in the flat buffer (one GEMM for self-attention).
template <typename T>
class Attention final : public Sublayer<T> {
 public:
  Attention(ParamStore<T>& ps, const std::string& prefix, int D, int H, bool cross, bool causal,
            float dropout, std::uint64_t site);
  void forward(T* y, const T* x, const StepCtx<T>& ctx) override;
  void backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) override;
  void release() override;

 private:
  ParamStore<T>& ps_;
  int D_, H_;
  bool cross_, causal_;
  float dropout_;
  std::uint64_t site_;
  std::int64_t wq_, bq_, wo_, bo_;  // offsets; k and v follow q
  Saved<T> q_, kv_, probs_, ctx_;   // saved: projections, softmax [B,H,L,Lk], head outputs [N,D]
};

// Position-wise FFN: fc2(dropout(act(fc1(x)))); fc1 [F,D], fc2 [D,F].
template <typename T>
class FeedForward final : public Sublayer<T> {
 public:
  FeedForward(ParamStore<T>& ps, const std::string& prefix, int D, int F, cpu::Activation act,
              float dropout, std::uint64_t site);
  void forward(T* y, const T* x, const StepCtx<T>& ctx) override;
  void backward(T* dx, const T* dy, const T* x, const StepCtx<T>& ctx) override;
  void release() override;

 private:
  ParamStore<T>& ps_;
  int D_, F_;
  cpu::Activation act_;
  float dropout_;
  std::uint64_t site_;
  std::int64_t w1_, b1_, w2_, b2_;
  Saved<T> pre_, h_;  // saved: fc1 output + bias, activation output [N,F]
};

// LayerNorm over D (eps 1e-5), weight [D] and bias [D].
template <typename T>
class LayerNorm {
 public:
  LayerNorm(ParamStore<T>& ps, const std::string& prefix, int D);
  void forward(T* y, const T* x, std::int64_t N);
  void backward(T* dx, const T* dy, const T* x, std::int64_t N);
  void release();

 private:
  ParamStore<T>& ps_;
  int D_;
  std::int64_t w_, b_;
  Tensor mean_, rstd_;
};

// A sublayer with its residual connection, dropout and LayerNorm:
// post-norm  out = LN(x + dropout(f(x)));  pre-norm  out = x + dropout(f(LN(x))).
template <typename T>
class Residual {
 public:
  Residual(ParamStore<T>& ps, const std::string& norm_prefix, std::unique_ptr<Sublayer<T>> f, int D,
           bool pre_norm, float dropout, std::uint64_t site);
  void forward(T* out, const T* x, const StepCtx<T>& ctx);
  void backward(T* dx, const T* dout, const T* x, const StepCtx<T>& ctx);
  void release();
  Backend& backend() const { return be_; }  // the parameter store's

 private:
  Backend& be_;
  std::unique_ptr<Sublayer<T>> f_;
  LayerNorm<T> norm_;
  int D_;
  bool pre_norm_;
  float dropout_;
  std::uint64_t site_;
  Saved<T> saved_;  // post-norm: x + dropout(f(x)) (LN input); pre-norm: LN(x) (f input)
};

// One encoder or decoder block: a chain of residual sublayers. With checkpointing, forward keeps
// nothing but the block input (owned by the caller) and backward recomputes the block first.
template <typename T>
class Block {
 public:
  // `name` ("encoder/layer_0") labels the block's profiler events.
  Block(std::vector<std::unique_ptr<Residual<T>>> parts, int D, bool checkpoint, const std::string& name);
  void forward(T* out, const T* x, const StepCtx<T>& ctx);
  void backward(T* dx, const T* dout, const T* x, const StepCtx<T>& ctx);
  void release();  // drop what forward saved (inference: forward without backward)

 private:
  void run_forward(T* out, const T* x, const StepCtx<T>& ctx);
  Backend& backend() const { return parts_.front()->backend(); }
  std::vector<std::unique_ptr<Residual<T>>> parts_;
  int D_;
  bool checkpoint_;
  std::string fwd_name_, bwd_name_, recompute_name_;  // built once: no allocation per step
  bool saved_ = false;
  std::vector<Saved<T>> inner_;  // outputs of parts_[0 .. n-2] (inputs of the later parts)
};

}  // namespace th
