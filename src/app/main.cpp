// torch-handle: one SPMD executable. Start MPI and Kokkos, run the deck's task, shut down.
#include <cstdio>
#include <exception>

#include "th/app.hpp"
#include "th/core/error.hpp"
#include "th/core/stop_signal.hpp"

int main(int argc, char** argv) {
  th::install_early_signals();  // a SIGUSR1 during start-up must not kill the rank
  th::Runtime runtime(argc, argv);
  try {
    return th::run_app(argc, argv, runtime);
  } catch (const th::InputError& e) {
    // Raised identically on every rank (decided collectively): one message, clean exit, no abort.
    if (runtime.world().rank() == 0) std::fprintf(stderr, "torch-handle: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    th::abort_job(e.what());  // one rank's failure: message with its rank, then MPI_Abort
  }
}
