// Optimizer and parameter offload (parallel%offload_optimizer = 'cpu' | 'nvme', offload_param =
// 'cpu'; th/train/offload.hpp) against the independent reference, stage 0 without offload, over 20
// steps on the same world size, with the tolerance of test_zero.cpp (losses 2e-5 relative,
// parameters 1e-5 relative L2): stage 2 + cpu, stage 1 + nvme (chunks of 0.01 MiB, so every step
// streams dozens of chunks through the two-slot window), stage 3 + offload_param cpu (alone and with
// nvme moments). Each offloaded run is also bitwise equal to the same stage without offload (the
// host loop runs the same per-element update). Then: the NVMe window is what the pool holds of
// optimizer state; the rank files are created and removed; I/O errors (an unusable nvme_path; a
// rank file truncated or corrupted under the run, on rank 0 only) stop every rank with th::Error
// naming the file, no hang; and a checkpoint at step 10 with NVMe moments resumes bitwise.
// offload_param = 'nvme' (stage 3, the partition in <nvme_path>/th_param_rank<r>.bin): follows
// stage 0, equals stage 3 bitwise (alone and with NVMe moments), resumes bitwise, and a truncated
// parameter file stops every rank with an error naming it.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/train/trainer.hpp"
#include "training_support.hpp"

using namespace th;

