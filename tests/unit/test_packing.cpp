// The packing rules as pure functions: the Feistel permutation is a bijection for any size, the
// packed sampler uses every block at most once per epoch and reshuffles per epoch, document
// starts follow EOS, packed batches shift targets by one, evaluation spans predict every token
// but the first exactly once; the shipped language-model decks are valid for every task.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/data/batching.hpp"
#include "th/data/packed_loader.hpp"
#include "th/data/packing.hpp"

using namespace th;

TEST(Packing, PermutationIsABijectionOfAnySize) {
  for (const std::uint64_t n : {1ull, 2ull, 3ull, 5ull, 16ull, 17ull, 1000ull, 4097ull, 65537ull}) {
    const Permutation p(n, 42, 7);
    std::vector<char> hit(n, 0);
    std::uint64_t fixed = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t j = p(i);
      ASSERT_LT(j, n);
      ASSERT_FALSE(hit[j]) << "n " << n << ": " << j << " twice";
      hit[j] = 1;
      fixed += j == i;
    }
    if (n >= 1000) EXPECT_LT(fixed, n / 100) << n;  // a shuffle, not the identity
  }
  EXPECT_NE(Permutation(1000, 42, 7)(3), Permutation(1000, 42, 8)(3));  // streams differ
}

TEST(Packing, SamplerUsesEachBlockOncePerEpochAndReshuffles) {
  PackedSamplerOptions opt;
  opt.block_len = 8;
  opt.blocks_per_micro = 3;
  opt.seed = 5;
  opt.world = 2;
  opt.accum = 2;
  PackedSampler s(100, opt);
  s.set_epoch(0);
  EXPECT_EQ(s.steps(), 100 / 12);
  std::set<std::int64_t> used;
  std::vector<std::int64_t> first;
  for (std::int64_t step = 0; step < s.steps(); ++step)
    for (int r = 0; r < 2; ++r)
      for (const auto& micro : s.step_blocks(step, r)) {
        ASSERT_EQ(micro.size(), 3u);
        for (const auto b : micro) {
          EXPECT_TRUE(used.insert(b).second) << b;
          first.push_back(b);
        }
      }
  EXPECT_EQ(used.size(), static_cast<std::size_t>(s.steps() * 12));
  s.set_epoch(1);
  EXPECT_NE(s.micro_batch(0), std::vector<std::int64_t>(first.begin(), first.begin() + 3));
  opt.shuffle = false;
  PackedSampler plain(100, opt);
  plain.set_epoch(3);
  EXPECT_EQ(plain.micro_batch(2), (std::vector<std::int64_t>{6, 7, 8}));
  EXPECT_EQ(blocks_per_micro_batch(2048, 128), 16);
  EXPECT_EQ(blocks_per_micro_batch(100, 128), 1);
  EXPECT_EQ(whole_blocks(129, 128), 1);
  EXPECT_EQ(whole_blocks(128, 128), 0);
  EXPECT_EQ(whole_blocks(1, 128), 0);
}

TEST(Packing, DocumentStartsAndShiftedTargets) {
  const int E = SpecialTokens::eos;
  const std::vector<int> in = {7, 8, E, 9, 10, E, E, 11};
  EXPECT_EQ(document_starts(in.data(), 8, E), (std::vector<int>{0, 0, 2, 2, 2, 5, 6, 6}));
  const std::vector<int> span = {E, 5, 6, E, 7};
  const Batch b = packed_batch({span, {4, 5, 6, 7, 8}}, true);
  EXPECT_EQ(b.B, 2);
  EXPECT_EQ(b.S, 0);
  EXPECT_EQ(b.T, 4);
  EXPECT_EQ(b.tgt_in, (std::vector<int>{E, 5, 6, E, 4, 5, 6, 7}));
  EXPECT_EQ(b.tgt_out, (std::vector<int>{5, 6, E, 7, 5, 6, 7, 8}));
  EXPECT_EQ(b.tgt_len, (std::vector<int>{4, 4}));
  EXPECT_EQ(b.doc_start, (std::vector<int>{0, 0, 0, 3, 0, 0, 0, 0}));
  EXPECT_TRUE(packed_batch({span}, false).doc_start.empty());
}

TEST(Packing, EvaluationSpansPredictEveryTokenButTheFirstOnce) {
  for (const std::int64_t n : {2, 16, 17, 18, 40, 1000}) {
    const auto spans = evaluation_spans(n, 16);
    std::vector<int> predicted(static_cast<std::size_t>(n), 0);
    for (const auto& [first, count] : spans) {
      ASSERT_LE(first + count, n);
      for (std::int64_t t = first + 1; t < first + count; ++t) ++predicted[static_cast<std::size_t>(t)];
    }
    EXPECT_EQ(predicted[0], 0);
    for (std::int64_t t = 1; t < n; ++t) EXPECT_EQ(predicted[static_cast<std::size_t>(t)], 1) << n << " " << t;
  }
  EXPECT_TRUE(evaluation_spans(1, 16).empty());
}

TEST(LmDecks, ShippedDecksAreValidForEveryTask) {
  const std::string dir = std::string(TH_TEST_DIR) + "/../inputs/";
  for (const char* task : {"prepare", "train", "evaluate", "generate", "bench"}) {
    if (std::string(task) != "bench") {  // the vocabulary comes from the dataset: no bench without one
      const Config tiny = make_config(Deck::from_file(dir + "lm_tiny.nml", {std::string("run%task='") + task + "'"}));
      EXPECT_EQ(tiny.data.packing, "concat");
      EXPECT_TRUE(tiny.data.document_mask);
      EXPECT_EQ(tiny.prepare.source, "bible:engWEB2015eb");
    }
    const Config gpt2 = make_config(Deck::from_file(dir + "gpt2_124m.nml", {std::string("run%task='") + task + "'",
                                                                             "generate%prompt='Hello'"}));
    EXPECT_EQ(gpt2.model.d_model, 768);
    EXPECT_EQ(gpt2.model.n_heads, 12);
    EXPECT_EQ(gpt2.model.n_decoder_layers, 12);
    EXPECT_EQ(gpt2.model.d_ff, 3072);
    EXPECT_EQ(gpt2.model.max_len, 1024);
    EXPECT_EQ(gpt2.model.vocab_size, 50257);
    EXPECT_EQ(gpt2.model.norm, "pre");
    EXPECT_EQ(gpt2.model.activation, "gelu");
    EXPECT_TRUE(gpt2.model.tie_embeddings);
    EXPECT_EQ(gpt2.model.arch, "decoder-only");
  }
}
