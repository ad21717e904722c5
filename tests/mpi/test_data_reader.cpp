// The parallel dataset reader and the file-backed loader at 1, 2, 3 and 4 ranks: a dataset
// written on rank 0 reads back with the same ids through MPI-IO hyperslabs (independent reads
// in any row order, collective reads with unequal shares, a rank with no rows); the loader's
// shards over an epoch cover every example exactly once; the validation shares cover the
// validation set; a restored file-backed loader continues identically.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/rng.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/loader.hpp"
#include "th/train/trainer.hpp"

using namespace th;

namespace {
MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

constexpr int kVocab = 64;

// Example i: source = the digits of i in base 60 shifted past the special ids, then a
// pseudo-random tail (0-9 tokens, some empty sentences); target = a different pseudo-random
// run. The source's first tokens identify the example in any batch.
Example expected(std::int64_t i) {
  Example e;
  e.src = {4 + static_cast<int>(i / 60), 4 + static_cast<int>(i % 60)};
  const int ns = static_cast<int>(uniform01(9, 1, i) * 10), nt = static_cast<int>(uniform01(9, 2, i) * 14);
  for (int t = 0; t < ns; ++t) e.src.push_back(4 + static_cast<int>(uniform01(9, 3, i * 100 + t) * 60));
  for (int t = 0; t < nt; ++t) e.tgt.push_back(4 + static_cast<int>(uniform01(9, 4, i * 100 + t) * 60));
  return e;
}
std::int64_t identify(const Batch& b, int row) {
  return static_cast<std::int64_t>(b.src[static_cast<std::size_t>(row) * b.S] - 4) * 60 +
         (b.src[static_cast<std::size_t>(row) * b.S + 1] - 4);
}

// A shared folder named by rank 0.
std::string shared_dir() {
  std::string d;
  if (world().rank() == 0) {
    d = "/tmp/th-reader-test-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
  }
  world().broadcast_string(d, 0);
  return d;
}

std::string write_file(const std::string& dir, const std::string& name, std::int64_t n) {
  const std::string path = dir + "/" + name;
  if (world().rank() == 0) {
    DatasetContent c;
    for (std::int64_t i = 0; i < n; ++i) {
      const Example e = expected(i);
      c.add("ex" + std::to_string(i), e.src, e.tgt);
    }
    DatasetProvenance p;
    p.split = name;
    p.tokenizer_model = "stand-in bytes: the reader does not parse the model";
    p.vocab_size = kVocab;
    p.source = "test";
    write_dataset(path, c, p);
  }
  world().barrier();
  return path;
}

Config loader_cfg(const std::string& train, const std::string& valid, int accum) {
  const std::string text = R"(
&run task = 'train', output_dir = '/tmp/th-reader-test', seed = 11 /
&model arch = 'encoder-decoder', d_model = 8, n_heads = 2, d_ff = 8, n_encoder_layers = 1,
       n_decoder_layers = 1, max_len = 14, vocab_size = 0 /
&data train_file = ')" + train + "', valid_file = '" + valid + R"(', max_tokens = 120 /
&optim grad_accum = )" + std::to_string(accum) + " /\n";
  return make_config(Deck::from_text(text, "reader-test"));
}
}  // namespace

