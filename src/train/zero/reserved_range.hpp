#pragma once
// A full-size element range whose memory is backed only where it is in use: the backend's
// Reservation (th/backend/backend.hpp; on the CPU anonymous address space committed page by page
// when written, on CUDA cuMemMap granules, on the emulated device granules its kernels can touch
// only while committed). Used for the full-size parameter range of stage 3, the full-size
// gradient range of stages 2-3, and the 2-byte gradients' fp32 window and (stages 2-3) 2-byte
// range. The pool of the backend's device space counts the bytes actually
// backed, so gathered parameters and live gradient buckets are accounted as what they are, not as
// the whole range.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "th/backend/backend.hpp"
#include "th/core/memory.hpp"

namespace th::zero {

class ReservedRange {
 public:
  // n elements of elem_bytes each (fp32 by default; 2: the 2-byte gradients of stages 2-3).
  ReservedRange(std::int64_t n, MemCategory cat, Backend& backend, std::size_t elem_bytes = sizeof(float));
  ~ReservedRange();
  ReservedRange(const ReservedRange&) = delete;
  ReservedRange& operator=(const ReservedRange&) = delete;
  float* data() const { return reinterpret_cast<float*>(res_->data()); }
  std::uint16_t* data16() const { return reinterpret_cast<std::uint16_t*>(res_->data()); }

  // Backs elements [b, e) before they are written or read (a granule backed afresh reads zero);
  // `backing`: now, or on the CPU page by page as touched (th/backend/backend.hpp).
  void commit(std::int64_t b, std::int64_t e, Backing backing = Backing::Now);
  // Gives back the granules wholly inside elements [b, e); with `zero`, the rest of [b, e) (on
  // granules shared with neighbours) is zeroed, so the whole range reads zero afterwards.
  void release(std::int64_t b, std::int64_t e, bool zero);
  // The whole range given back and reading zero, and the pool's count brought up to date.
  void clear();
  // Brings the pool's count of this range up to date with what is backed now.
  void account();

 private:
  MemCategory cat_;
  Backend& be_;
  std::int64_t n_;
  std::size_t elem_;
  std::unique_ptr<Reservation> res_;
  std::int64_t accounted_ = 0;
};

}  // namespace th::zero
