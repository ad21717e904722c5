// Packed language-model training on 1, 2 and 4 ranks (data%packing = 'concat'):
//  - the elastic rule: N ranks x grad_accum 4/N train on the same global batches (every block's
//    tokens, in the same micro-batch slot) as 1 rank x grad_accum 4, which equal the blocks that
//    the sampler names cut from the stream read whole;
//  - the same experiment: N ranks x accum 1 follow the loss trajectory and end at the parameters of
//    1 rank x accum N, with the document mask and dropout on, and validate to the same perplexity;
//  - resume: a loader restored at a step gives the batches the uninterrupted one gives, across an
//    epoch boundary;
//  - bad input is the same InputError on every rank.
// Tolerances as in test_elastic_equivalence: only the order of floating-point reductions differs.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/core/error.hpp"
#include "th/data/corpus.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/packed_loader.hpp"
#include "th/data/prepare.hpp"
#include "training_support.hpp"

using namespace th;
using testing_support::world;

namespace {
MpiComm& self() {
  static MpiComm comm(MPI_COMM_SELF);
  return comm;
}

// A text dataset of the Genesis fixture's English side (documents of three verses), prepared
// collectively once per process.
const std::string& dataset_dir() {
  static const std::string dir = [] {
    Comm& w = world();
    const std::string d = testing_support::fresh_test_dir(w, "lm_packing");
    if (w.rank() == 0) {
      std::ofstream out(d + "/genesis.txt");
      const auto pairs = read_tsv(std::string(TH_TEST_DIR) + "/data/genesis_1-4_en_es.tsv").pairs;
      for (std::size_t i = 0; i < pairs.size(); ++i) out << pairs[i].src << (i % 3 == 2 ? "\n\n" : "\n");
    }
    w.barrier();
    const std::string deck = "&run task = 'prepare', output_dir = '" + d + "', seed = 3 /\n&prepare source = 'text:" + d +
                             "/genesis.txt', vocab_size = 200, valid_fraction = 0.15, test_fraction = 0.0 /\n";
    prepare_text_datasets(make_config(Deck::from_text(deck, "lm-packing-prepare")), w);
    return d;
  }();
  return dir;
}

Config lm_cfg(int accum, double dropout = 0.0, const std::string& train = "") {
  const std::string d = dataset_dir();
  const std::string text = "&run task = 'train', output_dir = '" + d + "/run', seed = 11, max_steps = 8 /\n"
      "&model arch = 'decoder-only', d_model = 32, n_heads = 4, d_ff = 64, n_encoder_layers = 0,\n"
      "       n_decoder_layers = 2, activation = 'gelu', norm = 'pre', max_len = 16, dropout = " + std::to_string(dropout) + " /\n"
      "&data train_file = '" + (train.empty() ? d + "/train.h5" : train) + "', valid_file = '" + d + "/valid.h5',\n"
      "      packing = 'concat', document_mask = .true., max_tokens = 32 /\n"
      "&optim lr = 3.0e-3, warmup_steps = 2, schedule = 'cosine', grad_accum = " + std::to_string(accum) + " /\n"
      "&checkpoint resume = 'never' /\n";
  return make_config(Deck::from_text(text, "lm-packing"));
}

// Every rank's micro-batches of one step placed in their global slots (micro-batch
// s*G + a*world + r is rank r's a-th), then summed over ranks: the step's global batch everywhere.
std::vector<std::int64_t> global_step(const std::vector<Batch>& mine, Comm& c, int G, std::size_t slot) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(G) * slot, 0);
  for (std::size_t a = 0; a < mine.size(); ++a) {
    const std::size_t k = a * static_cast<std::size_t>(c.size()) + static_cast<std::size_t>(c.rank());
    EXPECT_EQ(mine[a].tgt_in.size() + mine[a].tgt_out.size() + mine[a].doc_start.size(), slot);
    std::size_t at = k * slot;
    for (const auto* v : {&mine[a].tgt_in, &mine[a].tgt_out, &mine[a].doc_start})
      for (const int x : *v) all[at++] = x;
  }
  c.allreduce(all.data(), all.size(), ReduceOp::Sum);
  return all;
}
}  // namespace

TEST(LmPacking, SameGlobalBatchesForAnyRanksTimesAccumulation) {
  Comm& w = world();
  const int G = 4;
  ASSERT_EQ(G % w.size(), 0);
  PackedLoader mine(lm_cfg(G / w.size()), w);
  PackedLoader one(lm_cfg(G), self());  // 1 rank x accum 4, on every rank
  // The stream read whole, for the blocks the sampler names.
  LmDatasetReader reader(dataset_dir() + "/train.h5", self());
  const std::vector<int> stream = reader.read_spans({{0, reader.info().tokens}}, true)[0];
  PackedSamplerOptions opt;
  opt.block_len = 16;
  opt.blocks_per_micro = 2;
  opt.seed = 11;
  opt.accum = G;
  PackedSampler sampler(whole_blocks(reader.info().tokens, 16), opt);
  sampler.set_epoch(0);
  ASSERT_EQ(mine.steps_per_epoch(), one.steps_per_epoch());
  ASSERT_GE(one.steps_per_epoch(), 3);
  const std::size_t slot = 2 * 16 * 3;  // two blocks: inputs, targets, document starts
  for (int s = 0; s < 3; ++s) {
    const auto got = global_step(mine.next_step(), w, G, slot);
    const std::vector<Batch> ref = one.next_step();
    ASSERT_EQ(ref.size(), static_cast<std::size_t>(G));
    for (int k = 0; k < G; ++k) {
      std::vector<std::int64_t> want;
      for (const auto* v : {&ref[k].tgt_in, &ref[k].tgt_out, &ref[k].doc_start}) want.insert(want.end(), v->begin(), v->end());
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + static_cast<std::ptrdiff_t>(k * slot)))
          << "step " << s << " micro-batch " << k;
      // The blocks the sampler names, cut from the stream: inputs [bL, bL + L), targets shifted by one.
      const auto blocks = sampler.micro_batch(s * G + k);
      for (std::size_t j = 0; j < blocks.size(); ++j)
        for (int t = 0; t < 16; ++t) {
          const auto at = static_cast<std::size_t>(blocks[j] * 16 + t);
          EXPECT_EQ(ref[k].tgt_in[j * 16 + static_cast<std::size_t>(t)], stream[at]);
          EXPECT_EQ(ref[k].tgt_out[j * 16 + static_cast<std::size_t>(t)], stream[at + 1]);
        }
    }
  }
  if (w.rank() == 0)
    std::printf("[ packing ] %d rank(s) x accum %d: 3 steps of %d micro-batches equal 1 rank x accum %d\n", w.size(),
                G / w.size(), G, G);
}

