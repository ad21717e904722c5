// Checkpoint files at 1, 2 and 4 ranks: bitwise round trips whatever the ranges of the ranks on
// write and on read (resharding), the `latest` pointer and keep_last pruning, rejection of a
// truncated file, a flipped bit and a missing dataset with the fallback to the previous
// checkpoint, a save interrupted by a crash, resume = 'never' / 'auto' / a path.
// TH_CKPT_TEST_KEEP=1 keeps the files (rank 0 prints where), e.g. for h5dump.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>

#include "th/io/checkpoint.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"

using namespace th;
namespace fs = std::filesystem;

namespace {

MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

// A directory every rank sees, fresh for each test; removed at the end unless TH_CKPT_TEST_KEEP.
struct Scratch {
  std::string dir;
  explicit Scratch(const std::string& name) {
    if (world().rank() == 0) {
      dir = (fs::temp_directory_path() / ("th_ckpt_" + std::to_string(::getpid()) + "_" + name)).string();
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    world().broadcast_string(dir, 0);
  }
  ~Scratch() {
    world().barrier();
    if (world().rank() != 0) return;
    if (std::getenv("TH_CKPT_TEST_KEEP"))
      std::cout << "kept " << dir << "\n";
    else
      fs::remove_all(dir);
  }
  std::string file(std::int64_t step) const { return dir + "/" + checkpoint_file_name(step); }
};

// Tensors of odd shapes (a 3-D one, a scalar), a gap of 3 unused elements in the flat buffer.
std::vector<CheckpointTensor> model_tensors() {
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> decl = {
      {"embed/weight", {37, 13}},
      {"encoder/layer_0/self_attn/q_proj/weight", {29, 13}},
      {"encoder/layer_0/self_attn/q_proj/bias", {29}},
      {"encoder/layer_0/norm1/weight", {13}},
      {"decoder/layer_0/ffn/fc1/weight", {3, 5, 7}},
      {"decoder/scale", {}},
      {"decoder/layer_0/ffn/fc2/weight", {11, 17}},
  };
  std::vector<CheckpointTensor> out;
  std::int64_t off = 0;
  for (std::size_t i = 0; i < decl.size(); ++i) {
    std::int64_t n = 1;
    for (const auto d : decl[i].second) n *= d;
    out.push_back({decl[i].first, decl[i].second, off, n});
    off += n + (i == 2 ? 3 : 0);
  }
  return out;
}

std::int64_t flat_size(const std::vector<CheckpointTensor>& t) { return t.back().offset + t.back().numel; }

struct Buffers {
  std::vector<float> p, m, v;
};

// Random bits, including values a lossy path would change (NaN payloads, -0, infinities, subnormals).
Buffers random_buffers(std::int64_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  Buffers b;
  for (auto* x : {&b.p, &b.m, &b.v}) {
    x->resize(static_cast<std::size_t>(n));
    for (auto& f : *x) {
      const std::uint32_t bits = gen();
      std::memcpy(&f, &bits, 4);
    }
  }
  b.p[0] = -0.0f;
  b.p[1] = std::numeric_limits<float>::infinity();
  b.m[2] = std::numeric_limits<float>::denorm_min();
  return b;
}

CheckpointState some_state(std::int64_t step) {
  CheckpointState s;
  s.step = step;
  s.epoch = 3;
  s.step_in_epoch = step % 7;
  s.micro = (std::uint64_t{1} << 63) + 12345;
  s.loss_scale = 65536.0;
  s.deck = "&model\n  d_model = 13\n/\n! ünïcode and a \"quote\"\n";
  s.world_size = world().size();
  s.zero_stage = 0;
  return s;
}

using Range = std::pair<std::int64_t, std::int64_t>;
Range everything(std::int64_t n) { return {0, n}; }
Range rank0_only(std::int64_t n) { return world().rank() == 0 ? Range{0, n} : Range{0, 0}; }
Range equal_slice(std::int64_t n) {
  const std::int64_t P = world().size(), r = world().rank();
  return {n * r / P, n * (r + 1) / P};
}
// Uneven cuts that fall inside rows and inside the gap: 0, 1 + n r^2 / P^2, ..., n.
Range uneven_slice(std::int64_t n) {
  const std::int64_t P = world().size(), r = world().rank();
  const auto cut = [&](std::int64_t k) { return k == 0 ? 0 : k == P ? n : 1 + n * k * k / (P * P); };
  return {cut(r), cut(r + 1)};
}

std::vector<float> slice(const std::vector<float>& x, Range r) {
  return std::vector<float>(x.begin() + r.first, x.begin() + r.second);
}

void save(const Scratch& s, const std::vector<CheckpointTensor>& t, const Buffers& b, Range r, std::int64_t step,
          int keep_last = 0) {
  // Local copies of the owned part: the pointers point at element `begin`, as for a ZeRO shard.
  const auto p = slice(b.p, r), m = slice(b.m, r), v = slice(b.v, r);
  save_checkpoint(world(), s.dir, t, p.data(), m.data(), v.data(), r.first, r.second, some_state(step), keep_last);
}

// Loads [r) into fresh buffers and checks every tensor element in it is bitwise the original.
void expect_loads(const std::string& path, const std::vector<CheckpointTensor>& t, const Buffers& b, Range r,
                  std::int64_t step) {
  const auto len = static_cast<std::size_t>(r.second - r.first);
  std::vector<float> p(len, 7.0f), m(len, 7.0f), v(len, 7.0f);
  const CheckpointState st = load_checkpoint(world(), path, t, p.data(), m.data(), v.data(), r.first, r.second);
  const CheckpointState want = some_state(step);
  EXPECT_EQ(st.step, want.step);
  EXPECT_EQ(st.epoch, want.epoch);
  EXPECT_EQ(st.step_in_epoch, want.step_in_epoch);
  EXPECT_EQ(st.micro, want.micro);
  EXPECT_EQ(st.loss_scale, want.loss_scale);
  EXPECT_EQ(st.deck, want.deck);
  EXPECT_EQ(st.world_size, want.world_size);
  EXPECT_EQ(st.zero_stage, want.zero_stage);
  std::int64_t bad = 0, first_bad = -1;
  for (const CheckpointTensor& x : t) {
    const std::int64_t lo = std::max(r.first, x.offset), hi = std::min(r.second, x.offset + x.numel);
    for (std::int64_t i = lo; i < hi; ++i) {
      const auto g = static_cast<std::size_t>(i), l = static_cast<std::size_t>(i - r.first);
      const bool differs = std::memcmp(&p[l], &b.p[g], 4) != 0 || std::memcmp(&m[l], &b.m[g], 4) != 0 ||
                           std::memcmp(&v[l], &b.v[g], 4) != 0;
      if (differs && bad++ == 0) first_bad = i;
    }
  }
  // Only rank 0 prints test results: say on stderr which rank saw what.
  if (bad) std::fprintf(stderr, "rank %d: %lld elements differ (the first at %lld) after loading [%lld, %lld) of %s\n",
                        world().rank(), static_cast<long long>(bad), static_cast<long long>(first_bad),
                        static_cast<long long>(r.first), static_cast<long long>(r.second), path.c_str());
  EXPECT_EQ(bad, 0);
}

struct CaptureCerr {
  std::ostringstream out;
  std::streambuf* old;
  CaptureCerr() : old(std::cerr.rdbuf(out.rdbuf())) {}
  ~CaptureCerr() {
    std::cerr.rdbuf(old);
    if (std::getenv("TH_CKPT_TEST_KEEP")) std::cerr << out.str();  // show the warnings too
  }
  std::string str() const { return out.str(); }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Rank 0 damages a file (the others wait).
template <typename F>
void on_rank0(F&& f) {
  if (world().rank() == 0) f();
  world().barrier();
}

void flip_byte_in_dataset(const std::string& path, const std::string& dataset, std::int64_t byte) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t ds = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  ASSERT_GE(ds, 0);
  const haddr_t at = H5Dget_offset(ds);
  H5Dclose(ds);
  H5Fclose(f);
  ASSERT_NE(at, HADDR_UNDEF);
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(at + static_cast<haddr_t>(byte)));
  char c = 0;
  io.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  io.seekp(static_cast<std::streamoff>(at + static_cast<haddr_t>(byte)));
  io.write(&c, 1);
}

void delete_dataset(const std::string& path, const std::string& dataset) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  ASSERT_GE(H5Ldelete(f, dataset.c_str(), H5P_DEFAULT), 0);
  H5Fclose(f);
}

}  // namespace

