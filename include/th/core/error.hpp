#pragma once
// One error path. Code that finds a problem throws th::Error (or a subclass) with a message that
// says what is wrong; main() catches it, prints it once with the rank prefix, and aborts the job
// collectively (see th::abort_job). Checks of external calls go through the TH_*_CHECK macros,
// which add the failing call, file and line.
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

[[noreturn]] void throw_error(const char* file, int line, const std::string& what);

// Print "[rank r] message" on stderr and abort every rank (MPI_Abort). Never returns.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

// Testing aid for the failure tests: TH_FAULT="rank:step:kind" in the environment. Returns kind
// when this rank and step match ("" otherwise, or when TH_FAULT is unset); step 0 in TH_FAULT
// matches every step for kind 'overflow' (a permanent overflow). Kinds and where they act:
// 'throw' / 'exit' / 'overflow' (the trainer's step), 'save' (a SIGKILL inside a checkpoint save),
// 'disk_full' (rank 0's free-space check before that step's save sees 0 bytes) and
// 'no_space_check' (that check is skipped, so a full disk fails inside the write).
std::string injected_fault(int rank, std::int64_t step);

}  // namespace th

#define TH_CHECK(cond, msg)                                                            \
  do {                                                                                 \
    if (!(cond)) ::th::throw_error(__FILE__, __LINE__, std::string("check failed: ") + \
                                                           #cond + ": " + (msg));      \
  } while (0)