TEST(DatasetReader, RoundTripThroughMpiIo) {
  Comm& c = world();
  const std::string dir = shared_dir();
  const std::int64_t n = 1001;
  const std::string path = write_file(dir, "round.h5", n);
  {
    DatasetReader reader(path, c);
    ASSERT_EQ(reader.info().examples, n);
    EXPECT_EQ(reader.info().vocab_size, kVocab);
    // Failures below are counted, not fatal: a rank leaving the test early would leave the
    // others waiting in the next collective.
    EXPECT_EQ(static_cast<std::int64_t>(reader.lengths().size()), n);
    int bad = 0;
    for (std::int64_t i = 0; i < n && i < static_cast<std::int64_t>(reader.lengths().size()); ++i) {
      const Example e = expected(i);  // every rank holds every length
      bad += reader.lengths()[static_cast<std::size_t>(i)].src != static_cast<int>(e.src.size()) ||
             reader.lengths()[static_cast<std::size_t>(i)].tgt != static_cast<int>(e.tgt.size());
    }
    EXPECT_EQ(bad, 0) << "lengths differ from what was written";
    // Independent reads: a scattered share, asked in a scrambled order, plus a run of adjacent rows.
    std::vector<std::int64_t> rows;
    for (std::int64_t i = c.rank(); i < n; i += 3 * c.size()) rows.push_back(i);
    for (std::int64_t i = 500; i < 540; ++i)
      if (i % (3 * c.size()) != c.rank()) rows.push_back(i);
    for (std::size_t k = rows.size(); k > 1; --k)
      std::swap(rows[k - 1], rows[static_cast<std::size_t>(uniform01(5, c.rank(), k) * static_cast<double>(k))]);
    const auto got = reader.read(rows, false);
    EXPECT_EQ(got.size(), rows.size());
    bad = 0;
    for (std::size_t k = 0; k < rows.size() && k < got.size(); ++k) {
      const Example e = expected(rows[k]);
      bad += got[k].src != e.src || got[k].tgt != e.tgt;
    }
    EXPECT_EQ(bad, 0) << "independent reads: rows with other ids than written";
    // Collective read with unequal shares; the last rank (of several) reads nothing.
    std::vector<std::int64_t> share;
    if (c.size() == 1 || c.rank() != c.size() - 1)
      for (std::int64_t i = c.rank(); i < n; i += c.size() + c.rank()) share.push_back(i);
    const auto coll = reader.read(share, true);
    EXPECT_EQ(coll.size(), share.size());
    bad = 0;
    for (std::size_t k = 0; k < share.size() && k < coll.size(); ++k)
      bad += coll[k].src != expected(share[k]).src || coll[k].tgt != expected(share[k]).tgt;
    EXPECT_EQ(bad, 0) << "collective read: rows with other ids than written";
    EXPECT_TRUE(reader.read({}, false).empty());
  }
  c.barrier();
  if (c.rank() == 0) std::filesystem::remove_all(dir);
}

TEST(DatasetLoader, ShardsCoverTheEpochAndValidationOnceAcrossRanks) {
  Comm& c = world();
  const std::string dir = shared_dir();
  const std::string train = write_file(dir, "train.h5", 700), valid = write_file(dir, "valid.h5", 90);
  for (int accum : {1, 2}) {
    const Config cfg = loader_cfg(train, valid, accum);
    TrainLoader loader(cfg, c);
    EXPECT_EQ(loader.vocab_size(), kVocab);  // model%vocab_size = 0: taken from the dataset
    // Examples over max_len = 14 on a side (source 12 + EOS fits, target 14 + BOS does not).
    std::int64_t too_long = 0;
    for (std::int64_t i = 0; i < 700; ++i)
      too_long += expected(i).src.size() + 1 > 14 || expected(i).tgt.size() + 1 > 14;
    EXPECT_EQ(loader.skipped_too_long(), too_long);
    EXPECT_EQ(loader.examples(), 700 - too_long);
    std::vector<std::int64_t> seen(700, 0);
    int bad = 0;
    for (std::int64_t s = 0; s < loader.steps_per_epoch(); ++s) {
      const auto micro = loader.next_step();
      EXPECT_EQ(static_cast<int>(micro.size()), accum);
      for (const Batch& b : micro) {
        EXPECT_LE(b.positions(), 120);
        for (int r = 0; r < b.B; ++r) {
          const std::int64_t id = identify(b, r);
          if (id < 0 || id >= 700) {
            ++bad;
            continue;
          }
          ++seen[static_cast<std::size_t>(id)];
          // The tokens are the file's: the target row as written (before EOS and padding).
          const Example e = expected(id);
          for (std::size_t t = 0; t < e.tgt.size(); ++t) bad += b.tgt_out[static_cast<std::size_t>(r) * b.T + t] != e.tgt[t];
        }
      }
    }
    EXPECT_EQ(bad, 0) << "batches hold tokens other than the file's";
    c.allreduce(seen.data(), seen.size(), ReduceOp::Sum);
    for (std::int64_t i = 0; i < 700; ++i) {
      const Example e = expected(i);
      const bool fits = e.src.size() + 1 <= 14 && e.tgt.size() + 1 <= 14;
      EXPECT_EQ(seen[static_cast<std::size_t>(i)], fits ? 1 : 0) << "example " << i << ", accum " << accum;
    }
    std::vector<std::int64_t> vseen(90, 0);
    for (const Batch& b : loader.valid_batches())
      for (int r = 0; r < b.B; ++r) {
        const std::int64_t id = identify(b, r);
        if (id >= 0 && id < 90) ++vseen[static_cast<std::size_t>(id)];
      }
    c.allreduce(vseen.data(), vseen.size(), ReduceOp::Sum);
    for (std::int64_t i = 0; i < 90; ++i) {
      const Example e = expected(i);
      EXPECT_EQ(vseen[static_cast<std::size_t>(i)], e.src.size() + 1 <= 14 && e.tgt.size() + 1 <= 14 ? 1 : 0)
          << "validation example " << i;
    }
  }
  c.barrier();
  if (c.rank() == 0) std::filesystem::remove_all(dir);
}

