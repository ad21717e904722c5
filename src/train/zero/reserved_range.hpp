#pragma once
// A reserved address range whose pages are committed when written and given back per range
// (the host analogue of CUDA's cuMemMap virtual memory management). The pool counts the pages
// actually resident (mincore), so gathered parameters and live gradient buckets are accounted
// as what they are, not as the whole range. Used for the full-size parameter range of stage 3
// and the full-size gradient range of stages 2-3.
//
// On a device backend (Backend::device_is_host() false) the range is one device allocation of the
// backend, held whole: release() zeroes through the backend (when asked) and gives nothing back,
// and the pool of the device space counts it. (The CUDA analogue of page commits, cuMemMap, is
// for the CUDA backend to add; the emulated device holds the range whole.)
#include <cstddef>
#include <cstdint>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/memory.hpp"

namespace th::zero {

class ReservedRange {
 public:
  ReservedRange(std::int64_t n, MemCategory cat, Backend& backend);  // n floats
  ~ReservedRange();
  ReservedRange(const ReservedRange&) = delete;
  ReservedRange& operator=(const ReservedRange&) = delete;
  float* data() const { return device_.defined() ? device_.data<float>() : reinterpret_cast<float*>(base_); }

  // Gives back the pages wholly inside elements [b, e); with `zero`, the rest of [b, e) (on pages
  // shared with neighbours) is zeroed, so the whole range reads zero afterwards.
  void release(std::int64_t b, std::int64_t e, bool zero);
  // Brings the pool's count of this range up to date with the pages resident now.
  void account();

 private:
  MemCategory cat_;
  Backend& be_;
  Tensor device_;  // a device backend's range
  std::size_t page_ = 4096, bytes_ = 0;
  char* base_ = nullptr;
  std::vector<unsigned char> resident_;
  std::int64_t accounted_ = 0;
};

}  // namespace th::zero
