// The distributed sampler and token-budget batching (issue 4, "Prove it"): shards disjoint and
// covering the epoch exactly once for 1-4 ranks, epochs differ, (seed, epoch) fixes the order,
// the elastic rule for the splits of 4, token budgets, padding as reported, and a restored
// loader continuing with exactly the batches it would have given.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/data/loader.hpp"
#include "th/data/prefetcher.hpp"
#include "th/data/sampler.hpp"

using namespace th;

namespace {
// Lengths spread like sentences: 1 to 60 tokens per side, sides correlated.
std::vector<ExampleLength> corpus(int n, std::uint64_t seed) {
  std::vector<ExampleLength> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int base = 1 + static_cast<int>(uniform01(seed, 1, i) * 50);
    v[i].src = base + static_cast<int>(uniform01(seed, 2, i) * 10);
    v[i].tgt = base + static_cast<int>(uniform01(seed, 3, i) * 10);
  }
  return v;
}

SamplerOptions options(int world, int accum, std::int64_t max_tokens = 1000) {
  SamplerOptions o;
  o.max_tokens = max_tokens;
  o.seed = 42;
  o.world = world;
  o.accum = accum;
  return o;
}

// Every example index of step s, over all ranks and micro-batches.
std::multiset<std::int64_t> step_examples(const DistributedSampler& s, std::int64_t step, int world) {
  std::multiset<std::int64_t> out;
  for (int r = 0; r < world; ++r)
    for (const auto& mb : s.step_rows(step, r)) out.insert(mb.begin(), mb.end());
  return out;
}
}  // namespace

TEST(Sampler, ShardsAreDisjointAndCoverTheEpochExactlyOnce) {
  const auto lengths = corpus(997, 3);  // prime: no world size divides the batch count by luck
  for (int world = 1; world <= 4; ++world)
    for (int accum = 1; accum <= 3; ++accum) {
      DistributedSampler s(lengths, options(world, accum));
      for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
        s.set_epoch(epoch);
        ASSERT_GT(s.steps(), 0);
        std::vector<int> seen(lengths.size(), 0);
        for (std::int64_t step = 0; step < s.steps(); ++step)
          for (int r = 0; r < world; ++r) {
            const auto rows = s.step_rows(step, r);
            ASSERT_EQ(static_cast<int>(rows.size()), accum);  // every rank the same count: no waiting
            for (const auto& mb : rows) {
              EXPECT_FALSE(mb.empty());
              for (auto i : mb) ++seen[static_cast<std::size_t>(i)];
            }
          }
        for (std::size_t i = 0; i < seen.size(); ++i)
          ASSERT_EQ(seen[i], 1) << "example " << i << ", world " << world << ", accum " << accum << ", epoch " << epoch;
        EXPECT_EQ(s.unused_examples(), 0);
        EXPECT_EQ(static_cast<std::int64_t>(s.micro_batches().size()), s.steps() * world * accum);
      }
    }
}

TEST(Sampler, EpochsDifferAndSeedAndEpochFixTheOrder) {
  const auto lengths = corpus(500, 5);
  DistributedSampler a(lengths, options(2, 1)), b(lengths, options(2, 1));
  a.set_epoch(3);
  b.set_epoch(3);
  EXPECT_EQ(a.micro_batches(), b.micro_batches());
  const auto epoch3 = a.micro_batches();
  a.set_epoch(4);
  EXPECT_NE(a.micro_batches(), epoch3);
  // Not just the batch order: which examples share a batch changes too.
  std::set<std::vector<std::int64_t>> sets3, sets4;
  for (auto mb : epoch3) sets3.insert((std::sort(mb.begin(), mb.end()), mb));
  for (auto mb : a.micro_batches()) sets4.insert((std::sort(mb.begin(), mb.end()), mb));
  EXPECT_NE(sets3, sets4);
  a.set_epoch(3);  // going back gives epoch 3 again: a pure function of (seed, epoch)
  EXPECT_EQ(a.micro_batches(), epoch3);
  auto other_seed = options(2, 1);
  other_seed.seed = 43;
  DistributedSampler c(lengths, other_seed);
  c.set_epoch(3);
  EXPECT_NE(c.micro_batches(), epoch3);
}

