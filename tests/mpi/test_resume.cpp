// Resume after a stop: save at step 10, start a new trainer from the checkpoint, and steps 11-20
// are bitwise those of a run straight through (same world size). On another world size with the
// same ranks x grad_accum (4 x 1 -> 2 x 2 and 1 x 4), the losses match the straight run within
// fp32 reduction-order tolerance (2e-5 relative).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/core/error.hpp"
#include "th/eval/evaluate.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/train/trainer.hpp"
#include "training_support.hpp"

using namespace th;

namespace {
using testing_support::world;

Config make_cfg(const std::string& dir, int accum, const std::string& resume, const std::string& more = "") {
  return make_config(Deck::from_text(R"(
&run task = 'train', output_dir = ')" + dir + R"(', seed = 11, max_steps = 20 /
&model arch = 'encoder-decoder', d_model = 32, n_heads = 4, d_ff = 64, n_encoder_layers = 1,
       n_decoder_layers = 1, dropout = 0.1, max_len = 16, vocab_size = 16 /
&data synthetic = 'reverse', synthetic_min_len = 3, synthetic_max_len = 8, synthetic_samples = 400,
      synthetic_valid_samples = 8, max_tokens = 200 /
&optim lr = 3.0e-3, warmup_steps = 5, grad_accum = )" + std::to_string(accum) + R"( /
&checkpoint resume = ')" + resume + R"(', keep_last = 2 )" + more + R"( /
)", "resume-test"));
}

std::string fresh_dir(Comm& c, const std::string& name) { return testing_support::fresh_test_dir(c, "resume_" + name); }

std::vector<double> run_steps(Trainer& t, int n) {
  std::vector<double> losses;
  for (int i = 0; i < n; ++i) losses.push_back(t.step().loss);
  return losses;
}
}  // namespace

TEST(Resume, StepsAfterResumeAreBitwiseTheUninterruptedOnes) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "bitwise");
  const Config straight_cfg = make_cfg(dir + "/straight", 1, "never");
  Trainer straight(straight_cfg, w);
  const std::vector<double> ref = run_steps(straight, 20);

  const Config first_cfg = make_cfg(dir + "/split", 1, "never");
  {
    Trainer first(first_cfg, w);
    run_steps(first, 10);
    first.save_checkpoint_now();
  }
  const Config second_cfg = make_cfg(dir + "/split", 1, "auto");
  Trainer second(second_cfg, w);
  ASSERT_EQ(second.steps_done(), 10);
  const std::vector<double> tail = run_steps(second, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(tail[i], ref[10 + i]) << "step " << 11 + i;
  auto& a = straight.model().params();
  auto& b = second.model().params();
  EXPECT_EQ(0, std::memcmp(a.values(), b.values(), sizeof(float) * static_cast<std::size_t>(a.size())));
}

TEST(Resume, AnotherWorldSizeWithTheSameGlobalBatchContinuesTheSameRun) {
  Comm& w = world();
  if (w.size() != 4) GTEST_SKIP() << "written on 4 ranks";
  const std::string dir = fresh_dir(w, "reshard");
  const Config straight_cfg = make_cfg(dir + "/straight", 1, "never");
  Trainer straight(straight_cfg, w);
  const std::vector<double> ref = run_steps(straight, 20);
  const Config first_cfg = make_cfg(dir + "/split", 1, "never");
  {
    Trainer first(first_cfg, w);
    run_steps(first, 10);
    first.save_checkpoint_now();
  }
  auto check = [&](Comm& c, int accum, const char* what) {
    const Config cfg = make_cfg(dir + "/split", accum, "auto");
    Trainer t(cfg, c);
    ASSERT_EQ(t.steps_done(), 10) << what;
    const std::vector<double> tail = run_steps(t, 10);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(tail[i], ref[10 + i], 2e-5 * std::abs(ref[10 + i])) << what << " step " << 11 + i;
  };
  MPI_Comm half_raw;
  MPI_Comm_split(MPI_COMM_WORLD, w.rank() / 2, w.rank(), &half_raw);
  {
    MpiComm half(half_raw);
    check(half, 2, "2 ranks x accum 2");
  }
  MPI_Comm_free(&half_raw);
  MpiComm self(MPI_COMM_SELF);
  check(self, 4, "1 rank x accum 4");
}

namespace {
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

// Issue 15, item 3: a checkpoint folder that cannot be written stops the run at start-up, before
// any step (not at the first save, which would lose the steps before it).
TEST(Resume, CheckpointFolderIsTestedAtStartUp) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "baddir");
  if (w.rank() == 0) std::ofstream(dir + "/a_file") << "not a folder\n";
  w.barrier();
  const Config cfg = make_cfg(dir + "/run", 1, "auto", ", dir = '" + dir + "/a_file/checkpoints'");
  try {
    Trainer t(cfg, w);
    ADD_FAILURE() << "a checkpoint folder under a regular file was accepted at start-up";
  } catch (const InputError& e) {
    EXPECT_TRUE(has(e.what(), "checkpoint%dir = '" + dir + "/a_file/checkpoints'") && has(e.what(), "cannot create"))
        << e.what();
  }
}

// Issue 15, item 3: resume = 'never' in a folder that holds an earlier run's checkpoints refuses,
// instead of overwriting some of them.
TEST(Resume, NeverRefusesAFolderWithCheckpoints) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "never");
  {
    const Config cfg = make_cfg(dir, 1, "never");
    Trainer t(cfg, w);
    run_steps(t, 2);
    t.save_checkpoint_now();
  }
  try {
    const Config cfg = make_cfg(dir, 1, "never");
    Trainer t(cfg, w);
    ADD_FAILURE() << "resume = 'never' started afresh over another run's checkpoints";
  } catch (const InputError& e) {
    EXPECT_TRUE(has(e.what(), "ckpt_00000002.h5") && has(e.what(), "use checkpoint%resume = 'auto'")) << e.what();
  }
  const Config cfg = make_cfg(dir, 1, "auto");
  Trainer t(cfg, w);
  EXPECT_EQ(t.steps_done(), 2);
}

// Issue 15, item 4: evaluate / translate with a deck whose model differs from the checkpoint's
// must not suggest resume = 'never' (which they reject).
TEST(Resume, WeightsOfAnotherModelGiveAdviceForEvaluate) {
  Comm& w = world();
  const std::string dir = fresh_dir(w, "weights");
  {
    const Config cfg = make_cfg(dir, 1, "never");
    Trainer t(cfg, w);
    run_steps(t, 1);
    t.save_checkpoint_now();
  }
  Config cfg = make_cfg(dir, 1, "auto");
  cfg.run.task = "evaluate";
  cfg.model.d_ff = 48;  // the training run had 64
  try {
    load_trained_model(cfg, w, 16, "synthetic data", "");
    ADD_FAILURE() << "weights of another model were loaded";
  } catch (const InputError& e) {
    EXPECT_FALSE(has(e.what(), "'never'")) << e.what();
    EXPECT_TRUE(has(e.what(), "wrong shape") && has(e.what(), "model% keys")) << e.what();
  }
}