TEST(CheckpointIo, WrittenByRank0ReadInSlicesAndWhole) {
  Scratch s("rank0");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 1);
  save(s, t, b, rank0_only(n), 7);  // the trainer's stage 0: rank 0 owns everything
  expect_loads(s.file(7), t, b, equal_slice(n), 7);
  expect_loads(s.file(7), t, b, uneven_slice(n), 7);
  expect_loads(s.file(7), t, b, everything(n), 7);
  expect_loads(s.file(7), t, b, rank0_only(n), 7);
}

TEST(CheckpointIo, WrittenInSlicesReadWholeAndResliced) {
  Scratch s("split");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 2);
  save(s, t, b, uneven_slice(n), 8);  // cuts inside rows: pieces of 2-D and 3-D tensors
  expect_loads(s.file(8), t, b, everything(n), 8);
  expect_loads(s.file(8), t, b, equal_slice(n), 8);
  save(s, t, b, equal_slice(n), 9);
  expect_loads(s.file(9), t, b, uneven_slice(n), 9);
  expect_loads(s.file(9), t, b, rank0_only(n), 9);

  // Arbitrary ranges, a different one on each rank (overlapping ones are fine for reading): every
  // way a range can start and end inside a 1-, 2- or 3-D tensor.
  std::mt19937 gen(100 + static_cast<unsigned>(world().rank()));
  for (int k = 0; k < 6; ++k) {
    std::int64_t a = static_cast<std::int64_t>(gen() % static_cast<std::uint32_t>(n + 1));
    std::int64_t e = static_cast<std::int64_t>(gen() % static_cast<std::uint32_t>(n + 1));
    if (a > e) std::swap(a, e);
    expect_loads(s.file(9), t, b, {a, e}, 9);
  }

  // The weights only (optimizer pointers null), e.g. for evaluation.
  const Range r = equal_slice(n);
  std::vector<float> p(static_cast<std::size_t>(r.second - r.first));
  load_checkpoint(world(), s.file(9), t, p.data(), nullptr, nullptr, r.first, r.second);
  for (const CheckpointTensor& x : t)
    for (std::int64_t i = std::max(r.first, x.offset); i < std::min(r.second, x.offset + x.numel); ++i)
      ASSERT_EQ(std::memcmp(&p[static_cast<std::size_t>(i - r.first)], &b.p[static_cast<std::size_t>(i)], 4), 0);
}

