#pragma once
// The small training run the backend tests compare across backends (unit/test_backend.cpp: the
// CPU backend against a counting backend and the emulated device, bit for bit;
// gpu/test_cuda_backend.cpp: against the CUDA backend, within fp32 tolerances): four model
// shapes with dropout and padding, two optimizer steps of forward, backward, clipping and AdamW,
// every host read a copy through the backend.
#include <cstdint>
#include <vector>

#include "model_batches.hpp"
#include "th/backend/backend.hpp"
#include "th/model/transformer.hpp"
#include "th/train/optimizer.hpp"

namespace th::testing_support {

inline ModelSpec spec_of(bool decoder_only, bool pre_norm) {
  ModelSpec s;
  s.decoder_only = decoder_only;
  s.d_model = 16; s.n_heads = 4; s.d_ff = 24;
  s.n_encoder_layers = decoder_only ? 0 : 2;
  s.n_decoder_layers = 2;
  s.activation = cpu::Activation::GELU;
  s.pre_norm = pre_norm;
  s.dropout = 0.2f;  // dropout sites on: their kernels must go through the seam too
  s.tie_embeddings = !pre_norm;
  s.max_len = 16;
  s.vocab_size = 13;
  s.label_smoothing = 0.1;
  return s;
}

// Rows of different lengths (padding in every batch).
inline Batch batch_of(bool decoder_only) { return random_rows_batch(3, 7, 2, 9, 21, decoder_only); }

// The bytes of n device values, read through the backend (a copy on a device backend).
template <typename T>
std::vector<unsigned char> bytes_of(Backend& be, const T* device, std::int64_t n) {
  std::vector<unsigned char> out(sizeof(T) * static_cast<std::size_t>(n));
  copy_to_host(be, reinterpret_cast<T*>(out.data()), device, n);
  return out;
}

struct TrainRun {
  std::vector<double> losses;
  std::vector<unsigned char> grads, values;  // bytes after the last backward / update
};

// Two optimizer steps of forward, backward, clipping and AdamW on `be`.
template <typename T>
TrainRun train(const ModelSpec& spec, const Batch& batch, Backend& be) {
  Transformer<T> model(spec, be);
  auto& ps = model.params();
  ps.initialize(7);
  AdamW<T> opt(ps.size(), AdamWConfig{1e-2, 0.9, 0.98, 1e-9, 0.01}, be);
  TrainRun r;
  for (int step = 1; step <= 2; ++step) {
    ps.zero_grad();
    r.losses.push_back(model.forward(batch, 5, static_cast<std::uint64_t>(step)));
    model.backward(1.0);
    const double sq = be.kernels<T>().sum_squares(ps.grads(), ps.size());
    clip_by_global_norm(ps.grads(), ps.size(), sq, 1e-3, be);  // always clips: scale_inplace runs
    r.grads = bytes_of(be, ps.grads(), ps.size());
    opt.step(ps.values(), ps.grads(), 1e-2);
  }
  r.values = bytes_of(be, ps.values(), ps.size());
  return r;
}

}  // namespace th::testing_support
