// Bad data input under MPI (1, 2 and 4 ranks): a truncated HDF5 file, a foreign HDF5 file, a
// file that is not HDF5, a missing file, a dataset whose vocabulary differs from model%vocab_size,
// a validation set from another tokenizer, and task='prepare' on bad TSVs. Each is an InputError
// naming the file (and line), raised with the same message on every rank: no crash, no hang.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/io/h5_file.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/loader.hpp"
#include "th/data/prepare.hpp"
#include "th/data/split.hpp"

using namespace th;

namespace {
MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

std::string shared_dir() {
  std::string d;
  if (world().rank() == 0) {
    d = "/tmp/th-bad-input-test-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
  }
  world().broadcast_string(d, 0);
  return d;
}

// Rank 0 makes a file with `make`; every rank waits for it.
void on_root(const std::function<void()>& make) {
  if (world().rank() == 0) make();
  world().barrier();
}

void write_dataset_file(const std::string& path, std::int64_t vocab, const std::string& model) {
  DatasetContent c;
  for (int i = 0; i < 40; ++i) c.add("k" + std::to_string(i), {4, 5, 6 + i % 7}, {7, 8 + i % 5});
  DatasetProvenance p;
  p.split = "train";
  p.tokenizer_model = model;
  p.vocab_size = vocab;
  write_dataset(path, c, p);
}

Config train_cfg(const std::string& train, const std::string& valid, int vocab) {
  const std::string text = "&run task = 'train', output_dir = '/tmp/th-bad-input' /\n"
                           "&model d_model = 8, n_heads = 2, d_ff = 8, n_encoder_layers = 1, n_decoder_layers = 1, "
                           "vocab_size = " + std::to_string(vocab) + " /\n&data train_file = '" + train +
                           "', valid_file = '" + valid + "', max_tokens = 64 /\n";
  return make_config(Deck::from_text(text, "bad-input-test"));
}

// Runs f on every rank; returns the InputError message, after checking every rank got one with
// the same text (a hash compared across ranks).
std::string input_error_everywhere(const std::function<void()>& f) {
  std::string msg;
  bool other = false;
  try {
    f();
  } catch (const InputError& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    other = true;
    msg = e.what();
  }
  EXPECT_FALSE(other) << "not an InputError: " << msg;
  const double h = static_cast<double>(fnv1a64(msg) >> 12);
  EXPECT_EQ(world().max(h), h) << "ranks disagree: " << msg;
  EXPECT_EQ(-world().max(-h), h) << "ranks disagree: " << msg;
  EXPECT_FALSE(msg.empty()) << "no error raised";
  return msg;
}
bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }
}  // namespace

TEST(BadInput, BrokenHdf5Files) {
  const std::string dir = shared_dir();
  const std::string good = dir + "/good.h5", truncated = dir + "/truncated.h5", foreign = dir + "/foreign.h5",
                    text = dir + "/text.h5";
  on_root([&] {
    write_dataset_file(good, 20, "model-bytes");
    const auto size = std::filesystem::file_size(good);
    std::filesystem::copy_file(good, truncated);
    std::filesystem::resize_file(truncated, size / 2);
    H5File f(foreign, H5File::Mode::Create);  // valid HDF5, another program's
    f.write("loss", std::vector<double>{1.0, 2.0}, {2});
    std::ofstream(text) << "src\ttgt\n";
  });
  std::string m = input_error_everywhere([&] { DatasetReader r(truncated, world()); });
  EXPECT_TRUE(has(m, truncated + ": cannot be opened as HDF5: the file is truncated or damaged")) << m;
  m = input_error_everywhere([&] { TrainLoader l(train_cfg(foreign, "", 0), world()); });
  EXPECT_TRUE(has(m, foreign + ": an HDF5 file, but not a torch-handle dataset")) << m;
  m = input_error_everywhere([&] { TrainLoader l(train_cfg(text, "", 0), world()); });
  EXPECT_TRUE(has(m, text + ": not an HDF5 file")) << m;
  m = input_error_everywhere([&] { TrainLoader l(train_cfg(dir + "/none.h5", "", 0), world()); });
  EXPECT_TRUE(has(m, dir + "/none.h5: no such dataset file")) << m;
  // The intact file opens (the failures above are about the files, not the reader).
  DatasetReader ok(good, world());
  EXPECT_EQ(ok.info().examples, 40);
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST(BadInput, VocabularyMismatches) {
  const std::string dir = shared_dir();
  const std::string train = dir + "/train.h5", valid = dir + "/valid.h5";
  on_root([&] {
    write_dataset_file(train, 20, "model A");
    write_dataset_file(valid, 20, "model B");
  });
  std::string m = input_error_everywhere([&] { TrainLoader l(train_cfg(train, "", 32), world()); });
  EXPECT_TRUE(has(m, "data%train_file = '" + train + "' was made with a SentencePiece vocabulary of 20 pieces, but "
                     "model%vocab_size = 32")) << m;
  m = input_error_everywhere([&] { TrainLoader l(train_cfg(train, valid, 0), world()); });
  EXPECT_TRUE(has(m, "data%valid_file = '" + valid + "' was made with another SentencePiece model")) << m;
  TrainLoader fine(train_cfg(train, "", 20), world());  // the matching size is accepted
  EXPECT_EQ(fine.vocab_size(), 20);
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST(BadInput, PrepareStopsEveryRankWithTheFileAndLine) {
  const std::string dir = shared_dir();
  const std::string notab = dir + "/notab.tsv", empty = dir + "/empty.tsv", latin1 = dir + "/latin1.tsv";
  on_root([&] {
    std::ofstream(notab) << "one\tuno\ntwo\tdos\nthree tres\n";
    std::ofstream(empty) << "";
    std::ofstream(latin1) << "one\tuno\nsong\tcanci\xF3n\n";
  });
  auto prepare = [&](const std::string& tsv) {
    const Config cfg = make_config(Deck::from_text(
        "&run task = 'prepare', output_dir = '" + dir + "/out' /\n&prepare source = '" + tsv + "' /\n", "deck"));
    run_prepare(cfg, world());
  };
  std::string m = input_error_everywhere([&] { prepare(notab); });
  EXPECT_TRUE(has(m, notab + ":3: no TAB")) << m;
  m = input_error_everywhere([&] { prepare(empty); });
  EXPECT_TRUE(has(m, empty + ": empty file")) << m;
  m = input_error_everywhere([&] { prepare(latin1); });
  EXPECT_TRUE(has(m, latin1 + ":2: invalid UTF-8 at byte 11")) << m;
  m = input_error_everywhere([&] { prepare(dir + "/absent.tsv"); });
  EXPECT_TRUE(has(m, dir + "/absent.tsv: cannot open")) << m;
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}