TEST(CheckpointIo, FileLayoutIsReadableWithoutOurCode) {
  Scratch s("layout");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 3);
  save(s, t, b, equal_slice(n), 12);
  on_rank0([&] {
    EXPECT_EQ(read_text(s.dir + "/latest"), "ckpt_00000012.h5");
    EXPECT_FALSE(fs::exists(s.file(12) + ".tmp"));
    hid_t f = H5Fopen(s.file(12).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    // Global shape, float32, and the CRC-32 of its bytes as Python's zlib.crc32 computes it.
    const CheckpointTensor& q = t[1];
    hid_t ds = H5Dopen2(f, "/model/encoder/layer_0/self_attn/q_proj/weight", H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    EXPECT_EQ(H5Sget_simple_extent_ndims(sp), 2);
    H5Sget_simple_extent_dims(sp, dims, nullptr);
    EXPECT_EQ(dims[0], 29u);
    EXPECT_EQ(dims[1], 13u);
    std::vector<float> w(static_cast<std::size_t>(q.numel));
    ASSERT_GE(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.data()), 0);
    EXPECT_EQ(std::memcmp(w.data(), b.p.data() + q.offset, w.size() * 4), 0);
    std::uint32_t crc = 0;
    hid_t a = H5Aopen(ds, "crc32", H5P_DEFAULT);
    ASSERT_GE(a, 0);
    H5Aread(a, H5T_NATIVE_UINT32, &crc);
    H5Aclose(a);
    EXPECT_EQ(crc, static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(w.data()), static_cast<uInt>(w.size() * 4))));
    H5Sclose(sp);
    H5Dclose(ds);
    std::int64_t version = 0, step = 0;
    a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &version);
    H5Aclose(a);
    a = H5Aopen(f, "step", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &step);
    H5Aclose(a);
    EXPECT_EQ(version, kCheckpointFormatVersion);
    EXPECT_EQ(step, 12);
    H5Fclose(f);
    EXPECT_EQ(verify_checkpoint(s.file(12), t), "");
  });
}

