#include "reserved_range.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "th/core/error.hpp"

namespace th::zero {

ReservedRange::ReservedRange(std::int64_t n, MemCategory cat, Backend& backend) : cat_(cat), be_(backend) {
  if (!be_.device_is_host()) {
    device_ = be_.zeros({std::max<std::int64_t>(n, 1)}, DType::F32, cat);
    return;
  }
  page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  bytes_ = (std::max<std::size_t>(static_cast<std::size_t>(n) * sizeof(float), 1) + page_ - 1) / page_ * page_;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw Error("cannot reserve " + std::to_string(bytes_) + " bytes of address space for " + to_string(cat) + ": " +
                std::strerror(errno));
  base_ = static_cast<char*>(p);
  madvise(base_, bytes_, MADV_NOHUGEPAGE);  // page-sized commits and releases
  resident_.resize(bytes_ / page_);
}

ReservedRange::~ReservedRange() {
  if (device_.defined()) return;
  host_pool().account(cat_, -accounted_);
  munmap(base_, bytes_);
}

void ReservedRange::release(std::int64_t b, std::int64_t e, bool zero) {
  if (device_.defined()) {
    if (zero && e > b)
      be_.zero(device_.data<float>() + b, sizeof(float) * static_cast<std::size_t>(e - b), MemorySpace::Device);
    return;
  }
  const std::size_t lo = static_cast<std::size_t>(b) * sizeof(float), hi = static_cast<std::size_t>(e) * sizeof(float);
  const std::size_t plo = (lo + page_ - 1) / page_ * page_, phi = hi / page_ * page_;
  if (phi > plo) {
    if (madvise(base_ + plo, phi - plo, MADV_DONTNEED) != 0)
      throw Error(std::string("madvise(MADV_DONTNEED) failed: ") + std::strerror(errno));
    if (zero) {
      std::memset(base_ + lo, 0, plo - lo);
      std::memset(base_ + phi, 0, hi - phi);
    }
  } else if (zero && hi > lo) {
    std::memset(base_ + lo, 0, hi - lo);
  }
}

void ReservedRange::account() {
  if (device_.defined()) return;  // the device pool counts the whole allocation
  if (mincore(base_, bytes_, resident_.data()) != 0) throw Error(std::string("mincore failed: ") + std::strerror(errno));
  std::int64_t n = 0;
  for (unsigned char c : resident_) n += c & 1;
  const std::int64_t now = n * static_cast<std::int64_t>(page_);
  host_pool().account(cat_, now - accounted_);
  accounted_ = now;
}

}  // namespace th::zero
