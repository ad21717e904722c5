// The whole model in double precision against central finite differences (every parameter
// tensor, several entries each; a learned positional table in full), activation checkpointing
// (bitwise-identical gradients, lower activation peak) and the steady-state allocation rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/data/packing.hpp"
#include "th/model/transformer.hpp"

using namespace th;

namespace {
struct Variant {
  const char* name;
  bool decoder_only, pre_norm, gelu, tied;
  float dropout;
  bool packed = false;  // packed language-model blocks with the document mask (decoder-only)
  bool learned = false;  // model%positions = 'learned': the trained table pos_embed/weight
};

ModelSpec small_spec(const Variant& v) {
  ModelSpec s;
  s.decoder_only = v.decoder_only;
  s.d_model = 8; s.n_heads = 2; s.d_ff = 12;
  s.n_encoder_layers = v.decoder_only ? 0 : 2;
  s.n_decoder_layers = 2;
  s.activation = v.gelu ? cpu::Activation::GELU : cpu::Activation::ReLU;
  s.pre_norm = v.pre_norm;
  s.dropout = v.dropout;
  s.tie_embeddings = v.tied;
  s.max_len = 16;
  s.positions = v.learned ? PositionEncoding::Learned : PositionEncoding::Sinusoidal;
  s.vocab_size = 11;
  s.label_smoothing = 0.1;
  return s;
}

// Three rows of different lengths, so every batch has padding.
Batch padded_batch(bool decoder_only) {
  std::vector<Example> data(3);
  for (int i = 0; i < 3; ++i)
    for (int t = 0; t < 5 - 2 * i; ++t) {
      data[i].src.push_back(4 + static_cast<int>(uniform01(5, i, t) * 7));
      data[i].tgt.push_back(4 + static_cast<int>(uniform01(6, i, t) * 7));
    }
  data[2].tgt.push_back(5);
  return collate(data, {0, 1, 2}, decoder_only);
}

// Two blocks of 7 positions cut from one stream, EOS at a block's start and in the middle: the
// document mask cuts attention inside both blocks.
Batch packed_blocks() {
  std::vector<int> stream(15);
  for (int t = 0; t < 15; ++t) stream[static_cast<std::size_t>(t)] = 4 + static_cast<int>(uniform01(7, 0, t) * 7);
  for (int t : {3, 7, 8}) stream[static_cast<std::size_t>(t)] = SpecialTokens::eos;
  return packed_batch({{stream.begin(), stream.begin() + 8}, {stream.begin() + 7, stream.end()}}, true);
}

const Variant kVariants[] = {
    {"encdec_post_relu_tied", false, false, false, true, 0.0f},
    {"encdec_pre_gelu_untied", false, true, true, false, 0.0f},
    {"encdec_post_dropout", false, false, true, true, 0.3f},
    {"deconly_post_relu_tied", true, false, false, true, 0.0f},
    {"deconly_pre_gelu_untied", true, true, true, false, 0.2f},
    {"deconly_packed_docmask", true, true, true, true, 0.2f, true},
    // Learned positions: one table shared by the source and target sides (encoder-decoder).
    {"encdec_post_relu_tied_learned", false, false, false, true, 0.0f, false, true},
    {"encdec_pre_gelu_untied_learned", false, true, true, false, 0.2f, false, true},
    {"deconly_pre_gelu_tied_learned", true, true, true, true, 0.2f, false, true},
    {"deconly_packed_docmask_learned", true, true, true, true, 0.2f, true, true},
};
}  // namespace

class ModelGradient : public ::testing::TestWithParam<Variant> {};

