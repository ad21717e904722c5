#pragma once
// Plain data parallelism (ZeRO stage 0): every rank holds the whole model, computes gradients on
// its own shard of the global batch, and the gradients are averaged over ranks before the
// optimizer step, so that the update (and therefore the parameters) is the same on every rank.
#include <cstdint>

#include "th/parallel/comm.hpp"

namespace th {

// grads <- (sum over ranks of grads) / world size. A no-op on one rank.
void average_gradients(Comm& comm, float* grads, std::int64_t n);

// Order-sensitive checksum of a buffer's bits, agreed over ranks: true when every rank holds
// bitwise the same values (catches silent divergence between replicas).
bool replicas_identical(Comm& comm, const float* values, std::int64_t n);

}  // namespace th