namespace {
using testing_support::world;

struct Setup {
  int stage = 0;
  std::string optimizer = "none", param = "none";
  std::string dir = "/tmp/th-offload", resume = "never", nvme = "/tmp/th-offload-nvme";
  double dropout = 0.0;
  double chunk_mb = 0.01;
};

Config make_cfg(const Setup& s) {
  return make_config(Deck::from_text(R"(
&run task = 'train', output_dir = ')" + s.dir + R"(', seed = 5, max_steps = 20 /
&model arch = 'encoder-decoder', d_model = 64, n_heads = 4, d_ff = 128, n_encoder_layers = 2,
       n_decoder_layers = 2, dropout = )" + std::to_string(s.dropout) + R"(, max_len = 16, vocab_size = 16 /
&data synthetic = 'reverse', synthetic_min_len = 3, synthetic_max_len = 8, synthetic_samples = 512,
      synthetic_valid_samples = 8, max_tokens = 160 /
&optim lr = 3.0e-3, warmup_steps = 5, clip_norm = 1.0 /
&parallel zero_stage = )" + std::to_string(s.stage) + R"(, bucket_mb = 0.05, offload_optimizer = ')" +
                                     s.optimizer + "', offload_param = '" + s.param + "', nvme_path = '" + s.nvme +
                                     "', nvme_chunk_mb = " + std::to_string(s.chunk_mb) + R"( /
&checkpoint resume = ')" + s.resume + R"(', keep_last = 2 /
)", "offload-test"));
}

using testing_support::NamedParams;
using Named = NamedParams;
using Trained = testing_support::TrainedRun;
using testing_support::named_params;

Trained train(const Setup& s, Comm& comm, int steps = 20) { return testing_support::run_trainer(make_cfg(s), comm, steps); }

void expect_close(const Trained& a, const Trained& ref, const std::string& what) {
  testing_support::expect_same_run(a, ref, what, "offload", world().rank());
}

void expect_bitwise(const Trained& a, const Trained& b, const std::string& what) {
  for (std::size_t s = 0; s < a.losses.size(); ++s) EXPECT_EQ(a.losses[s], b.losses[s]) << what << " step " << s + 1;
  for (const auto& [name, v] : b.params)
    EXPECT_EQ(0, std::memcmp(v.data(), a.params.at(name).data(), sizeof(float) * v.size())) << what << " " << name;
}

std::string fresh_dir(Comm& c, const std::string& name) {
  const std::string dir = ::testing::TempDir() + "th_offload_" + name + "_np" + std::to_string(c.size());
  if (c.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  c.barrier();
  return dir;
}

std::string rank_file(const std::string& nvme, int rank) {
  return nvme + "/th_optim_rank" + std::to_string(rank) + ".bin";
}

// The message of the th::Error that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Offload, FollowsStageZero) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "equiv");
  const Trained ref = train({0}, w);
  {
    const Trained plain = train({2}, w), off = train({2, "cpu"}, w);
    expect_close(off, ref, "stage 2 + offload_optimizer cpu");
    expect_bitwise(off, plain, "stage 2 + cpu vs stage 2");
  }
  {
    const Trained plain = train({1}, w), off = train({1, "nvme", "none", dir, "never", dir + "/nvme"}, w);
    expect_close(off, ref, "stage 1 + offload_optimizer nvme (0.01 MiB)");
    expect_bitwise(off, plain, "stage 1 + nvme vs stage 1");
  }
  {
    const Trained plain = train({3}, w), off = train({3, "none", "cpu"}, w);
    expect_close(off, ref, "stage 3 + offload_param cpu");
    expect_bitwise(off, plain, "stage 3 + param cpu vs stage 3");
    const Trained both = train({3, "nvme", "cpu", dir, "never", dir + "/nvme3"}, w);
    expect_close(both, ref, "stage 3 + offload_param cpu + optimizer nvme");
    expect_bitwise(both, plain, "stage 3 + param cpu + nvme vs stage 3");
    // offload_param = 'nvme' (0.01 MiB chunks: every gather and update streams several records).
    const Trained pn = train({3, "none", "nvme", dir, "never", dir + "/pnvme"}, w);
    expect_close(pn, ref, "stage 3 + offload_param nvme");
    expect_bitwise(pn, plain, "stage 3 + param nvme vs stage 3");
    const Trained pboth = train({3, "nvme", "nvme", dir, "never", dir + "/pnvme2"}, w);
    expect_close(pboth, ref, "stage 3 + offload_param nvme + optimizer nvme");
    expect_bitwise(pboth, plain, "stage 3 + param nvme + optimizer nvme vs stage 3");
  }
}

TEST(Offload, NvmeWindowIsTheHostOptimizerStateAndFilesGoAtTheEnd) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "window"), nvme = dir + "/nvme";
  host_pool().trim();
  {
    const Config cfg = make_cfg({1, "nvme", "none", dir, "never", nvme});
    Trainer t(cfg, w);
    EXPECT_TRUE(std::filesystem::exists(rank_file(nvme, w.rank())));
    EXPECT_EQ(t.zero().offload_where(), rank_file(nvme, w.rank()));
    t.step();
    const std::vector<ZeroMemory> all = t.memory_report("after one step (test)");
    const ZeroMemory& m = all[static_cast<std::size_t>(w.rank())];
    const std::int64_t S = t.zero().partition().shard_size();
    const std::int64_t chunk = static_cast<std::int64_t>(0.01 * 1024 * 1024 / 8);  // elements per chunk
    // The pool holds only the two-slot window of optimizer state (64-byte header + m + v per
    // slot, rounded up to a multiple of 64 bytes), the file every moment (one record per chunk).
    const std::int64_t record = (64 + 8 * chunk + 63) / 64 * 64;
    EXPECT_EQ(m.offload_window, 2 * record);
    EXPECT_GE(m.optimizer, m.offload_window);  // the pool's blocks are rounded up to its alignment
    EXPECT_LT(m.optimizer, m.offload_window + 256);
    EXPECT_LT(m.optimizer, 8 * S / 4) << "the window is a small part of the moments";
    EXPECT_EQ(m.offload_nvme, (S + chunk - 1) / chunk * record);
    if (w.rank() == 0)
      std::printf("[ offload ] %d ranks: moments %lld bytes per rank on NVMe, host window %lld bytes\n", w.size(),
                  static_cast<long long>(8 * S), static_cast<long long>(m.offload_window));
  }
  EXPECT_FALSE(std::filesystem::exists(rank_file(nvme, w.rank()))) << "the rank file is removed at the end";
}

TEST(Offload, UnusableNvmePathStopsEveryRank) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "badpath");
  const std::string blocker = dir + "/not_a_folder";  // a regular file where the folder should be
  if (w.rank() == 0) std::ofstream(blocker) << "x";
  w.barrier();
  const std::string nvme = blocker + "/nvme";
  const std::string msg = error_of([&] {
    const Config cfg = make_cfg({1, "nvme", "none", dir, "never", nvme});
    Trainer t(cfg, w);
  });
  EXPECT_NE(msg.find("NVMe offload: cannot create the folder " + nvme), std::string::npos) << msg;
}

