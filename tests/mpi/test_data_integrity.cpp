// A dataset that changes under a run is an error, not data (1, 2 and 4 ranks): a file truncated
// while the reader holds it (reading past the end through MPI-IO gives zeros, which are valid
// token ids), rewritten in place (task='prepare' again: same inode, new bytes), or replaced by a
// rename. Every rank reads after the change and every rank must throw, naming the file and what
// changed; a file only removed from its path (its bytes unchanged) is still read. Also: the
// prefetcher does not drop the error of a job it discards.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <numeric>
#include <stdexcept>

#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/prefetcher.hpp"
#include "training_support.hpp"

using namespace th;
using testing_support::world;

namespace {
constexpr int kExamples = 60;

// Example i: source (4, 5, 6 + i % 7, ... `len` ids), target (7, 8 + i % 5); `shift` changes the
// ids (not the lengths) of a second version of the file.
void write_file(const std::string& path, int shift = 0) {
  DatasetContent c;
  for (int i = 0; i < kExamples; ++i) {
    std::vector<int> src;
    for (int k = 0; k < 3 + i % 9; ++k) src.push_back(4 + (k + i + shift) % 15);
    c.add("k" + std::to_string(i), src, {7, 8 + (i + shift) % 5});
  }
  DatasetProvenance p;
  p.split = "train";
  p.tokenizer_model = "model bytes";
  p.vocab_size = 20;
  write_dataset(path, c, p);
}

std::vector<std::int64_t> all_rows() {
  std::vector<std::int64_t> r(kExamples);
  std::iota(r.begin(), r.end(), 0);
  return r;
}

// The message of the th::Error that f throws on this rank ("" if none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Opens `path` on every rank, reads everything (fine), lets rank 0 apply `change`, then reads
// again on every rank, independently and collectively; returns the two messages of this rank.
std::pair<std::string, std::string> read_after(const std::string& path, const std::function<void()>& change) {
  Comm& w = world();
  if (w.rank() == 0) write_file(path);
  w.barrier();
  DatasetReader reader(path, w);
  EXPECT_EQ(reader.read(all_rows(), false).size(), static_cast<std::size_t>(kExamples));
  w.barrier();
  if (w.rank() == 0) change();
  w.barrier();
  const std::string independent = error_of([&] { reader.read(all_rows(), false); });
  const std::string collective = error_of([&] { reader.read(all_rows(), true); });
  w.barrier();
  return {independent, collective};
}
}  // namespace

TEST(DataIntegrity, TruncatedFileIsAnErrorNotZeros) {
  const std::string dir = testing_support::fresh_test_dir(world(), "data_truncated");
  const std::string path = dir + "/train.h5";
  const auto [ind, coll] = read_after(path, [&] {
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  });
  for (const std::string& m : {ind, coll}) {
    EXPECT_TRUE(has(m, path + ": the dataset file changed while this run reads it (its size went from")) << m;
    EXPECT_TRUE(has(m, "what was read cannot be trusted")) << m;
  }
  if (world().rank() == 0) std::printf("[ integrity ] truncated: %s\n", ind.c_str());
}

TEST(DataIntegrity, FileRewrittenInPlaceIsAnError) {
  const std::string dir = testing_support::fresh_test_dir(world(), "data_rewritten");
  const std::string path = dir + "/train.h5";
  std::uintmax_t before = 0, after = 0;
  const auto [ind, coll] = read_after(path, [&] {
    before = std::filesystem::file_size(path);
    ::usleep(20000);    // a modification time the file system can tell from the first one
    write_file(path, 3);  // the same sizes, other ids: H5F_ACC_TRUNC keeps the inode
    after = std::filesystem::file_size(path);
  });
  if (world().rank() == 0) EXPECT_EQ(before, after) << "the rewrite should keep the size: only the time tells";
  for (const std::string& m : {ind, coll})
    EXPECT_TRUE(has(m, path + ": the dataset file changed while this run reads it (it was modified")) << m;
}

TEST(DataIntegrity, FileReplacedByRenameIsAnError) {
  const std::string dir = testing_support::fresh_test_dir(world(), "data_replaced");
  const std::string path = dir + "/train.h5";
  const auto [ind, coll] = read_after(path, [&] {
    write_file(dir + "/other.h5", 1);
    std::filesystem::rename(dir + "/other.h5", path);
  });
  for (const std::string& m : {ind, coll})
    EXPECT_TRUE(has(m, path + ": the dataset file changed while this run reads it (it was replaced by another file)"))
        << m;
}

TEST(DataIntegrity, FileRemovedFromItsPathIsStillRead) {
  const std::string dir = testing_support::fresh_test_dir(world(), "data_removed");
  const std::string path = dir + "/train.h5";
  const auto [ind, coll] = read_after(path, [&] { std::filesystem::remove(path); });
  EXPECT_EQ(ind, "");  // the reader holds the file open: its bytes cannot change
  EXPECT_EQ(coll, "");
}

TEST(DataIntegrity, PrefetcherDiscardRethrowsTheJobsError) {
  for (const bool background : {true, false}) {
    Prefetcher p(background);
    p.submit([]() -> std::vector<Batch> { throw Error("bad rows"); });
    if (background) {
      EXPECT_EQ(error_of([&] { p.discard(); }), "bad rows");
    } else {
      p.discard();  // not run yet (runs inside take()): nothing failed
    }
    p.submit([] { return std::vector<Batch>(2); });
    EXPECT_EQ(p.take().size(), 2u);
  }
}