TEST(CheckpointIo, KeepLastPrunesButNeverTheNewest) {
  Scratch s("prune");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 4);
  for (std::int64_t step = 1; step <= 5; ++step) save(s, t, b, rank0_only(n), step, /*keep_last=*/2);
  on_rank0([&] {
    for (std::int64_t step = 1; step <= 5; ++step) EXPECT_EQ(fs::exists(s.file(step)), step >= 4) << step;
    EXPECT_EQ(read_text(s.dir + "/latest"), checkpoint_file_name(5));
  });
  // A run resumed from an older step: the file just written stays although two have higher steps.
  save(s, t, b, rank0_only(n), 3, 2);
  on_rank0([&] {
    EXPECT_TRUE(fs::exists(s.file(3)) && fs::exists(s.file(4)) && fs::exists(s.file(5)));
    EXPECT_EQ(read_text(s.dir + "/latest"), checkpoint_file_name(3));
  });
  EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(3));  // `latest` decides, not the step
}

TEST(CheckpointIo, DamagedCheckpointsAreRejectedWithFallback) {
  Scratch s("damaged");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 5);
  for (std::int64_t step = 1; step <= 3; ++step) save(s, t, b, uneven_slice(n), step);
  EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(3));

  // Truncated newest file: falls back to step 2, rank 0 says which file and why.
  on_rank0([&] { fs::resize_file(s.file(3), fs::file_size(s.file(3)) * 6 / 10); });
  {
    CaptureCerr err;
    EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(2));
    if (world().rank() == 0) {
      EXPECT_TRUE(contains(err.str(), checkpoint_file_name(3)) && contains(err.str(), "truncated")) << err.str();
    } else {
      EXPECT_EQ(err.str(), "");
    }
  }
  // A flipped bit inside a dataset of step 2: bad checksum, falls back to step 1.
  const std::string moment = "/optimizer/exp_avg/encoder/layer_0/self_attn/q_proj/weight";
  on_rank0([&] { flip_byte_in_dataset(s.file(2), moment, 4 * 100 + 2); });
  {
    CaptureCerr err;
    EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(1));
    if (world().rank() == 0) {
      EXPECT_TRUE(contains(err.str(), checkpoint_file_name(2)) && contains(err.str(), "bad checksum") &&
                  contains(err.str(), moment))
          << err.str();
    }
  }
  // Loading the damaged file directly is refused too (the ranges cover every dataset).
  {
    const Range r = equal_slice(n);
    std::vector<float> p(static_cast<std::size_t>(r.second - r.first)), m(p.size()), v(p.size());
    try {
      load_checkpoint(world(), s.file(2), t, p.data(), m.data(), v.data(), r.first, r.second);
      ADD_FAILURE() << "a flipped bit was loaded";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "bad checksum") && contains(e.what(), moment)) << e.what();
    }
  }
  // A dataset missing from step 1: nothing verifies; an input error lists every file's problem.
  on_rank0([&] { delete_dataset(s.file(1), "/model/decoder/scale"); });
  {
    CaptureCerr err;
    try {
      find_checkpoint(world(), s.dir, "auto", t);
      ADD_FAILURE() << "no checkpoint verifies, yet one was chosen";
    } catch (const InputError& e) {
      EXPECT_TRUE(contains(e.what(), "missing dataset /model/decoder/scale") && contains(e.what(), "truncated") &&
                  contains(e.what(), "bad checksum"))
          << e.what();
    }
  }
  save(s, t, b, rank0_only(n), 4);
  {
    CaptureCerr err;
    EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(4));
    EXPECT_EQ(err.str(), "");  // `latest` verifies: the damaged ones are not even looked at
  }
  // Explicit path to a damaged file: an input error naming it and the problem.
  try {
    find_checkpoint(world(), s.dir, s.file(2), t);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), s.file(2)) && contains(e.what(), "bad checksum")) << e.what();
  }
}

