#pragma once
// A reserved address range whose pages are committed when written and given back per range
// (the host analogue of CUDA's cuMemMap virtual memory management). The pool counts the pages
// actually resident (mincore), so gathered parameters and live gradient buckets are accounted
// as what they are, not as the whole range. Used for the full-size parameter range of stage 3
// and the full-size gradient range of stages 2-3.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "th/core/memory.hpp"

namespace th::zero {

class ReservedRange {
 public:
  ReservedRange(std::int64_t n, MemCategory cat);  // n floats
  ~ReservedRange();
  ReservedRange(const ReservedRange&) = delete;
  ReservedRange& operator=(const ReservedRange&) = delete;
  float* data() const { return reinterpret_cast<float*>(base_); }

  // Gives back the pages wholly inside elements [b, e); with `zero`, the rest of [b, e) (on pages
  // shared with neighbours) is zeroed, so the whole range reads zero afterwards.
  void release(std::int64_t b, std::int64_t e, bool zero);
  // Brings the pool's count of this range up to date with the pages resident now.
  void account();

 private:
  MemCategory cat_;
  std::size_t page_ = 4096, bytes_ = 0;
  char* base_ = nullptr;
  std::vector<unsigned char> resident_;
  std::int64_t accounted_ = 0;
};

}  // namespace th::zero
