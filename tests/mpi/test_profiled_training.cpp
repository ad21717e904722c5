// The profiler on a real training run: with overlap_comm on, more of the gradient communication
// hides behind backward than with it off (where it all happens after backward).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <filesystem>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/profiler.hpp"
#include "th/train/trainer.hpp"

using namespace th;

namespace {
Config make_cfg(bool overlap) {
  return make_config(Deck::from_text(std::string(R"(
&run task = 'train', output_dir = '/tmp/th-profiled', seed = 2, max_steps = 6 /
&model arch = 'encoder-decoder', d_model = 64, n_heads = 4, d_ff = 128, n_encoder_layers = 2,
       n_decoder_layers = 2, dropout = 0.0, max_len = 16, vocab_size = 500 /
&data synthetic = 'copy', synthetic_min_len = 6, synthetic_max_len = 12, synthetic_samples = 256,
      synthetic_valid_samples = 8, max_tokens = 400 /
&profile enabled = .true., start_step = 2, num_steps = 4 /
&parallel bucket_mb = 0.05, overlap_comm = )") + (overlap ? ".true." : ".false.") + " /\n",
                                     "profiled-training"));
}

double hidden_percent(bool overlap, Comm& comm) {
  const Config cfg = make_cfg(overlap);
  if (comm.rank() == 0) std::filesystem::create_directories(cfg.run.output_dir);  // the driver's job in a run
  comm.barrier();
  Trainer t(cfg, comm);
  for (int s = 0; s < 6; ++s) t.step();  // window: steps 2-5; step 6 closes it
  const ProfileSummary sum = profiler().summarize(comm);
  EXPECT_EQ(sum.ranks, comm.size());
  EXPECT_GT(sum.comm_s_mean, 0.0);
  return sum.hidden_pct;
}
}  // namespace

TEST(ProfiledTraining, OverlapHidesMoreCommunicationThanNoOverlap) {
  static MpiComm world(MPI_COMM_WORLD);
  if (world.size() == 1) GTEST_SKIP() << "no communication on one rank";
  const double off = hidden_percent(false, world);
  const double on = hidden_percent(true, world);
  if (world.rank() == 0) std::printf("[ profiler ] communication hidden: %.1f%% with overlap, %.1f%% without\n", on, off);
  // The issue's criterion: more hidden with overlap than without. Not a fixed share: how much a
  // progress thread can hide depends on free cores (4 ranks share 2 cores here; measured 44-62%
  // on a quiet machine, 7% with the cores busy elsewhere).
  EXPECT_GT(on, off + 2.0);
}