TEST(CheckpointIo, WrongShapeIsNamed) {
  Scratch s("shape");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  save(s, t, random_buffers(n, 6), rank0_only(n), 1);
  auto other = t;
  other[0].shape = {13, 37};  // same numel, transposed
  on_rank0([&] {
    const std::string why = verify_checkpoint(s.file(1), other);
    EXPECT_TRUE(contains(why, "wrong shape") && contains(why, "/model/embed/weight") && contains(why, "[37, 13]"))
        << why;
  });
}

TEST(CheckpointIo, CrashDuringSaveLeavesAResumableState) {
  Scratch s("crash");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 7);
  save(s, t, b, rank0_only(n), 1);
  save(s, t, b, equal_slice(n), 2);
  // Killed while writing step 3: a partial .tmp, `latest` still at step 2.
  on_rank0([&] {
    fs::copy_file(s.file(2), s.file(3) + ".tmp");
    fs::resize_file(s.file(3) + ".tmp", fs::file_size(s.file(3) + ".tmp") / 3);
  });
  {
    CaptureCerr err;
    EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(2));
    EXPECT_EQ(err.str(), "");
  }
  expect_loads(s.file(2), t, b, uneven_slice(n), 2);
  // Killed between the rename and the update of `latest`, and while writing `latest` itself
  // (a stray latest.tmp, `latest` gone): the newest file that verifies is found by scanning.
  on_rank0([&] {
    fs::copy_file(s.file(2), s.file(3));
    std::ofstream(s.dir + "/latest.tmp") << "ckpt_000";
    fs::remove(s.dir + "/latest");
  });
  EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(3));
  // The next save cleans up what the crash left and commits normally.
  save(s, t, b, rank0_only(n), 4);
  on_rank0([&] {
    EXPECT_FALSE(fs::exists(s.file(3) + ".tmp"));
    EXPECT_FALSE(fs::exists(s.dir + "/latest.tmp"));
    EXPECT_EQ(read_text(s.dir + "/latest"), checkpoint_file_name(4));
  });
}

TEST(CheckpointIo, ResumeNeverAutoAndPath) {
  Scratch s("resume");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), "");                  // empty directory
  EXPECT_EQ(find_checkpoint(world(), s.dir + "/nowhere", "auto", t), "");     // no directory yet
  EXPECT_EQ(find_checkpoint(world(), s.dir, "never", t), "");                 // nothing to overwrite
  save(s, t, random_buffers(n, 8), rank0_only(n), 5);
  save(s, t, random_buffers(n, 9), rank0_only(n), 6);
  // 'never' where another run's checkpoints are: refused on every rank (issue 15, item 3).
  try {
    find_checkpoint(world(), s.dir, "never", t);
    ADD_FAILURE() << "resume = 'never' accepted a folder holding checkpoints";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "2 checkpoint(s)") && contains(e.what(), "ckpt_00000006.h5") &&
                contains(e.what(), "use checkpoint%resume = 'auto' to continue"))
        << e.what();
  }
  EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(6));
  EXPECT_EQ(find_checkpoint(world(), s.dir, s.file(5), t), s.file(5));
  EXPECT_EQ(find_checkpoint(world(), s.dir, checkpoint_file_name(5), t), s.file(5));  // bare name: in dir
  try {
    find_checkpoint(world(), s.dir, s.dir + "/ckpt_00000099.h5", t);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "ckpt_00000099.h5") && contains(e.what(), "does not exist")) << e.what();
  }
}

TEST(CheckpointIo, BadArgumentsFailOnEveryRank) {
  Scratch s("args");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 10);
  // Nobody owns the tail: refused before anything is written, on every rank alike.
  const Range r = world().rank() == 0 ? Range{0, n - 5} : Range{0, 0};
  const auto p = slice(b.p, r);
  EXPECT_THROW(save_checkpoint(world(), s.dir, t, p.data(), p.data(), p.data(), r.first, r.second, some_state(1), 0),
               Error);
  // Overlapping ranges (every rank claims everything, at 2 ranks and more).
  if (world().size() > 1) {
    EXPECT_THROW(save_checkpoint(world(), s.dir, t, b.p.data(), b.m.data(), b.v.data(), 0, n, some_state(1), 0), Error);
  }
  on_rank0([&] { EXPECT_FALSE(fs::exists(s.file(1))); });
  std::vector<float> x(static_cast<std::size_t>(n));
  EXPECT_THROW(load_checkpoint(world(), s.file(1), t, x.data(), x.data(), x.data(), 0, n), Error);
}