TEST_P(ModelGradient, MatchesFiniteDifferencesForEveryParameterTensor) {
  const Variant v = GetParam();
  Transformer<double> model(small_spec(v));
  auto& ps = model.params();
  ps.initialize(99);
  // Break the zero-bias / unit-gain symmetry so every parameter has a generic gradient.
  for (std::int64_t i = 0; i < ps.size(); ++i) ps.values()[i] += 0.05 * (2 * uniform01(3, 3, i) - 1);
  const Batch batch = v.packed ? packed_blocks() : padded_batch(v.decoder_only);
  // Same seed and micro-batch on every call: the dropout mask is a fixed function, so finite
  // differences see the same network as the backward pass.
  auto loss = [&] {
    const double l = model.forward(batch, 5, 1);
    model.backward(0.0);
    return l;
  };
  ps.zero_grad();
  model.forward(batch, 5, 1);
  model.backward(1.0);
  std::vector<double> grad(ps.grads(), ps.grads() + ps.size());
  double worst = 0;
  for (const auto& info : ps.infos()) {
    double diff2 = 0, num2 = 0, ana2 = 0;
    // The positional table in full: its rows past the batch's lengths must get exactly nothing.
    const bool table = info.name == "pos_embed/weight";
    const int samples = static_cast<int>(table ? info.numel : std::min<std::int64_t>(info.numel, 6));
    for (int k = 0; k < samples; ++k) {
      const std::int64_t i =
          info.offset + (table ? k : static_cast<std::int64_t>(uniform01(8, info.offset, k) * info.numel));
      double* w = ps.values() + i;
      const double keep = *w, h = 1e-5;
      *w = keep + h;
      const double up = loss();
      *w = keep - h;
      const double down = loss();
      *w = keep;
      const double num = (up - down) / (2 * h);
      diff2 += (grad[i] - num) * (grad[i] - num);
      num2 += num * num;
      ana2 += grad[i] * grad[i];
    }
    // k_proj biases have an exactly-zero true gradient (softmax is shift invariant): the floor
    // keeps finite-difference round-off (~1e-10) from dominating.
    const double rel = std::sqrt(diff2) / std::max({std::sqrt(num2), std::sqrt(ana2), 1e-3});
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-6) << v.name << " " << info.name;
    if (table) EXPECT_GT(std::sqrt(num2), 1e-3) << v.name << ": the positional table gets no gradient";
  }
  // Declared right after the token tables, in the embeddings' gather unit (ZeRO stage 3).
  EXPECT_EQ(v.learned, ps.infos()[v.tied ? 1 : v.decoder_only ? 1 : 2].name == "pos_embed/weight") << v.name;
  std::printf("[ gradcheck ] %-26s %3zu tensors, worst relative error %.2e\n", v.name, ps.infos().size(), worst);
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelGradient, ::testing::ValuesIn(kVariants),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ModelCheckpointing, GradientsBitwiseIdenticalAndActivationPeakLower) {
  for (bool dec_only : {false, true}) {
    Variant v{"ckpt", dec_only, false, true, true, 0.1f};
    ModelSpec spec = small_spec(v);
    spec.d_model = 32; spec.d_ff = 64; spec.n_heads = 4;
    spec.n_encoder_layers = dec_only ? 0 : 4;
    spec.n_decoder_layers = 4;
    spec.vocab_size = 16;
    spec.max_len = 32;
    std::vector<Example> data(8);
    for (int i = 0; i < 8; ++i)
      for (int t = 0; t < 12; ++t) {
        data[i].src.push_back(4 + static_cast<int>(uniform01(1, i, t) * 12));
        data[i].tgt.push_back(4 + static_cast<int>(uniform01(2, i, t) * 12));
      }
    const Batch batch = collate(data, {0, 1, 2, 3, 4, 5, 6, 7}, dec_only);
    std::int64_t peak[2];
    std::vector<float> grads[2];
    double losses[2];
    for (int ck = 0; ck < 2; ++ck) {
      spec.activation_checkpointing = ck == 1;
      Transformer<float> model(spec);
      model.params().initialize(3);
      host_pool().reset_peaks();
      const std::int64_t base = host_pool().live(MemCategory::Activations);
      losses[ck] = model.forward(batch, 11, 4);
      model.backward(1.0);
      peak[ck] = host_pool().peak(MemCategory::Activations) - base;
      grads[ck].assign(model.params().grads(), model.params().grads() + model.params().size());
    }
    EXPECT_EQ(losses[0], losses[1]);
    ASSERT_EQ(grads[0].size(), grads[1].size());
    EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)))
        << "checkpointed gradients differ from the stored-activation ones";
    EXPECT_LT(peak[1], peak[0]);
    std::printf("[ checkpointing ] %s: peak activation bytes %lld without, %lld with (%.0f%%)\n",
                dec_only ? "decoder-only" : "encoder-decoder", static_cast<long long>(peak[0]),
                static_cast<long long>(peak[1]), 100.0 * static_cast<double>(peak[1]) / static_cast<double>(peak[0]));
  }
}

TEST(ModelMemory, NoSystemAllocationAfterTheFirstStep) {
  Variant v{"alloc", false, true, true, true, 0.1f};
  Transformer<float> model(small_spec(v));
  model.params().initialize(1);
  const Batch batch = padded_batch(false);
  model.forward(batch, 1, 1);
  model.backward(1.0);
  const std::int64_t after_first = host_pool().stats().system_allocations;
  for (int s = 2; s < 6; ++s) {
    model.forward(batch, 1, s);
    model.backward(1.0);
  }
  EXPECT_EQ(host_pool().stats().system_allocations, after_first);
}

// The parameter count from the spec alone (used to refuse absurd sizes before allocating, issue
// 15 item 4) against what the model really declares, for every layout.
TEST(ModelMemory, ParameterCountFromTheSpecIsTheDeclaredOne) {
  for (const bool dec_only : {false, true})
    for (const bool tied : {false, true})
      for (const bool pre : {false, true})
        for (const bool learned : {false, true}) {
          Variant v{"count", dec_only, pre, false, tied, 0.0f, false, learned};
          ModelSpec s = small_spec(v);
          s.d_ff = 20;
          s.vocab_size = 13;
          Transformer<float> model(s);
          EXPECT_EQ(transformer_parameter_count(s), static_cast<double>(model.params().size()))
              << "decoder_only " << dec_only << " tied " << tied << " pre_norm " << pre << " learned " << learned;
        }
}
