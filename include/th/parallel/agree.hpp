#pragma once
// Agreeing on an error across ranks: the one way a problem that some ranks found becomes the same
// exception on every rank, so that no rank goes on into a collective call that the others will
// never make. Costs one all-reduce when all is well.
//
// What every rank throws, from the lowest rank that has a problem (its message, unchanged):
//   ErrorKind::Input   th::InputError: bad input (deck, data, checkpoint choice); the job ends
//                      with status 2 and rank 0 prints the message once (src/app/main.cpp).
//   ErrorKind::Failure th::CollectiveError: anything else; the rank that found it prints it with
//                      its rank prefix and the job is aborted (th/core/error.hpp).
// A problem that only some ranks can see (a rank's own shard, its read, its file system view) must
// go through here before the next collective call; a problem every rank sees alike (the same
// broadcast value) may be thrown directly.
#include <functional>
#include <string>

#include "th/parallel/comm.hpp"

namespace th {

enum class ErrorKind { Input, Failure };

// Every rank passes its problem ("" when it has none). Returns on every rank when no rank has one.
void agree_on_error(Comm& comm, const std::string& problem, ErrorKind kind);

// Every rank runs f; an exception from f is this rank's problem (of kind Input for a
// th::InputError, Failure for anything else); then agree_on_error.
void agree_each(Comm& comm, const std::function<void()>& f);

// Rank 0 alone runs f, which returns a problem of `kind` ("" when none) or throws (kinds as in
// agree_each); every rank gets the verdict.
void agree_root(Comm& comm, const std::function<std::string()>& f, ErrorKind kind);

}  // namespace th
