#pragma once
// SPMD start-up and shutdown: MPI (highest thread level up to MPI_THREAD_MULTIPLE), Kokkos, the
// node split. One Runtime lives in main() (and in the test main); it owns the world communicator.
// It also installs the job's error path: std::terminate (an exception nobody catches, on any
// thread) prints the exception with the rank prefix and aborts the job (th::abort_job). With the
// Itanium C++ ABI (GCC, Clang) an exception without a handler reaches std::terminate before any
// stack is unwound: no destructor of the failing rank runs, none can wait in a collective call.
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

  // A barrier that gives up: true when every rank calls it within timeout_s seconds (of this
  // rank's call), false otherwise. It runs on a communicator of its own, so it never matches a
  // collective another rank is waiting in. main() uses it before a clean exit on an InputError,
  // which every rank should have raised alike: if one rank raised it alone, the job is aborted.
  bool all_ranks_arrive(double timeout_s);

 private:
  std::unique_ptr<Comm> world_;
  std::string thread_level_;
  struct ErrorChannel;
  std::unique_ptr<ErrorChannel> error_channel_;
};

// Rank of this process in the world (0 before MPI starts); used by the error path.
int world_rank();

// Threads each rank's BLAS uses (what Runtime::set_host_threads set).
int blas_threads();

}  // namespace th