TEST(LmPacking, NRanksTrainLikeOneRankWithAccumulation) {
  Comm& w = world();
  const int n = w.size();
  const auto ref = testing_support::run_trainer(lm_cfg(n, 0.1), self(), 8);
  Trainer t(lm_cfg(1, 0.1), w);
  testing_support::TrainedRun run;
  for (int i = 0; i < 8; ++i) run.losses.push_back(t.step().loss);
  run.params = testing_support::named_params(t);
  testing_support::expect_same_run(run, ref, std::to_string(n) + " ranks x accum 1, packed + document mask", "packing",
                                   w.rank());
  // Validation (the valid split's blocks dealt over ranks) agrees with one rank's.
  const EvalStats v = t.validate();
  Trainer t1(lm_cfg(n, 0.1), self());
  for (int i = 0; i < 8; ++i) t1.step();
  const EvalStats v1 = t1.validate();
  EXPECT_EQ(v.tokens, v1.tokens);
  EXPECT_EQ(v.bytes, v1.bytes);
  EXPECT_NEAR(v.loss, v1.loss, 1e-5 * v1.loss);
  EXPECT_GT(v.bytes, v.tokens);  // a piece stands for more than a byte on average
  EXPECT_NEAR(v.byte_perplexity, std::exp(v.loss * v.tokens / v.bytes), 1e-9 * v.byte_perplexity);
  // The loss fell over the 8 steps (from about ln 200 = 5.3).
  EXPECT_LT(run.losses.back(), run.losses.front());
}

TEST(LmPacking, RestoredLoaderContinuesAcrossTheEpochBoundary) {
  Comm& w = world();
  PackedLoader a(lm_cfg(1), w);
  const std::int64_t steps = a.steps_per_epoch() + 2;
  std::vector<std::vector<Batch>> seen;
  std::vector<BatchSource::State> states;
  for (std::int64_t s = 0; s < steps; ++s) {
    states.push_back(a.state());
    seen.push_back(a.next_step());
  }
  EXPECT_EQ(a.state().epoch, 1);
  for (const std::int64_t at : {std::int64_t{1}, a.steps_per_epoch() - 1, a.steps_per_epoch()}) {
    PackedLoader b(lm_cfg(1), w);
    b.restore(states[static_cast<std::size_t>(at)]);
    for (std::int64_t s = at; s < steps; ++s) {
      const std::vector<Batch> got = b.next_step();
      ASSERT_EQ(got.size(), seen[static_cast<std::size_t>(s)].size());
      for (std::size_t k = 0; k < got.size(); ++k)
        EXPECT_EQ(got[k].tgt_in, seen[static_cast<std::size_t>(s)][k].tgt_in) << "restored at " << at << ", step " << s;
    }
  }
}

TEST(LmPacking, BadInputIsTheSameErrorOnEveryRank) {
  Comm& w = world();
  auto error_everywhere = [&](const std::function<void()>& f) {
    std::string msg;
    try {
      f();
    } catch (const InputError& e) {
      msg = e.what();
    }
    EXPECT_TRUE(w.all_true(!msg.empty())) << "no InputError on some rank";
    std::string root = msg;
    w.broadcast_string(root, 0);
    EXPECT_EQ(msg, root);
    return msg;
  };
  const std::string d = dataset_dir();
  // A file that is not a dataset; a missing one.
  if (w.rank() == 0) std::ofstream(d + "/not.h5") << "plain text";
  w.barrier();
  EXPECT_NE(error_everywhere([&] { PackedLoader l(lm_cfg(1, 0.0, d + "/not.h5"), w); }).find("not an HDF5 file"),
            std::string::npos);
  EXPECT_NE(error_everywhere([&] { PackedLoader l(lm_cfg(1, 0.0, d + "/none.h5"), w); }).find("no such dataset file"),
            std::string::npos);
  // The validation split alone is too small for a step of 4 x 2 blocks per rank.
  Config small = lm_cfg(4, 0.0, d + "/valid.h5");
  small.data.max_tokens = 256;  // 16 blocks per micro-batch: 64 per step and rank, the split has 57
  EXPECT_NE(error_everywhere([&] { PackedLoader l(small, w); }).find("gives no optimizer step"), std::string::npos);
  // A model vocabulary smaller than the tokenizer's.
  Config vocab = lm_cfg(1);
  vocab.model.vocab_size = 50;
  EXPECT_NE(error_everywhere([&] { PackedLoader l(vocab, w); }).find("more than model%vocab_size = 50"),
            std::string::npos);
}
