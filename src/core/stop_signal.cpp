#include "th/core/stop_signal.hpp"

#include <cstring>

namespace th {

namespace {
volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }  // async-signal-safe: one store

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
