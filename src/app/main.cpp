// torch-handle: one SPMD executable. Start MPI and Kokkos, run the deck's task, shut down.
//
// The error path (th/core/error.hpp): any exception but an InputError is left uncaught, so the
// Runtime's terminate handler aborts the job with the rank's message before anything unwinds.
#include <cstdio>

#include "th/app.hpp"
#include "th/core/error.hpp"
#include "th/core/stop_signal.hpp"

int main(int argc, char** argv) {
  th::install_early_signals();  // a SIGUSR1 during start-up must not kill the rank
  th::Runtime runtime(argc, argv);
  try {
    return th::run_app(argc, argv, runtime);
  } catch (const th::InputError& e) {
    // Decided collectively, the same on every rank: one message, a clean exit with status 2. One
    // raised on a rank alone (the others do not come within seconds) aborts the job instead.
    constexpr double kWaitForRanks = 3.0;  // seconds
    if (!runtime.all_ranks_arrive(kWaitForRanks)) th::abort_job(e.what(), 2);
    if (runtime.world().rank() == 0) std::fprintf(stderr, "torch-handle: error: %s\n", e.what());
    return 2;
  }
}