TEST(DatasetLoader, RestoredFileLoaderContinuesIdentically) {
  Comm& c = world();
  const std::string dir = shared_dir();
  const std::string train = write_file(dir, "train.h5", 300);
  const Config cfg = loader_cfg(train, "", 1);
  std::vector<std::vector<std::int64_t>> ids;  // example ids per step, this rank
  TrainLoader::State mid;
  {
    TrainLoader a(cfg, c);
    const std::int64_t total = a.steps_per_epoch() + 4;  // into the second epoch
    for (std::int64_t s = 0; s < total; ++s) {
      if (s == 3) mid = a.state();
      std::vector<std::int64_t> step;
      for (const Batch& b : a.next_step())
        for (int r = 0; r < b.B; ++r) step.push_back(identify(b, r));
      ids.push_back(step);
    }
  }
  TrainLoader b(cfg, c);
  b.restore(mid);
  for (std::size_t s = 3; s < ids.size(); ++s) {
    std::vector<std::int64_t> step;
    for (const Batch& bt : b.next_step())
      for (int r = 0; r < bt.B; ++r) step.push_back(identify(bt, r));
    EXPECT_EQ(step, ids[s]) << "step " << s;
  }
  c.barrier();
  if (c.rank() == 0) std::filesystem::remove_all(dir);
}

// model%vocab_size = 0 takes the vocabulary from the dataset; the deck stored in a checkpoint
// says the resolved value (a checkpoint's deck alone must describe its model). The attribute is
// read with the HDF5 C API, as any reader would (docs/checkpoint-format.md).
namespace {
std::string root_string_attribute(const std::string& path, const char* name) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return "(cannot open " + path + ")";
  const hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  const hid_t type = H5Aget_type(a);
  std::string out;
  if (a >= 0 && H5Tis_variable_str(type) > 0) {
    const hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char* text = nullptr;
    if (H5Aread(a, mem, &text) >= 0 && text) out = text;
    H5free_memory(text);
    H5Tclose(mem);
  }
  H5Tclose(type);
  H5Aclose(a);
  H5Fclose(f);
  return out;
}
}  // namespace

TEST(Checkpoint, DeckStoresTheVocabularyResolvedFromTheData) {
  Comm& c = world();
  const std::string dir = shared_dir();
  const std::string train = write_file(dir, "vocab-train.h5", 200);
  Config cfg = loader_cfg(train, "", 1);
  cfg.run.output_dir = dir + "/vocab-run";
  ASSERT_EQ(cfg.model.vocab_size, 0);
  {
    Trainer t(cfg, c);
    t.step();
    t.save_checkpoint_now();
  }
  std::string deck_text;
  if (c.rank() == 0) deck_text = root_string_attribute(dir + "/vocab-run/checkpoints/ckpt_00000001.h5", "deck");
  c.broadcast_string(deck_text, 0);
  ASSERT_NE(deck_text.find("&model"), std::string::npos) << deck_text;
  EXPECT_EQ(make_config(Deck::from_text(deck_text, "the checkpoint's deck")).model.vocab_size, kVocab);
}