TEST(Sampler, ElasticRuleForTheSplitsOfFour) {
  const auto lengths = corpus(800, 7);
  DistributedSampler w4(lengths, options(4, 1)), w2(lengths, options(2, 2)), w1(lengths, options(1, 4));
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    w4.set_epoch(epoch);
    w2.set_epoch(epoch);
    w1.set_epoch(epoch);
    ASSERT_EQ(w4.steps(), w2.steps());
    ASSERT_EQ(w4.steps(), w1.steps());
    for (std::int64_t step = 0; step < w4.steps(); ++step) {
      const auto e4 = step_examples(w4, step, 4);
      EXPECT_EQ(e4, step_examples(w2, step, 2)) << "epoch " << epoch << " step " << step;
      EXPECT_EQ(e4, step_examples(w1, step, 1)) << "epoch " << epoch << " step " << step;
      // Micro-batch by micro-batch: rank r's a-th micro-batch is micro-batch a*world + r.
      EXPECT_EQ(w4.step_rows(step, 3)[0], w1.step_rows(step, 0)[3]);
      EXPECT_EQ(w2.step_rows(step, 1)[1], w1.step_rows(step, 0)[3]);
      EXPECT_EQ(w2.step_rows(step, 0)[1], w4.step_rows(step, 2)[0]);  // a*world + r, not r*accum + a
    }
  }
  // A different product is a different experiment: 3 x 1 does not batch like 4 x 1.
  DistributedSampler w3(lengths, options(3, 1));
  w3.set_epoch(0);
  w4.set_epoch(0);
  EXPECT_NE(w3.steps(), w4.steps());
}

TEST(Sampler, TokenBudgetsHoldAndPaddingIsAsReported) {
  const auto lengths = corpus(1200, 11);
  for (std::int64_t budget : {200, 1000, 4000}) {
    DistributedSampler s(lengths, options(3, 2, budget));
    s.set_epoch(1);
    std::int64_t real = 0, padded = 0;
    for (const auto& mb : s.micro_batches()) {
      // Independent count of the positions: collate real rows and measure the tensors.
      std::vector<Example> ex;
      std::vector<std::int64_t> rows;
      for (auto i : mb) {
        Example e;
        e.src.assign(static_cast<std::size_t>(lengths[i].src), 7);
        e.tgt.assign(static_cast<std::size_t>(lengths[i].tgt), 9);
        rows.push_back(static_cast<std::int64_t>(ex.size()));
        ex.push_back(e);
      }
      const Batch b = collate(ex, rows, false);
      ASSERT_LE(b.positions(), budget);
      padded += b.positions();
      for (int v : b.src) real += v != SpecialTokens::pad;
      for (int v : b.tgt_in) real += v != SpecialTokens::pad;
    }
    EXPECT_NEAR(s.padding_fraction(), 1.0 - static_cast<double>(real) / static_cast<double>(padded), 1e-12);
    if (budget >= 1000) {
      EXPECT_LT(s.padding_fraction(), 0.12) << "bucketing should keep padding low";
    }
  }
}

TEST(Sampler, SplitToMultipleKeepsEveryRowAndTheBudget) {
  std::vector<std::vector<std::int64_t>> b = {{0, 1, 2, 3, 4}, {5}, {6, 7}};
  split_to_multiple(b, 4);
  const std::vector<std::vector<std::int64_t>> want = {{0, 1, 2}, {3, 4}, {5}, {6, 7}};
  EXPECT_EQ(b, want);
  // Fewer splittable batches than missing ones: split again in a second round.
  std::vector<std::vector<std::int64_t>> two_rounds = {{0, 1, 2, 3}, {4}};
  split_to_multiple(two_rounds, 4);
  const std::vector<std::vector<std::int64_t>> want2 = {{0}, {1}, {2, 3}, {4}};
  EXPECT_EQ(two_rounds, want2);
  std::vector<std::vector<std::int64_t>> singles = {{0}, {1}, {2}};
  split_to_multiple(singles, 2);  // nothing to split: left as is (the caller drops the tail)
  EXPECT_EQ(singles.size(), 3u);
}

