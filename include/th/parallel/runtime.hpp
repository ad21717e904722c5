#pragma once
// SPMD start-up and shutdown: MPI (highest thread level up to MPI_THREAD_MULTIPLE), Kokkos, the
// node split. One Runtime lives in main() (and in the test main); it owns the world communicator.
#include <memory>
#include <string>

#include "th/parallel/comm.hpp"

namespace th {

class Runtime {
 public:
  Runtime(int& argc, char**& argv);
  ~Runtime();  // finalizes Kokkos and MPI
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  Comm& world() { return *world_; }
  std::string thread_level() const { return thread_level_; }
  std::string kokkos_host_space() const;
  int host_threads() const;  // threads per rank (OpenBLAS / Kokkos host)
  void set_host_threads(int n);

 private:
  std::unique_ptr<Comm> world_;
  std::string thread_level_;
};

// Rank of this process in the world (0 before MPI starts); used by the error path.
int world_rank();

// Threads each rank's BLAS uses (what Runtime::set_host_threads set).
int blas_threads();

}  // namespace th
