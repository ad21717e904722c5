#pragma once
// The rank's part of the optimizer's work in the layout of its moments: values and reduced
// gradients [0, n) whose moments (and fp32 master) are [shard, shard + n). Stage 0: one span, the
// whole buffer; stages 1-3: one per partition piece. `value` is nullptr when the values live in
// a file (stage 3, offload_param = 'nvme') or in 2 bytes (`value16`: the parameters' 2-byte
// compute copy, ParamStore::use_16bit_values(); bf16 / fp16); `grad` is nullptr when the
// reduced gradients are kept in 2 bytes (`grad16`, zero/grad_reduction.hpp; bf16 / fp16).
#include <cstdint>
#include <vector>

namespace th::zero {

struct OwnedSpan {
  float* value = nullptr;
  float* grad = nullptr;
  std::int64_t shard = 0, n = 0;
  std::uint16_t* value16 = nullptr;
  std::uint16_t* grad16 = nullptr;
};
using OwnedSpans = std::vector<OwnedSpan>;

}  // namespace th::zero
