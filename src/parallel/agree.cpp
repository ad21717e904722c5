#include "th/parallel/agree.hpp"

#include <cstdint>
#include <exception>

#include "th/core/error.hpp"
#include "th/parallel/runtime.hpp"

namespace th {

namespace {
struct Problem {
  std::string what;
  ErrorKind kind = ErrorKind::Failure;
};

// Runs f, turning an exception into a problem (one without a message still counts).
template <typename F>
Problem capture(F&& f, ErrorKind kind) {
  const auto caught = [](const char* what, ErrorKind k) {
    return Problem{*what ? what : "an error without a message", k};
  };
  try {
    return {f(), kind};
  } catch (const InputError& e) {
    return caught(e.what(), ErrorKind::Input);
  } catch (const std::exception& e) {
    return caught(e.what(), ErrorKind::Failure);
  } catch (...) {
    return caught("an exception that is not a std::exception", ErrorKind::Failure);
  }
}

void agree(Comm& comm, Problem p) {
  const std::int64_t size = comm.size();
  std::int64_t first = p.what.empty() ? size : comm.rank();
  comm.allreduce(&first, 1, ReduceOp::Min);
  if (first == size) return;
  // The lowest failing rank tells the others what to throw, and who it is in the world (the
  // error path lets that rank print the message).
  std::int64_t head[2] = {p.kind == ErrorKind::Input ? 1 : 0, world_rank()};
  comm.broadcast(head, sizeof head, static_cast<int>(first));
  comm.broadcast_string(p.what, static_cast<int>(first));
  if (head[0] == 1) throw InputError(p.what);
  throw CollectiveError(p.what, static_cast<int>(head[1]));
}
}  // namespace

void agree_on_error(Comm& comm, const std::string& problem, ErrorKind kind) { agree(comm, {problem, kind}); }

void agree_each(Comm& comm, const std::function<void()>& f) {
  agree(comm, capture([&] {
          f();
          return std::string();
        }, ErrorKind::Failure));
}

void agree_root(Comm& comm, const std::function<std::string()>& f, ErrorKind kind) {
  Problem p;
  if (comm.rank() == 0) p = capture(f, kind);
  agree(comm, p);
}

}  // namespace th
