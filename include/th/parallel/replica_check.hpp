#pragma once
// Replica consistency: an order-sensitive checksum of a buffer, compared over ranks. Data
// parallelism uses it to check that replicas did not drift apart (the gradient averaging itself is
// GradientSync, th/train/grad_sync.hpp).
#include <cstdint>

#include "th/parallel/comm.hpp"

namespace th {

// Order-sensitive checksum of a buffer's bits, agreed over ranks: true when every rank holds
// bitwise the same values (catches silent divergence between replicas).
bool replicas_identical(Comm& comm, const float* values, std::int64_t n);

}  // namespace th
