#pragma once
// Stop requests by signal (docs/running.md, "Signals"). A handler only records the signal; the
// training loop agrees on it over all ranks at the next step boundary, saves a checkpoint and
// stops (exit status 0).
//   - SIGUSR1 (Slurm's --signal=USR1@T, `scancel --signal=USR1`, forwarded by mpirun and srun) is
//     caught from the first line of main(), before MPI starts, so it never kills a rank that is
//     still starting up; tasks other than training ignore it.
//   - SIGTERM and SIGINT are caught by the training loop only (before it, and in the other tasks,
//     they terminate as usual). Each is caught once: a second one terminates at once. A SIGINT
//     that was ignored when the process started (a background job of a shell) stays ignored.
#include <csignal>

namespace th {

void install_early_signals();   // SIGUSR1; first thing in main()
void install_stop_signals();    // SIGUSR1, SIGTERM, SIGINT; when training starts
bool stop_signal_received();
int stop_signal_number();       // the last signal received (0: none)
const char* signal_name(int sig);  // "SIGTERM"

}  // namespace th
