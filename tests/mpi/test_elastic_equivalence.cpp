// Data parallelism is the same experiment on any number of ranks: N ranks x grad_accum 1 follow
// the same loss trajectory and end at the same parameters as 1 rank x grad_accum N (computed in
// the same job on MPI_COMM_SELF), over 20 steps, with and without overlap_comm; at 4 ranks also
// 2 ranks x accum 2 (two halves of the world) against 4 x 1. And the overlap is real: the first
// bucket's all-reduce starts before backward ends.
//
// Tolerance: only the order of floating-point reductions differs (all-reduce vs accumulation),
// so losses agree to 2e-5 relative and parameters to 1e-5 in relative L2 norm after 20 steps
// (measured: about 4e-8).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/parallel/runtime.hpp"
#include "th/train/trainer.hpp"

using namespace th;

namespace {
Config make_cfg(int accum, bool overlap, double bucket_mb = 0.02) {
  const std::string text = R"(
&run task = 'train', output_dir = '/tmp/th-elastic', seed = 7, max_steps = 20 /
&model arch = 'encoder-decoder', d_model = 32, n_heads = 4, d_ff = 64, n_encoder_layers = 1,
       n_decoder_layers = 1, dropout = 0.0, max_len = 16, vocab_size = 16 /
&data synthetic = 'reverse', synthetic_min_len = 3, synthetic_max_len = 8, synthetic_samples = 512,
      synthetic_valid_samples = 8, max_tokens = 200 /
&optim lr = 3.0e-3, warmup_steps = 5, schedule = 'inverse_sqrt', clip_norm = 1.0, grad_accum = )" +
                           std::to_string(accum) + R"( /
&parallel overlap_comm = )" + std::string(overlap ? ".true." : ".false.") +
                           ", bucket_mb = " + std::to_string(bucket_mb) + " /\n";
  return make_config(Deck::from_text(text, "elastic-test"));
}

struct Trajectory {
  std::vector<double> losses;
  std::vector<float> params;
  std::vector<char> compared;  // 0 for k_proj biases (see expect_same)
};

Trajectory train(const Config& cfg, Comm& comm) {
  Trainer t(cfg, comm);
  Trajectory out;
  for (int s = 0; s < 20; ++s) out.losses.push_back(t.step().loss);
  auto& ps = t.model().params();
  out.params.assign(ps.values(), ps.values() + ps.size());
  out.compared.assign(out.params.size(), 1);
  for (const auto& p : ps.infos())
    if (p.name.find("k_proj/bias") != std::string::npos)
      std::fill(out.compared.begin() + p.offset, out.compared.begin() + p.offset + p.numel, 0);
  return out;
}

void expect_same(const Trajectory& a, const Trajectory& b, const std::string& what) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (std::size_t s = 0; s < a.losses.size(); ++s)
    EXPECT_NEAR(a.losses[s], b.losses[s], 2e-5 * std::abs(b.losses[s])) << what << " step " << s + 1;
  // k_proj biases have an exactly-zero true gradient (softmax is shift-invariant): AdamW moves
  // them by ~lr per step in a direction that round-off picks, so they are left out.
  double d = 0, r = 0;
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    if (!b.compared[i]) continue;
    d += (a.params[i] - b.params[i]) * (a.params[i] - b.params[i]);
    r += b.params[i] * b.params[i];
  }
  EXPECT_LT(std::sqrt(d / r), 1e-5) << what;
  if (world_rank() == 0) std::printf("[ elastic ] %-48s params rel. diff %.1e\n", what.c_str(), std::sqrt(d / r));
}

MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}
}  // namespace

TEST(ElasticEquivalence, NRanksMatchOneRankWithAccumulation) {
  Comm& w = world();
  MpiComm self(MPI_COMM_SELF);
  const int n = w.size();
  const Config ref_cfg = make_cfg(n, false);
  const Trajectory ref = train(ref_cfg, self);  // 1 rank x accum N, on every rank
  for (bool overlap : {false, true}) {
    const Config cfg = make_cfg(1, overlap);
    expect_same(train(cfg, w), ref, std::to_string(n) + " ranks x accum 1, overlap " + (overlap ? "on" : "off"));
  }
  if (n == 4) {  // 2 ranks x accum 2 on each half of the world vs 4 ranks x accum 1
    MPI_Comm half_raw;
    MPI_Comm_split(MPI_COMM_WORLD, w.rank() / 2, w.rank(), &half_raw);
    {
      MpiComm half(half_raw);
      const Config cfg22 = make_cfg(2, true), cfg41 = make_cfg(1, true);
      expect_same(train(cfg22, half), train(cfg41, w), "2 ranks x accum 2 vs 4 ranks x accum 1");
    }
    MPI_Comm_free(&half_raw);
  }
}

TEST(ElasticEquivalence, FirstBucketStartsBeforeBackwardEnds) {
  Comm& w = world();
  if (w.size() == 1) GTEST_SKIP() << "no communication on one rank";
  const Config cfg = make_cfg(1, true, 0.02);  // ~5000 floats per bucket: a dozen buckets
  Trainer t(cfg, w);
  t.step();
  const GradientSync& sync = t.sync();
  ASSERT_GT(sync.buckets().size(), 3u);
  ASSERT_EQ(sync.launch_times().size(), sync.buckets().size());
  EXPECT_LT(sync.launch_times().front(), sync.backward_end());
  // Buckets launched during backward (not all at the end): more than one before it ended.
  int during = 0;
  for (double s : sync.launch_times()) during += s < sync.backward_end();
  EXPECT_GE(during, 2);
  if (w.rank() == 0)
    std::printf("[ overlap ] %zu buckets, %d launched before backward ended (first at %.2f ms, backward ended %.2f ms)\n",
                sync.buckets().size(), during, 1e3 * sync.launch_times().front(), 1e3 * sync.backward_end());
}
