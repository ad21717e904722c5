// The MPI communicator at 1, 2 and 4 ranks: reductions, broadcast, gather, agreements.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <numeric>

#include "th/parallel/mpi_comm.hpp"

using namespace th;

namespace {
MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}
}  // namespace

TEST(Comm, AllreduceSumMaxMinOverRanks) {
  Comm& c = world();
  const int r = c.rank(), n = c.size();
  std::vector<float> f(1000);
  std::iota(f.begin(), f.end(), static_cast<float>(r));
  c.allreduce(f.data(), f.size(), ReduceOp::Sum);
  for (std::size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], static_cast<float>(n * i + n * (n - 1) / 2));
  double d[2] = {static_cast<double>(r), -static_cast<double>(r)};
  c.allreduce(d, 2, ReduceOp::Max);
  EXPECT_EQ(d[0], n - 1);
  EXPECT_EQ(d[1], 0);
  std::int64_t i64 = r + 10;
  c.allreduce(&i64, 1, ReduceOp::Min);
  EXPECT_EQ(i64, 10);
}

TEST(Comm, BroadcastAndGatherStrings) {
  Comm& c = world();
  std::string s = c.rank() == 0 ? std::string("deck text from rank 0") : std::string();
  c.broadcast_string(s, 0);
  EXPECT_EQ(s, "deck text from rank 0");
  auto all = c.gather_strings("rank" + std::string(static_cast<std::size_t>(c.rank()), '*'), 0);
  if (c.rank() == 0) {
    ASSERT_EQ(static_cast<int>(all.size()), c.size());
    for (int r = 0; r < c.size(); ++r) EXPECT_EQ(all[r], "rank" + std::string(static_cast<std::size_t>(r), '*'));
  } else {
    EXPECT_TRUE(all.empty());
  }
}

TEST(Comm, AgreementsAreCollective) {
  Comm& c = world();
  EXPECT_TRUE(c.all_true(true));
  EXPECT_FALSE(c.all_true(c.rank() != c.size() - 1));  // the last rank says no
  EXPECT_EQ(c.any_true(c.rank() == c.size() - 1), true);
  EXPECT_FALSE(c.any_true(false));
  EXPECT_EQ(c.sum(1.0), c.size());
  EXPECT_EQ(c.max(static_cast<double>(c.rank())), c.size() - 1);
  EXPECT_EQ(c.num_nodes(), 1);
  EXPECT_EQ(c.local_size(), c.size());
}
