// The replica checksum (th/parallel/replica_check.hpp).
#include "th/parallel/replica_check.hpp"

#include <cstring>

#include "th/core/rng.hpp"

namespace th {

bool replicas_identical(Comm& comm, const float* values, std::int64_t n) {
  std::uint64_t h = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, values + i, 4);
    h = mix64(h, bits, static_cast<std::uint64_t>(i));
  }
  // Compare as two 32-bit halves (exact in int64 min/max).
  std::int64_t v[4] = {static_cast<std::int64_t>(h >> 32), static_cast<std::int64_t>(h & 0xFFFFFFFFu), 0, 0};
  v[2] = -v[0];
  v[3] = -v[1];
  comm.allreduce(v, 4, ReduceOp::Max);  // max(x) == -max(-x) == min(x) iff all equal
  return v[0] == -v[2] && v[1] == -v[3];
}

}  // namespace th
