// Shared GoogleTest main: starts MPI and Kokkos once per process (the Cabana pattern); only rank 0
// prints results, every rank returns the same status.
#include <gtest/gtest.h>

#include "th/parallel/runtime.hpp"

int main(int argc, char** argv) {
  th::Runtime runtime(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (runtime.world().rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  const bool ok = runtime.world().all_true(rc == 0);
  return ok ? 0 : 1;
}
