#include "th/parallel/runtime.hpp"

#include <cblas.h>
#include <mpi.h>

#include <Kokkos_Core.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "th/parallel/mpi_comm.hpp"
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
  std::fflush(stdout);  // what the rank printed so far (a pipe buffers it) is not lost
  std::fprintf(stderr, "[rank %d] torch-handle: error: %s\n", world_rank(), message.c_str());
  std::fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

namespace {
// The job's error path for an exception nobody caught (see runtime.hpp): no unwinding has happened.
[[noreturn]] void on_terminate() {
  std::string what = "std::terminate called without an active exception";
  int exit_code = 1, origin = -1;
  if (const std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const CollectiveError& x) {
      what = x.what();
      origin = x.origin();
    } catch (const InputError& x) {
      what = x.what();
      exit_code = 2;
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
      what = "an exception that is not a std::exception";
    }
  }
  // An agreed error: the rank that found it prints it and aborts the job; the others wait to be
  // ended with it (and end themselves if, against all odds, that does not come).
  if (origin >= 0 && origin != world_rank()) std::this_thread::sleep_for(std::chrono::seconds(5));
  abort_job(what, exit_code);
}

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

struct Runtime::ErrorChannel {
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of the world used by all_ranks_arrive() only
};

Runtime::Runtime(int& argc, char**& argv) : error_channel_(std::make_unique<ErrorChannel>()) {
  std::set_terminate(on_terminate);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  thread_level_ = level_name(provided);
  world_ = std::make_unique<MpiComm>(MPI_COMM_WORLD);
  TH_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &error_channel_->comm));
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
  if (!fin && error_channel_->comm != MPI_COMM_NULL) MPI_Comm_free(&error_channel_->comm);
  if (!fin) MPI_Finalize();
}

bool Runtime::all_ranks_arrive(double timeout_s) {
  MPI_Request req = MPI_REQUEST_NULL;
  if (MPI_Ibarrier(error_channel_->comm, &req) != MPI_SUCCESS) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    int done = 0;
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;  // the request stays pending: the job ends
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string Runtime::kokkos_host_space() const {
  return Kokkos::DefaultHostExecutionSpace::name();
}

int blas_threads() { return openblas_get_num_threads(); }

int Runtime::host_threads() const { return blas_threads(); }

void Runtime::set_host_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

}  // namespace th
