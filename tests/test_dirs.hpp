#pragma once
// A fresh folder for an MPI test, the same on every rank of `c`, unique to this job (rank 0's pid
// is part of the name), so test runs that overlap on one machine (two build trees, ctest -j)
// never remove each other's files. Collective over c.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "th/parallel/comm.hpp"

namespace th::testing_support {

inline std::string fresh_test_dir(Comm& c, const std::string& name) {
  std::int64_t pid = c.rank() == 0 ? static_cast<std::int64_t>(::getpid()) : 0;
  c.broadcast(&pid, sizeof pid, 0);
  const std::string dir = ::testing::TempDir() + "th_" + name + "_np" + std::to_string(c.size()) + "_" +
                          std::to_string(pid);
  if (c.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  c.barrier();
  return dir;
}

}  // namespace th::testing_support
