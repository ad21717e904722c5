#include "th/parallel/runtime.hpp"

#include <cblas.h>
#include <mpi.h>

#include <Kokkos_Core.hpp>
#include <cstdio>
#include <cstdlib>

#include "parallel/mpi_comm.hpp"
#include "th/core/error.hpp"

namespace th {

int world_rank() {
  int init = 0, fin = 0, r = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

void abort_job(const std::string& message, int exit_code) {
  std::fprintf(stderr, "[rank %d] torch-handle: error: %s\n", world_rank(), message.c_str());
  std::fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

namespace {
const char* level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "unknown";
}

int env_threads() {
  for (const char* name : {"OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"}) {
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  return 1;
}
}  // namespace

Runtime::Runtime(int& argc, char**& argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  thread_level_ = level_name(provided);
  world_ = std::make_unique<MpiComm>(MPI_COMM_WORLD);
  Kokkos::InitArguments args;
  args.num_threads = env_threads();
  args.disable_warnings = true;
  Kokkos::initialize(args);
  set_host_threads(env_threads());
}

Runtime::~Runtime() {
  world_.reset();
  if (Kokkos::is_initialized()) Kokkos::finalize();
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

std::string Runtime::kokkos_host_space() const {
  return Kokkos::DefaultHostExecutionSpace::name();
}

int blas_threads() { return openblas_get_num_threads(); }

int Runtime::host_threads() const { return blas_threads(); }

void Runtime::set_host_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

}  // namespace th