TEST(CheckpointIo, LargeDeckAndStateFromRank0) {
  Scratch s("deck");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 11);
  CheckpointState st = some_state(21);
  st.deck.clear();
  for (int i = 0; st.deck.size() < 200000; ++i) st.deck += "  key_" + std::to_string(i) + " = 'value'\n";  // > 64 KiB
  const std::string deck = st.deck;
  if (world().rank() != 0) st.deck = "another rank's copy", st.step = 999;  // rank 0's state is written
  const Range r = equal_slice(n);
  const auto p = slice(b.p, r), m = slice(b.m, r), v = slice(b.v, r);
  save_checkpoint(world(), s.dir, t, p.data(), m.data(), v.data(), r.first, r.second, st, 0);
  std::vector<float> x(static_cast<std::size_t>(r.second - r.first)), y(x.size()), z(x.size());
  const CheckpointState back = load_checkpoint(world(), s.file(21), t, x.data(), y.data(), z.data(), r.first, r.second);
  EXPECT_EQ(back.step, 21);
  EXPECT_EQ(back.deck, deck);
  EXPECT_EQ(back.micro, st.micro);
}

// Random cuts on write (disjoint, the same on every rank) and random ranges on read (a different
// one on each rank, partly overlapping): the pattern Open MPI's OMPIO collective reads got wrong.
TEST(CheckpointIo, RandomWriteCutsAndReadRanges) {
  Scratch s("random");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 12);
  const int P = world().size();
  const auto me = static_cast<std::size_t>(world().rank());
  const auto draw = [n](std::mt19937& g) { return static_cast<std::int64_t>(g() % static_cast<std::uint32_t>(n + 1)); };
  for (int it = 0; it < 8; ++it) {
    std::mt19937 shared(1000 + static_cast<unsigned>(it));
    std::vector<std::int64_t> cuts = {0, n};
    for (int k = 1; k < P; ++k) cuts.push_back(draw(shared));
    std::sort(cuts.begin(), cuts.end());
    save(s, t, b, {cuts[me], cuts[me + 1]}, it, /*keep_last=*/1);
    std::mt19937 own(100 * static_cast<unsigned>(it) + static_cast<unsigned>(me));
    std::int64_t a = draw(own), e = draw(own);
    if (a > e) std::swap(a, e);
    expect_loads(s.file(it), t, b, {a, e}, it);
  }
}

