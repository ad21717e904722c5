#pragma once
// The rank's part of the optimizer's work in the layout of its moments: values and reduced
// gradients [0, n) whose moments (and fp32 master) are [shard, shard + n). Stage 0: one span, the
// whole buffer; stages 1-3: one per partition piece. `value` is nullptr when the values live in
// a file (stage 3, offload_param = 'nvme').
#include <cstdint>
#include <vector>

namespace th::zero {

struct OwnedSpan {
  float* value = nullptr;
  float* grad = nullptr;
  std::int64_t shard = 0, n = 0;
};
using OwnedSpans = std::vector<OwnedSpan>;

}  // namespace th::zero