TEST(Offload, DamagedRankFileStopsEveryRank) {
  Comm& w = world();
  for (const char* damage : {"truncate", "corrupt"}) {
    const std::string dir = fresh_dir(w, damage), nvme = dir + "/nvme";
    const Config cfg = make_cfg({2, "nvme", "none", dir, "never", nvme});
    Trainer t(cfg, w);
    t.step();
    t.step();
    const std::string file = rank_file(nvme, 0);
    if (w.rank() == 0) {  // rank 0's file only: the others must stop too
      if (std::string(damage) == "truncate") {
        ASSERT_EQ(0, ::truncate(file.c_str(), static_cast<off_t>(std::filesystem::file_size(file) / 2)));
      } else {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(64 + 16);  // inside the data of chunk 0
        const char junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        f.write(junk, sizeof(junk));
      }
    }
    w.barrier();
    const std::string msg = error_of([&] { t.step(); });
    // Every rank throws rank 0's message (th/parallel/agree.hpp).
    const std::string expect = std::string(damage) == "truncate" ? "NVMe offload: short read of " + file
                                                                 : "NVMe offload: " + file + ", chunk 0 at byte 0 fails its checksum";
    EXPECT_NE(msg.find(expect), std::string::npos) << msg;
    if (w.rank() == 0) std::printf("[ offload ] %s: rank 0 says: %s\n", damage, msg.c_str());
  }
}

TEST(Offload, NvmeCheckpointResumesBitwise) {
  Comm& w = world();
  const std::pair<int, std::string> cases[] = {{1, "none"}, {3, "cpu"}, {3, "nvme"}};
  for (const auto& [stage, param] : cases) {
    const std::string dir = fresh_dir(w, "resume" + std::to_string(stage) + param), nvme = dir + "/nvme";
    const Trained straight = train({stage, "nvme", param, dir + "/straight", "never", nvme, 0.1}, w);
    {
      const Config cfg = make_cfg({stage, "nvme", param, dir + "/split", "never", nvme, 0.1});
      Trainer first(cfg, w);
      for (int i = 0; i < 10; ++i) first.step();
      first.save_checkpoint_now();
    }
    const Config cfg = make_cfg({stage, "nvme", param, dir + "/split", "auto", nvme, 0.1});
    Trainer second(cfg, w);
    ASSERT_EQ(second.steps_done(), 10);
    for (int i = 0; i < 10; ++i)
      EXPECT_EQ(second.step().loss, straight.losses[10 + i]) << "stage " << stage << " step " << 11 + i;
    const Named p = named_params(second);
    for (const auto& [name, v] : straight.params)
      EXPECT_EQ(0, std::memcmp(v.data(), p.at(name).data(), sizeof(float) * v.size())) << "stage " << stage << " " << name;
  }
}

TEST(Offload, TruncatedParameterFileStopsEveryRank) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "ptrunc"), nvme = dir + "/nvme";
  const std::string file = nvme + "/th_param_rank0.bin";
  {
    const Config cfg = make_cfg({3, "none", "nvme", dir, "never", nvme});
    Trainer t(cfg, w);
    EXPECT_TRUE(std::filesystem::exists(nvme + "/th_param_rank" + std::to_string(w.rank()) + ".bin"));
    t.step();
    const std::vector<ZeroMemory> all = t.memory_report("after one step (test)");
    const ZeroMemory& m = all[static_cast<std::size_t>(w.rank())];
    const std::int64_t S = t.zero().partition().shard_size();
    const std::int64_t chunk = std::min<std::int64_t>(S, static_cast<std::int64_t>(0.01 * 1024 * 1024 / 4));
    const std::int64_t record = (64 + 4 * chunk + 63) / 64 * 64;  // header + values, 64-byte aligned
    EXPECT_EQ(m.offload_window, 2 * record) << "the host holds two chunk slots of parameters";
    EXPECT_EQ(m.offload_nvme, (S + chunk - 1) / chunk * record);
    t.step();
    if (w.rank() == 0) ASSERT_EQ(0, ::truncate(file.c_str(), static_cast<off_t>(std::filesystem::file_size(file) / 2)));
    w.barrier();
    const std::string msg = error_of([&] { t.step(); });
    EXPECT_NE(msg.find("NVMe offload: short read of " + file), std::string::npos) << msg;  // on every rank
    if (w.rank() == 0) std::printf("[ offload ] truncated parameter file: rank 0 says: %s\n", msg.c_str());
  }
  EXPECT_FALSE(std::filesystem::exists(nvme + "/th_param_rank" + std::to_string(w.rank()) + ".bin"));
}
