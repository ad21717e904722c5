#pragma once
// The application behind the thin main(): command line, deck (parsed on rank 0, verdict
// broadcast), banner, output folder, task dispatch.
#include "th/parallel/runtime.hpp"

namespace th {

// Returns the process exit status. Throws th::InputError (identically on every rank) for a bad
// command line or deck; any other exception is an internal or runtime error.
int run_app(int argc, char** argv, Runtime& runtime);

}  // namespace th