namespace {
// The root attributes' checksum as docs/checkpoint-format.md defines it, written here again from
// raw HDF5 calls (a second implementation): CRC-32 over the attributes but state_crc32, in name
// order, each as name | 0 | uint64 LE length | value (integers 8 bytes LE, floats float64 LE,
// strings UTF-8).
herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}
std::uint32_t reference_state_crc(const std::string& path) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0);
  std::vector<std::string> names;
  hsize_t idx = 0;
  H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names);
  std::sort(names.begin(), names.end());
  uLong crc = crc32(0, nullptr, 0);
  for (const std::string& n : names) {
    if (n == "state_crc32") continue;
    hid_t a = H5Aopen(f, n.c_str(), H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    std::string value;
    if (H5Tget_class(t) == H5T_STRING) {
      hid_t mem = H5Tcopy(H5T_C_S1);
      H5Tset_size(mem, H5T_VARIABLE);
      H5Tset_cset(mem, H5T_CSET_UTF8);
      char* p = nullptr;
      H5Aread(a, mem, &p);
      value = p;
      H5free_memory(p);
      H5Tclose(mem);
    } else {
      unsigned char le[8];
      std::uint64_t bits = 0;
      if (H5Tget_class(t) == H5T_FLOAT) {
        double d = 0;
        H5Aread(a, H5T_NATIVE_DOUBLE, &d);
        std::memcpy(&bits, &d, 8);
      } else if (H5Tget_sign(t) == H5T_SGN_NONE) {
        H5Aread(a, H5T_NATIVE_UINT64, &bits);
      } else {  // two's complement: optimizer_steps may be -1
        std::int64_t i = 0;
        H5Aread(a, H5T_NATIVE_INT64, &i);
        bits = static_cast<std::uint64_t>(i);
      }
      for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(bits >> (8 * i));
      value.assign(reinterpret_cast<const char*>(le), 8);
    }
    H5Tclose(t);
    H5Aclose(a);
    std::string rec = n + std::string(1, '\0');
    for (int i = 0; i < 8; ++i) rec += static_cast<char>((static_cast<std::uint64_t>(value.size()) >> (8 * i)) & 0xff);
    rec += value;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(rec.data()), static_cast<uInt>(rec.size()));
  }
  std::uint32_t stored = 0;
  hid_t a = H5Aopen(f, "state_crc32", H5P_DEFAULT);
  EXPECT_GE(a, 0) << "no state_crc32 attribute";
  if (a >= 0) {
    H5Aread(a, H5T_NATIVE_UINT32, &stored);
    H5Aclose(a);
  }
  H5Fclose(f);
  EXPECT_EQ(stored, static_cast<std::uint32_t>(crc)) << "the stored state_crc32 is not the documented checksum";
  return static_cast<std::uint32_t>(crc);
}

// Flips bit `bit` of the only occurrence of the 8 little-endian bytes of v in the file.
void flip_bit_of_value(const std::string& path, std::uint64_t v, int bit) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string pattern(8, '\0');
  for (int i = 0; i < 8; ++i) pattern[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  const std::size_t at = bytes.find(pattern);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(pattern, at + 1), std::string::npos) << "the value occurs twice in the file";
  bytes[at + static_cast<std::size_t>(bit / 8)] ^= static_cast<char>(1 << (bit % 8));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}
}  // namespace

// Issue 15, item 3: one flipped bit in `step` (a root attribute, outside every dataset) must not
// resume at another step without a word.
TEST(CheckpointIo, StateAttributesAreCoveredByAChecksum) {
  Scratch s("state_crc");
  const auto t = model_tensors();
  const std::int64_t n = flat_size(t);
  const Buffers b = random_buffers(n, 13);
  const std::int64_t step = 0x0102030405060708;  // a byte pattern found once in the file
  save(s, t, b, equal_slice(n), 3);
  save(s, t, b, uneven_slice(n), step);
  on_rank0([&] {
    EXPECT_EQ(verify_checkpoint(s.file(step), t), "");
    reference_state_crc(s.file(step));
    flip_bit_of_value(s.file(step), static_cast<std::uint64_t>(step), 0);  // step + 1 on disk
    const std::string why = verify_checkpoint(s.file(step), t);
    EXPECT_TRUE(contains(why, "bad checksum of the state attributes")) << why;
  });
  {
    CaptureCerr err;
    EXPECT_EQ(find_checkpoint(world(), s.dir, "auto", t), s.file(3));  // falls back to the older one
    if (world().rank() == 0) EXPECT_TRUE(contains(err.str(), "state attributes")) << err.str();
  }
  const Range r = equal_slice(n);
  std::vector<float> p(static_cast<std::size_t>(r.second - r.first)), m(p.size()), v(p.size());
  try {
    load_checkpoint(world(), s.file(step), t, p.data(), m.data(), v.data(), r.first, r.second);
    ADD_FAILURE() << "a checkpoint whose step changed on disk was loaded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "state attributes")) << e.what();
  }
  // Another attribute rewritten through HDF5 (the loss scale): caught as well.
  on_rank0([&] {
    hid_t f = H5Fopen(s.file(3).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    hid_t a = H5Aopen(f, "loss_scale", H5P_DEFAULT);
    const double other = 32768.0;
    H5Awrite(a, H5T_NATIVE_DOUBLE, &other);
    H5Aclose(a);
    H5Fclose(f);
    const std::string why = verify_checkpoint(s.file(3), t);
    EXPECT_TRUE(contains(why, "bad checksum of the state attributes")) << why;
  });
}
