// Data parallelism at 1, 2 and 4 ranks: gradients averaged over ranks equal the gradients of the
// whole global batch computed in one process, and replicas stay bitwise identical over steps.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>
#include <vector>

#include "th/parallel/mpi_comm.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/parallel/replica_check.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/optimizer.hpp"
#include "th/kernels/cpu.hpp"

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

// 16-bit gradient buckets (GradientSync::set_wire_type): values that bf16 / fp16 hold exactly and
// whose sums they hold exactly (small integers times 2^-6) must arrive exactly as the fp32
// reduction gives them, in all-reduce and in-place reduce-scatter mode, for bucket lengths around
// the in-place chunking (1024 = the stack-copied head, then doubling chunks); a 2-rank sum that
// needs rounding equals the rounded fp32 sum (one combine); and the wire carries half the bytes.
TEST(DataParallel, SixteenBitBucketsCarryExactSumsInHalfTheBytes) {
  Comm& c = world();
  if (c.size() == 1) GTEST_SKIP() << "one rank: nothing is reduced";
  for (DType wire : {DType::BF16, DType::F16}) {
    for (std::int64_t n : {std::int64_t(12), std::int64_t(1024) * c.size(), std::int64_t(1025) * c.size(),
                           std::int64_t(5003) * c.size(), std::int64_t(100003) * c.size()}) {
      SCOPED_TRACE(std::string(to_string(wire)) + " n = " + std::to_string(n));
      std::vector<float> base(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i)
        base[static_cast<std::size_t>(i)] = std::ldexp(float((i * 7 + c.rank() * 13) % 61 - 30), -6);
      // all-reduce mode (several buckets: 0.01 MB)
      std::vector<float> ref = base, got = base;
      GradientSync fp32(c, n, 0.01, true), half(c, n, 0.01, true);
      half.set_wire_type(wire);
      EXPECT_EQ(half.bytes_per_step() * 2, fp32.bytes_per_step());
      for (auto* s : {&fp32, &half}) {
        std::vector<float>& g = s == &fp32 ? ref : got;
        c.reset_traffic();
        s->begin_backward(g.data(), true);
        s->grads_ready(n / 2);
        s->grads_ready(0);
        s->finish();
        if (s == &half) EXPECT_NEAR(c.traffic().allreduce_bytes, 2.0 * 2 * n * (c.size() - 1) / c.size(), 1e-6);
      }
      ASSERT_TRUE(ref == got);
      // reduce-scatter mode: one bucket of n rounded down to a multiple of the world size
      const std::int64_t m = n / c.size() * c.size();
      std::vector<std::int64_t> arrived;
      ref = base, got = base;
      GradientSync rs32(c, {{0, m}}, false, [&](std::size_t) {}, cpu_backend());
      GradientSync rs16(c, {{0, m}}, false, [&](std::size_t) { arrived.push_back(1); }, cpu_backend());
      rs16.set_wire_type(wire);
      for (auto* s : {&rs32, &rs16}) {
        std::vector<float>& g = s == &rs32 ? ref : got;
        s->begin_backward(g.data(), true);
        s->grads_ready(0);
        s->finish();
      }
      EXPECT_EQ(arrived.size(), 1u);
      for (std::int64_t i = 0; i < m / c.size(); ++i) ASSERT_EQ(ref[static_cast<std::size_t>(i)], got[static_cast<std::size_t>(i)]) << i;
    }
  }
  // A sum that must round: 1 + 2^-8 (bf16) is a tie between 1 and 1 + 2^-7, to even (1).
  if (c.size() == 2) {
    std::vector<std::uint16_t> v{cpu::float_to_bf16(c.rank() == 0 ? 1.0f : std::ldexp(1.0f, -8))};
    c.iallreduce16(v.data(), 1, DType::BF16)->wait();
    EXPECT_EQ(v[0], cpu::float_to_bf16(1.0f + std::ldexp(1.0f, -8)));
    EXPECT_EQ(cpu::bf16_to_float(v[0]), 1.0f);
  }
}
