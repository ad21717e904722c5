#pragma once
// One error path. Code that finds a problem throws th::Error (or a subclass) with a message that
// says what is wrong. An exception that leaves run_app() other than an InputError is never caught:
// the terminate handler the Runtime installs prints it with the rank prefix and aborts the job
// (th::abort_job) BEFORE any destructor runs, so no half-unwound rank can wait in a collective
// call the others will never make. An InputError (decided collectively, the same on every rank)
// ends the job cleanly with status 2 (src/app/main.cpp). Checks of external calls go through the
// TH_*_CHECK macros, which add the failing call, file and line.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace th {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Errors in user input (deck, command line, data files). Every rank detects them identically
// (the deck is parsed on rank 0 and the verdict broadcast), so the job can exit cleanly with
// status 2 instead of aborting.
class InputError : public Error {
 public:
  using Error::Error;
};

// Thrown on every rank alike once the ranks agreed that one of them failed (th/parallel/agree.hpp):
// the message of the rank that found the problem, origin() (its rank in the world). On the error
// path that rank prints it with its rank prefix and aborts the job; the others wait to be ended.
class CollectiveError : public Error {
 public:
  CollectiveError(const std::string& what, int origin) : Error(what), origin_(origin) {}
  int origin() const { return origin_; }

 private:
  int origin_;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& what);

// Print "[rank r] message" on stderr and abort every rank (MPI_Abort). Never returns.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

// Testing aid for the failure tests: TH_FAULT="rank:n:kind" in the environment. Returns kind
// when this rank and n match ("" otherwise, or when TH_FAULT is unset); n 0 in TH_FAULT matches
// every n for kind 'overflow' (a permanent overflow). Kinds, where they act and what n counts:
//   'throw' / 'exit' / 'overflow'  the trainer's step n (throw, _Exit(9), an inf gradient)
//   'input'       an InputError at the start of the trainer's step n (raised on this rank alone)
//   'save'        a SIGKILL while the checkpoint of step n is written
//   'save_throw'  an exception while the checkpoint of step n is written (its file open in MPI-IO)
//   'open'        an exception in the n-th DatasetReader this process opens, its file open in MPI-IO
//   'read'        an exception in the n-th independent read of a DatasetReader (training: the
//                 batches of the run's n-th step, on the prefetch thread)
//   'evaluate'    an exception before the n-th batch of evaluate_batches in this process
//   'disk_full'   rank 0's free-space check before the save of step n sees 0 bytes
//   'no_space_check'  that check is skipped, so a full disk fails inside the write
std::string injected_fault(int rank, std::int64_t step);

// Throws th::Error("fault injected by TH_FAULT (kind n): what") (th::InputError for kind 'input')
// when injected_fault(rank, n) is `kind`, after printing "[rank r] TH_FAULT: kind n injected at
// <unix time, ms>" on stderr: the failure tests time the end of the job from that line.
void inject_fault(const char* kind, int rank, std::int64_t n, const std::string& what);

}  // namespace th

#define TH_CHECK(cond, msg)                                                            \
  do {                                                                                 \
    if (!(cond)) ::th::throw_error(__FILE__, __LINE__, std::string("check failed: ") + \
                                                           #cond + ": " + (msg));      \
  } while (0)
