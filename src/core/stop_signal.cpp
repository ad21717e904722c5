#include "th/core/stop_signal.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace th {

namespace {
volatile std::sig_atomic_t g_signal = 0;

// After SIGTERM or SIGINT, mpirun stops reading the ranks' output (it only waits to kill them), so a
// rank that logs a line into its full stdout pipe or pty would block there until the SIGKILL
// instead of saving its checkpoint. From then on, output never blocks: a line that does not fit is
// dropped (a write blocked at the signal is restarted and sees the flag at once). Terminals are
// left alone when no launcher started us: there the terminal is the user's, shared with the shell.
bool g_launched = false;  // set before the handlers, read in them

void never_block_on_output() {
  for (int fd = 1; fd <= 2; ++fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) continue;
    const bool pipe = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
    if (!pipe && !(g_launched && S_ISCHR(st.st_mode))) continue;
    const int flags = fcntl(fd, F_GETFL);
    if (flags != -1) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

void on_signal(int sig) {  // async-signal-safe: a store, fstat and fcntl
  g_signal = sig;
  if (sig == SIGTERM || sig == SIGINT) never_block_on_output();
}

void catch_signal(int sig, bool once) {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: an interrupted read/write/wait resumes (MPI and HDF5 do not expect EINTR).
  // SA_RESETHAND: the next one of this signal has its default action (terminate).
  sa.sa_flags = SA_RESTART | (once ? SA_RESETHAND : 0);
  sigaction(sig, &sa, nullptr);
}
}  // namespace

void install_early_signals() { catch_signal(SIGUSR1, false); }

void install_stop_signals() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (std::getenv(var) != nullptr) g_launched = true;
  catch_signal(SIGUSR1, false);
  catch_signal(SIGTERM, true);
  // A SIGINT ignored by whoever started us (a shell's background job, nohup) stays ignored: Ctrl-C
  // in that terminal is not meant for this process.
  struct sigaction old;
  if (sigaction(SIGINT, nullptr, &old) == 0 && old.sa_handler != SIG_IGN) catch_signal(SIGINT, true);
}

bool stop_signal_received() { return g_signal != 0; }
int stop_signal_number() { return g_signal; }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "a signal";
  }
}

}  // namespace th