namespace {
MpiComm& self() {
  static MpiComm comm(MPI_COMM_SELF);
  return comm;
}
Config synthetic_cfg(int accum) {
  const std::string text = R"(
&run task = 'train', output_dir = '/tmp/th-sampler-test', seed = 3 /
&model arch = 'encoder-decoder', d_model = 8, n_heads = 2, d_ff = 8, n_encoder_layers = 1,
       n_decoder_layers = 1, max_len = 32, vocab_size = 30 /
&data synthetic = 'reverse', synthetic_min_len = 2, synthetic_max_len = 20, synthetic_samples = 300,
      synthetic_valid_samples = 10, max_tokens = 200 /
&optim grad_accum = )" + std::to_string(accum) + " /\n";
  return make_config(Deck::from_text(text, "sampler-test"));
}
bool same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].src != b[i].src || a[i].tgt_in != b[i].tgt_in || a[i].tgt_out != b[i].tgt_out) return false;
  return true;
}
}  // namespace

TEST(Loader, RestoredLoaderContinuesIdentically) {
  const Config cfg = synthetic_cfg(2);
  TrainLoader a(cfg, self());
  ASSERT_TRUE(a.prefetching_in_background());
  const std::int64_t per_epoch = a.steps_per_epoch();
  ASSERT_GT(per_epoch, 3);
  std::vector<std::pair<TrainLoader::State, std::vector<Batch>>> history;
  for (std::int64_t s = 0; s < 2 * per_epoch + 3; ++s) {  // crosses two epoch boundaries
    const TrainLoader::State before = a.state();
    history.emplace_back(before, a.next_step());
  }
  EXPECT_EQ(a.state().epoch, 2);
  for (std::size_t from : {std::size_t{0}, std::size_t{2}, static_cast<std::size_t>(per_epoch),
                           static_cast<std::size_t>(per_epoch + 1), history.size() - 2}) {
    TrainLoader b(cfg, self());
    b.next_step();  // a prefetch in flight and a used step: restore must discard both
    b.restore(history[from].first);
    for (std::size_t k = from; k < history.size(); ++k)
      ASSERT_TRUE(same(b.next_step(), history[k].second)) << "restored at step " << from << ", step " << k;
  }
  // The end of an epoch, stated as (epoch, steps of that epoch), continues into the next one.
  TrainLoader c(cfg, self());
  c.restore({0, per_epoch});
  EXPECT_TRUE(same(c.next_step(), history[static_cast<std::size_t>(per_epoch)].second));
  EXPECT_EQ(c.state().epoch, 1);
  EXPECT_EQ(c.state().step_in_epoch, 1);
}

TEST(Prefetcher, BackgroundAndInlineGiveTheSameAndErrorsReachTheCaller) {
  for (bool background : {true, false}) {
    Prefetcher p(background);
    p.submit([] {
      Batch b;
      b.B = 3;
      return std::vector<Batch>{b};
    });
    EXPECT_EQ(p.take().at(0).B, 3);
    p.submit([]() -> std::vector<Batch> { throw InputError("bad row"); });
    EXPECT_THROW(p.take(), InputError);
    p.submit([] { return std::vector<Batch>(2); });
    p.discard();
    p.submit([] { return std::vector<Batch>(5); });  // usable again after discard
    EXPECT_EQ(p.take().size(), 5u);
  }
}

// A loader built from a temporary Config (as tests and tools do) keeps its own copy: the
// configuration it uses later is not a dangling reference (ASan's stack-use-after-scope in the
// sanitizer job, garbage batches without it). Compared with a loader of a named Config.
TEST(Loader, BuiltFromATemporaryConfigKeepsItsOwnCopy) {
  TrainLoader from_temporary(synthetic_cfg(2), self());
  std::vector<char> clobber(1 << 16, 'x');  // reuse the stack and heap the temporary had
  clobber[0] = static_cast<char>(clobber.size());
  const Config cfg = synthetic_cfg(2);
  TrainLoader reference(cfg, self());
  for (int s = 0; s < 3; ++s) ASSERT_TRUE(same(from_temporary.next_step(), reference.next_step())) << "step " << s;
  EXPECT_EQ(from_temporary.valid_batches().size(), reference.valid_batches().size());
}
