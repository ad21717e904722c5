// 16-bit activation storage (th/model/saved.hpp): with ModelSpec::compute = BF16 / F16 the
// activations a training forward keeps for backward are 2-byte tensors.
//   - Memory: the pool's Activations peak of a forward is about half of the fp32 model's on the
//     same batch (the fp32 remainder: LayerNorm statistics, per-row losses, the encoder output).
//   - The stored values are the fp32 ones rounded once (round-to-nearest-even): the gradients of a
//     16-bit model differ from the fp32 model's by a rounding-sized amount (bf16 ~0.004-0.005
//     relative here), and fp16 (11-bit significand) lands closer than bf16 (8-bit) by about
//     their unit roundoffs' ratio (8; the test asks for more than 4).
//   - Activation checkpointing recomputes a block from its stored (exactly 16-bit) input, so
//     checkpointing on and off give bit-identical gradients in 16 bits as in fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/memory.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/model/transformer.hpp"
#include "model_batches.hpp"

using namespace th;

namespace {

ModelSpec spec_of(bool decoder_only, bool pre_norm, DType compute) {
  ModelSpec s;
  s.decoder_only = decoder_only;
  s.d_model = 32; s.n_heads = 4; s.d_ff = 64;
  s.n_encoder_layers = decoder_only ? 0 : 2;
  s.n_decoder_layers = 2;
  s.activation = cpu::Activation::GELU;
  s.pre_norm = pre_norm;
  s.dropout = 0.1f;
  s.tie_embeddings = true;
  s.max_len = 48;  // decoder-only rows hold source and target
  s.vocab_size = 40;
  s.label_smoothing = 0.1;
  s.compute = compute;
  return s;
}

Batch batch_of(bool decoder_only) { return testing_support::random_rows_batch(4, 20, 3, 36, 31, decoder_only); }

struct Step {
  double loss = 0;
  std::int64_t activation_peak = 0;  // bytes of category Activations during the forward
  std::vector<double> grads;
};

Step run(const ModelSpec& spec, const Batch& batch) {
  host_pool().trim();
  Transformer<float> model(spec);
  model.params().initialize(11);
  model.params().zero_grad();
  MemoryPool& pool = host_pool();
  pool.trim();  // no cached blocks of an earlier run (a block up to twice the request is reused and counted whole)
  pool.reset_peaks();
  const std::int64_t before = pool.live(MemCategory::Activations);
  Step s;
  s.loss = model.forward(batch, 3, 1);
  s.activation_peak = pool.peak(MemCategory::Activations) - before;
  model.backward(1.0);
  const float* g = model.params().grads();
  s.grads.assign(g, g + model.params().size());
  return s;
}

double rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

const char* name_of(bool dec_only, bool pre_norm) {
  return dec_only ? (pre_norm ? "decoder-only pre-norm" : "decoder-only post-norm")
                  : (pre_norm ? "encoder-decoder pre-norm" : "encoder-decoder post-norm");
}

}  // namespace

TEST(ActivationStorage, SixteenBitActivationsTakeHalfTheBytesAndRoundOnce) {
  for (bool dec_only : {false, true})
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(name_of(dec_only, pre_norm));
      const Batch batch = batch_of(dec_only);
      const Step f32 = run(spec_of(dec_only, pre_norm, DType::F32), batch);
      const Step bf16 = run(spec_of(dec_only, pre_norm, DType::BF16), batch);
      const Step fp16 = run(spec_of(dec_only, pre_norm, DType::F16), batch);
      for (const Step* s : {&bf16, &fp16}) {
        const double ratio = double(s->activation_peak) / double(f32.activation_peak);
        std::printf("%s: activation peak %lld vs fp32 %lld bytes (%.3f)\n", name_of(dec_only, pre_norm),
                    static_cast<long long>(s->activation_peak), static_cast<long long>(f32.activation_peak), ratio);
        EXPECT_GT(ratio, 0.45);
        EXPECT_LT(ratio, 0.66);  // encoder-decoder: the encoder output stays fp32 (cross-attention reads it)
      }
      EXPECT_EQ(bf16.activation_peak, fp16.activation_peak);  // both 2 bytes per stored value
      // Gradients: a rounding-sized difference from fp32 (bf16 unit roundoff 2^-9, fp16 2^-12),
      // and fp16's the smaller one.
      const double e_bf16 = rel_diff(bf16.grads, f32.grads), e_fp16 = rel_diff(fp16.grads, f32.grads);
      std::printf("%s: gradient relative difference from fp32: bf16 %.3g, fp16 %.3g\n", name_of(dec_only, pre_norm),
                  e_bf16, e_fp16);
      EXPECT_GT(e_bf16, 0.0);
      EXPECT_LT(e_bf16, 16 * std::ldexp(1.0, -9));
      EXPECT_LT(e_fp16, e_bf16 / 4);  // measured: about 8x, the ratio of the unit roundoffs
      EXPECT_NEAR(bf16.loss, f32.loss, 16 * std::ldexp(1.0, -9) * f32.loss);
    }
}

TEST(ActivationStorage, CheckpointingRecomputesFromTheStoredInputBitForBit) {
  for (DType compute : {DType::BF16, DType::F16})
    for (bool dec_only : {false, true})
      for (bool pre_norm : {false, true}) {
        SCOPED_TRACE(std::string(name_of(dec_only, pre_norm)) + (compute == DType::BF16 ? " bf16" : " fp16"));
        const Batch batch = batch_of(dec_only);
        ModelSpec spec = spec_of(dec_only, pre_norm, compute);
        const Step stored = run(spec, batch);
        spec.activation_checkpointing = true;
        const Step recomputed = run(spec, batch);
        EXPECT_EQ(stored.loss, recomputed.loss);
        EXPECT_TRUE(stored.grads == recomputed.grads);
        EXPECT_LT(recomputed.activation_peak, stored.activation_peak);
      }
}
