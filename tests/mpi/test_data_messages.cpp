// Datasets whose problem used to be reported as another one (issue 15, item 4), under MPI (1, 2
// and 4 ranks): a dataset with no examples ("no example fits model%max_len" before), and token
// datasets stored as float32 ("missing or of the wrong length" before). Each is an InputError with
// the same message on every rank, naming the file and what is wrong.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <vector>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/loader.hpp"

using namespace th;

namespace {
MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

std::string shared_dir() {
  std::string d;
  if (world().rank() == 0) {
    d = "/tmp/th-data-messages-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
  }
  world().broadcast_string(d, 0);
  return d;
}

void write_dataset_file(const std::string& path, int examples) {
  DatasetContent c;
  for (int i = 0; i < examples; ++i) c.add("k" + std::to_string(i), {4, 5, 6 + i % 7}, {7, 8 + i % 5});
  DatasetProvenance p;
  p.split = "train";
  p.tokenizer_model = "model-bytes";
  p.vocab_size = 20;
  write_dataset(path, c, p);
}

// Replaces the int32 dataset `name` by a float32 one of the same values (what a conversion script
// writing numpy's default float array produces).
void make_float(const std::string& path, const std::string& name) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t ds = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  hid_t space = H5Dget_space(ds);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  std::vector<float> v(n);
  H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(ds);
  H5Ldelete(f, name.c_str(), H5P_DEFAULT);
  ds = H5Dcreate2(f, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(ds);
  H5Sclose(space);
  H5Fclose(f);
}

Config train_cfg(const std::string& train, const std::string& valid) {
  const std::string text = "&run task = 'train', output_dir = '/tmp/th-data-messages' /\n"
                           "&model d_model = 8, n_heads = 2, d_ff = 8, n_encoder_layers = 1, n_decoder_layers = 1 /\n"
                           "&data train_file = '" + train + "', valid_file = '" + valid + "', max_tokens = 64 /\n";
  return make_config(Deck::from_text(text, "data-messages-test"));
}

// The InputError message of f(), checked to be the same on every rank.
std::string input_error_everywhere(const std::function<void()>& f) {
  std::string msg;
  try {
    f();
  } catch (const InputError& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an InputError: " << e.what();
  }
  std::string root = msg;
  world().broadcast_string(root, 0);
  EXPECT_EQ(msg, root) << "rank " << world().rank() << " disagrees with rank 0";
  EXPECT_FALSE(msg.empty()) << "no error raised";
  return msg;
}
bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }
}  // namespace

TEST(DataMessages, DatasetWithoutExamples) {
  const std::string dir = shared_dir();
  const std::string empty = dir + "/empty.h5", good = dir + "/good.h5";
  if (world().rank() == 0) {
    write_dataset_file(empty, 0);
    write_dataset_file(good, 40);
  }
  world().barrier();
  std::string m = input_error_everywhere([&] { TrainLoader l(train_cfg(empty, ""), world()); });
  EXPECT_TRUE(has(m, "data%train_file = '" + empty + "' holds no examples (num_examples = 0)")) << m;
  EXPECT_FALSE(has(m, "max_len")) << m;
  m = input_error_everywhere([&] { TrainLoader l(train_cfg(good, empty), world()); });
  EXPECT_TRUE(has(m, "data%valid_file = '" + empty + "' holds no examples")) << m;
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST(DataMessages, FloatTokensAreNamedAsSuch) {
  const std::string dir = shared_dir();
  const std::string tokens = dir + "/float_tokens.h5", offsets = dir + "/float_offsets.h5";
  if (world().rank() == 0) {
    write_dataset_file(tokens, 40);
    make_float(tokens, "tgt/tokens");
    write_dataset_file(offsets, 40);
    make_float(offsets, "src/offsets");
  }
  world().barrier();
  std::string m = input_error_everywhere([&] { DatasetReader r(tokens, world()); });
  EXPECT_TRUE(has(m, tokens + ": tgt/tokens holds floating-point numbers (float32); token ids and offsets are integers"))
      << m;
  EXPECT_FALSE(has(m, "wrong length")) << m;
  m = input_error_everywhere([&] { DatasetReader r(offsets, world()); });
  EXPECT_TRUE(has(m, offsets + ": src/offsets holds floating-point numbers (float32)")) << m;
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}
