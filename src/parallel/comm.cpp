#include "th/parallel/comm.hpp"

#include "th/core/error.hpp"

namespace th {

CommRequestPtr Comm::iallreduce16(std::uint16_t*, std::size_t, DType) {
  throw Error("this communicator has no 16-bit collectives (parallel%comm = 'mpi' has them)");
}
CommRequestPtr Comm::ireduce_scatter16(const std::uint16_t*, std::uint16_t*, std::size_t, DType) {
  throw Error("this communicator has no 16-bit collectives (parallel%comm = 'mpi' has them)");
}

bool Comm::all_true(bool mine) {
  std::int64_t v = mine ? 1 : 0;
  allreduce(&v, 1, ReduceOp::Min);
  return v == 1;
}

double Comm::sum(double v) {
  allreduce(&v, 1, ReduceOp::Sum);
  return v;
}

double Comm::max(double v) {
  allreduce(&v, 1, ReduceOp::Max);
  return v;
}

void Comm::broadcast_string(std::string& s, int root) {
  std::int64_t n = static_cast<std::int64_t>(s.size());
  broadcast(&n, sizeof n, root);
  s.resize(static_cast<std::size_t>(n));
  if (n > 0) broadcast(s.data(), s.size(), root);
}

}  // namespace th
