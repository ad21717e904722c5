#pragma once
// Replica consistency for plain data parallelism (every rank holds the whole model; the
// gradient averaging itself is GradientSync, in grad_sync.hpp).
#include <cstdint>

#include "th/parallel/comm.hpp"

namespace th {

// Order-sensitive checksum of a buffer's bits, agreed over ranks: true when every rank holds
// bitwise the same values (catches silent divergence between replicas).
bool replicas_identical(Comm& comm, const float* values, std::int64_t n);

}  // namespace th
