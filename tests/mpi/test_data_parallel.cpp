// Data parallelism at 1, 2 and 4 ranks: gradients averaged over ranks equal the gradients of the
// whole global batch computed in one process, and replicas stay bitwise identical over steps.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>

#include "th/parallel/mpi_comm.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/parallel/replica_check.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/optimizer.hpp"

using namespace th;

namespace {
MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}
ModelSpec spec() {
  ModelSpec s;
  s.d_model = 16; s.n_heads = 2; s.d_ff = 32; s.n_encoder_layers = 1; s.n_decoder_layers = 1;
  s.vocab_size = 20; s.max_len = 16; s.dropout = 0.0f; s.label_smoothing = 0.1;
  return s;
}
// 8 rows of the same length: every rank's shard has the same token count, so the mean of the
// per-rank mean losses is the global mean loss.
std::vector<Example> rows() {
  std::vector<Example> d(8);
  for (int i = 0; i < 8; ++i)
    for (int t = 0; t < 6; ++t) {
      d[i].src.push_back(4 + static_cast<int>(uniform01(1, i, t) * 16));
      d[i].tgt.push_back(4 + static_cast<int>(uniform01(2, i, t) * 16));
    }
  return d;
}
}  // namespace

TEST(DataParallel, AveragedGradientsEqualTheGlobalBatchGradients) {
  Comm& c = world();
  const auto data = rows();
  Transformer<float> reference(spec()), replica(spec());
  reference.params().initialize(5);
  replica.params().initialize(5);
  std::vector<std::int64_t> all(8), mine;
  for (int i = 0; i < 8; ++i) all[i] = i;
  for (int i = c.rank(); i < 8; i += c.size()) mine.push_back(i);
  const Batch full = collate(data, all, false), shard = collate(data, mine, false);
  reference.forward(full, 0, 0);
  reference.backward(1.0);
  GradientSync sync(c, replica.params().size(), 0.01, true);  // ~2600 floats per bucket: many buckets
  replica.forward(shard, 0, 0);
  sync.begin_backward(replica.params().grads(), true);
  replica.backward(1.0, [&](std::int64_t w) { sync.grads_ready(w); });
  sync.finish();
  const float* a = replica.params().grads();
  const float* b = reference.params().grads();
  double d = 0, r = 0;
  for (std::int64_t i = 0; i < reference.params().size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    r += b[i] * b[i];
  }
  EXPECT_LT(std::sqrt(d / r), 1e-5);  // only the summation order differs
}

TEST(DataParallel, ReplicasStayIdenticalAndDivergenceIsCaught) {
  Comm& c = world();
  const auto data = rows();
  Transformer<float> model(spec());
  auto& ps = model.params();
  ps.initialize(9);
  AdamW<float> opt(ps.size(), AdamWConfig{1e-3, 0.9, 0.98, 1e-9, 0.0});
  GradientSync sync(c, ps.size(), 25.0, false);
  std::vector<std::int64_t> mine;
  for (int i = c.rank(); i < 8; i += c.size()) mine.push_back(i);
  const Batch shard = collate(data, mine, false);
  for (int step = 0; step < 3; ++step) {
    ps.zero_grad();
    model.forward(shard, 0, step);
    sync.begin_backward(ps.grads(), true);
    model.backward(1.0, [&](std::int64_t w) { sync.grads_ready(w); });
    sync.finish();
    opt.step(ps.values(), ps.grads(), 1e-3);
    EXPECT_TRUE(replicas_identical(c, ps.values(), ps.size()));
  }
  if (c.rank() == c.size() - 1) ps.values()[7] += 1e-3f;  // one replica drifts
  EXPECT_EQ(replicas_identical(c, ps.values(), ps.size()), c.size() == 1);
}
