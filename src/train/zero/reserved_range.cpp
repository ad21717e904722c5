#include "reserved_range.hpp"

#include <algorithm>

namespace th::zero {

ReservedRange::ReservedRange(std::int64_t n, MemCategory cat, Backend& backend, std::size_t elem_bytes)
    : cat_(cat), be_(backend), n_(n), elem_(elem_bytes),
      res_(backend.reserve(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * elem_bytes)) {}

ReservedRange::~ReservedRange() { be_.pool(MemorySpace::Device).account(cat_, -accounted_); }

void ReservedRange::commit(std::int64_t b, std::int64_t e, Backing backing) {
  if (e > b) res_->commit(static_cast<std::size_t>(b) * elem_, static_cast<std::size_t>(e - b) * elem_, backing);
}

void ReservedRange::release(std::int64_t b, std::int64_t e, bool zero) {
  if (e > b)
    res_->release(static_cast<std::size_t>(b) * elem_, static_cast<std::size_t>(e - b) * elem_, zero);
}

void ReservedRange::clear() {
  release(0, n_, true);
  account();
}

void ReservedRange::account() {
  const auto now = static_cast<std::int64_t>(res_->committed());
  be_.pool(MemorySpace::Device).account(cat_, now - accounted_);
  accounted_ = now;
}

}  // namespace th::zero
